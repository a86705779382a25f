//! Weight files and training checkpoints: a self-describing header, the tensors, an optional
//! training state, and a SHA-256 over everything; written atomically. Plus safetensors.
//!
//! Layout of a `.gradus` file (integers little-endian):
//!
//! | bytes | content |
//! | --- | --- |
//! | 8 | magic `GRADUS\0W` |
//! | 4 | format version (u32), read before anything else so newer files are refused clearly |
//! | 8 | header length (u64) |
//! | header length | bincode 2 of [`Header`]: element type, library version, kind, tensor names and shapes, state length |
//! | sum of tensor sizes | each tensor's elements, row-major, little-endian, in header order |
//! | state length | bincode 2 of the training state (checkpoints only) |
//! | 32 | SHA-256 of all bytes before it |

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use gradus_autograd::ndarray::{ArrayD, IxDyn};
use gradus_autograd::{Float, ImportError, NamedArrays, ParamStore};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The file's first eight bytes.
pub const MAGIC: &[u8; 8] = b"GRADUS\0W";
/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
const PREFIX: usize = 8 + 4 + 8;
const CHECKSUM: usize = 32;

/// What a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    /// Weights only.
    Weights,
    /// Weights and the training state to resume from.
    Checkpoint,
}

/// A tensor's name and shape as the header lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    /// Dotted parameter name.
    pub name: String,
    /// Shape.
    pub shape: Vec<u64>,
}

/// The header after the fixed prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// `"f32"` or `"f64"`.
    pub dtype: String,
    /// The gradus version that wrote the file.
    pub library_version: String,
    /// Weights or full checkpoint.
    pub kind: FileKind,
    /// Every tensor, in payload order.
    pub tensors: Vec<TensorInfo>,
    /// Length of the training-state section (0 for weights).
    pub state_len: u64,
}

/// Reading or writing a weights file, checkpoint or safetensors file failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The OS refused.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file does not start with the gradus magic.
    #[error("{path}: not a gradus weights file (magic {found:02x?}, expected {expected:02x?})")]
    NotGradus {
        /// The file.
        path: PathBuf,
        /// The first bytes found.
        found: Vec<u8>,
        /// The magic.
        expected: Vec<u8>,
    },
    /// Written by a newer gradus.
    #[error(
        "{path}: format version {found} is newer than this gradus reads (up to {supported}); upgrade gradus to load it"
    )]
    NewerVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
    /// The file is damaged: truncated, or some byte differs from what was written.
    #[error("{path}: damaged: {problem}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong, expected versus found.
        problem: String,
    },
    /// The file's element type is not one the model can take: an unknown type, or, for a
    /// training checkpoint (whose optimizer state is in the model's type), another float
    /// type. Weights alone convert between f32 and f64.
    #[error("{path}: element type is {found}, the model uses {expected}")]
    DType {
        /// The file.
        path: PathBuf,
        /// The model's.
        expected: String,
        /// The file's.
        found: String,
    },
    /// A weights file where a checkpoint was expected, or the reverse.
    #[error("{path}: holds {found:?}, expected {expected:?}")]
    Kind {
        /// The file.
        path: PathBuf,
        /// What was asked for.
        expected: FileKind,
        /// What the file holds.
        found: FileKind,
    },
    /// The tensors do not fit the model: every difference is listed.
    #[error("{path}: {diff}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Missing, unexpected and mis-shaped parameters.
        diff: ImportError,
    },
    /// A safetensors file is invalid or holds an unsupported type.
    #[error("{path}: safetensors: {problem}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn damaged(path: &Path, problem: impl Into<String>) -> CheckpointError {
    CheckpointError::Damaged {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync,
/// rename over the target, fsync the directory. The previous file stays intact until the
/// rename, and a crash leaves either the old or the new file, never a mix.
///
/// Temporary files are named `.{file name}.tmp-XXXXXX`; one left behind by a process that
/// was killed mid-save is removed by the next save to the same path, so they cannot pile up.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.tmp-");
    remove_stale_temporaries(&dir, &prefix);
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .tempfile_in(&dir)
        .map_err(io(path))?;
    tmp.write_all(bytes).map_err(io(path))?;
    // Temporary files are private (0600); give the result the old file's permissions, or
    // those of an ordinary new file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let perms = std::fs::metadata(path)
            .map(|m| m.permissions())
            .unwrap_or_else(|_| std::fs::Permissions::from_mode(0o644));
        tmp.as_file().set_permissions(perms).map_err(io(path))?;
    }
    tmp.as_file().sync_all().map_err(io(path))?;
    tmp.persist(path).map_err(|e| CheckpointError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    // Make the rename itself durable.
    if let Ok(d) = File::open(&dir) {
        d.sync_all().map_err(io(&dir))?;
    }
    Ok(())
}

fn remove_stale_temporaries(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn encode_elements<T: Float>(out: &mut Vec<u8>, a: &ArrayD<T>) {
    match T::NAME {
        "f32" => a
            .iter()
            .for_each(|v| out.extend_from_slice(&(v.as_f64() as f32).to_le_bytes())),
        _ => a
            .iter()
            .for_each(|v| out.extend_from_slice(&v.as_f64().to_le_bytes())),
    }
}

/// Bytes per element of a file's element type, for the types a file may hold.
fn element_size(dtype: &str) -> Option<u64> {
    match dtype {
        "f32" => Some(4),
        "f64" => Some(8),
        _ => None,
    }
}

/// The little-endian elements of a file of element type `dtype` (`f32` or `f64`), as `T`
/// (exact from f32 to f64, rounded to nearest from f64 to f32).
fn decode_elements<T: Float>(bytes: &[u8], dtype: &str) -> Vec<T> {
    match dtype {
        "f32" => bytes
            .chunks_exact(4)
            .map(|c| T::of(f32::from_le_bytes(c.try_into().unwrap()) as f64))
            .collect(),
        _ => bytes
            .chunks_exact(8)
            .map(|c| T::of(f64::from_le_bytes(c.try_into().unwrap())))
            .collect(),
    }
}

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes a file: weights and, for a checkpoint, the serialised training state.
pub(crate) fn encode<T: Float, S: Serialize>(
    params: &NamedArrays<T>,
    state: Option<&S>,
) -> Vec<u8> {
    let state_bytes = state
        .map(|s| {
            bincode::serde::encode_to_vec(s, bincode_config()).expect("training state serialises")
        })
        .unwrap_or_default();
    let header = Header {
        dtype: T::NAME.to_owned(),
        library_version: env!("CARGO_PKG_VERSION").to_owned(),
        kind: if state.is_some() {
            FileKind::Checkpoint
        } else {
            FileKind::Weights
        },
        tensors: params
            .iter()
            .map(|(n, a)| TensorInfo {
                name: n.clone(),
                shape: a.shape().iter().map(|&d| d as u64).collect(),
            })
            .collect(),
        state_len: state_bytes.len() as u64,
    };
    let header_bytes =
        bincode::serde::encode_to_vec(&header, bincode_config()).expect("header serialises");
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header_bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&header_bytes);
    for a in params.values() {
        encode_elements(&mut out, a);
    }
    out.extend_from_slice(&state_bytes);
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// Decodes `bytes` with bincode, with a size limit proportional to the section's length,
/// so forged lengths inside cannot make it allocate more than a few times the file's size.
fn decode_limited<D: DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
    what: &str,
) -> Result<D, CheckpointError> {
    fn go<D: DeserializeOwned, const N: usize>(bytes: &[u8]) -> Result<D, String> {
        bincode::serde::decode_from_slice(bytes, bincode_config().with_limit::<N>())
            .map_err(|e| e.to_string())
            .and_then(|(d, used)| {
                if used == bytes.len() {
                    Ok(d)
                } else {
                    Err(format!("{} trailing bytes", bytes.len() - used))
                }
            })
    }
    let n = bytes.len();
    let result = if n <= 1 << 16 {
        go::<D, { 1 << 20 }>(bytes)
    } else if n <= 1 << 22 {
        go::<D, { 1 << 26 }>(bytes)
    } else if n <= 1 << 26 {
        go::<D, { 1 << 30 }>(bytes)
    } else {
        go::<D, { 1 << 34 }>(bytes)
    };
    result.map_err(|e| damaged(path, format!("{what} does not decode: {e}")))
}

/// A decoded file: header, tensors by name, and the raw training-state section.
pub(crate) struct Decoded<T: Float> {
    pub header: Header,
    pub tensors: NamedArrays<T>,
    pub state: Vec<u8>,
}

/// Checks magic, version, checksum, header and sizes, and decodes the tensors.
/// Decodes a weights file or checkpoint. With `convert`, tensors stored as the other float
/// type are converted to `T` (for weights); without, the file must hold `T` (for a training
/// checkpoint, whose optimizer state is in `T`).
pub(crate) fn decode<T: Float>(
    bytes: &[u8],
    path: &Path,
    convert: bool,
) -> Result<Decoded<T>, CheckpointError> {
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(CheckpointError::NotGradus {
            path: path.to_path_buf(),
            found: bytes[..bytes.len().min(8)].to_vec(),
            expected: MAGIC.to_vec(),
        });
    }
    if bytes.len() < PREFIX + CHECKSUM {
        return Err(damaged(
            path,
            format!(
                "truncated: {} bytes, a file needs at least {}",
                bytes.len(),
                PREFIX + CHECKSUM
            ),
        ));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if version > FORMAT_VERSION {
        return Err(CheckpointError::NewerVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if version == 0 {
        return Err(damaged(path, "format version 0 does not exist"));
    }
    let (body, stored) = bytes.split_at(bytes.len() - CHECKSUM);
    let digest = Sha256::digest(body);
    if digest.as_slice() != stored {
        return Err(damaged(
            path,
            format!(
                "checksum mismatch (expected {}, found {}): the file is truncated or was modified",
                hex(stored),
                hex(&digest)
            ),
        ));
    }
    let header_len = u64::from_le_bytes(bytes[12..20].try_into().unwrap());
    let rest = &body[PREFIX..];
    if header_len > rest.len() as u64 {
        return Err(damaged(
            path,
            format!(
                "header length {header_len} exceeds the {} bytes that follow",
                rest.len()
            ),
        ));
    }
    let (header_bytes, rest) = rest.split_at(header_len as usize);
    let header: Header = decode_limited(header_bytes, path, "header")?;
    let elem = match element_size(&header.dtype) {
        Some(size) if header.dtype == T::NAME || convert => size,
        _ => {
            return Err(CheckpointError::DType {
                path: path.to_path_buf(),
                expected: T::NAME.into(),
                found: header.dtype,
            });
        }
    };
    let mut sizes = Vec::with_capacity(header.tensors.len());
    let mut total: u64 = 0;
    for t in &header.tensors {
        let size = t
            .shape
            .iter()
            .try_fold(elem, |acc, &d| acc.checked_mul(d))
            .and_then(|s| {
                total = total.checked_add(s)?;
                Some(s)
            })
            .filter(|_| total <= rest.len() as u64)
            .ok_or_else(|| {
                damaged(
                    path,
                    format!(
                        "tensor {} of shape {:?} does not fit in the file",
                        t.name, t.shape
                    ),
                )
            })?;
        sizes.push(size as usize);
    }
    if total.checked_add(header.state_len) != Some(rest.len() as u64) {
        return Err(damaged(
            path,
            format!(
                "tensors ({total} bytes) and state ({} bytes) do not add up to the {} bytes present",
                header.state_len,
                rest.len()
            ),
        ));
    }
    let mut tensors = NamedArrays::new();
    let mut offset = 0;
    for (t, size) in header.tensors.iter().zip(sizes) {
        let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
        let data = decode_elements::<T>(&rest[offset..offset + size], &header.dtype);
        offset += size;
        let array = ArrayD::from_shape_vec(IxDyn(&shape), data)
            .map_err(|e| damaged(path, e.to_string()))?;
        if tensors.insert(t.name.clone(), array).is_some() {
            return Err(damaged(path, format!("tensor {} appears twice", t.name)));
        }
    }
    Ok(Decoded {
        header,
        tensors,
        state: rest[offset..].to_vec(),
    })
}

pub(crate) fn decode_state<S: DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
) -> Result<S, CheckpointError> {
    decode_limited(bytes, path, "training state")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    std::fs::read(path).map_err(io(path))
}

/// Saves a model's weights to `path` atomically.
///
/// ```
/// use gradus::{checkpoint, Sequential};
/// let (_, params) = Sequential::<f32>::new().linear(3, 2).build(0).unwrap();
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("model.gradus");
/// checkpoint::save_weights(&path, &params).unwrap();
///
/// let (_, mut other) = Sequential::<f32>::new().linear(3, 2).build(1).unwrap();
/// checkpoint::load_weights(&path, &mut other).unwrap();
/// assert_eq!(other.export(), params.export());
/// ```
pub fn save_weights<T: Float>(
    path: impl AsRef<Path>,
    params: &ParamStore<T>,
) -> Result<(), CheckpointError> {
    write_atomically(path.as_ref(), &encode::<T, ()>(&params.export(), None))
}

/// Reads the weights in `path` without a model.
pub fn read_weights<T: Float>(path: impl AsRef<Path>) -> Result<NamedArrays<T>, CheckpointError> {
    let path = path.as_ref();
    parse_weights(&read(path)?, path)
}

/// Parses the bytes of a weights file or checkpoint; `path` is used in errors only.
///
/// Weights saved as the other float type are converted, as PyTorch's `load_state_dict`
/// copies across dtypes: f32 to f64 exactly, f64 to f32 rounded to nearest.
///
/// ```
/// use gradus::{checkpoint, Sequential};
/// let (_, params32) = Sequential::<f32>::new().linear(3, 2).build(0).unwrap();
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("model.gradus");
/// checkpoint::save_weights(&path, &params32).unwrap();
/// let (_, mut params64) = Sequential::<f64>::new().linear(3, 2).build(1).unwrap();
/// checkpoint::load_weights(&path, &mut params64).unwrap();
/// let w = params64.id("0.weight").unwrap();
/// assert_eq!(params64.get(w)[[1, 2]], params32.get(w)[[1, 2]] as f64);
/// ```
pub fn parse_weights<T: Float>(
    bytes: &[u8],
    path: &Path,
) -> Result<NamedArrays<T>, CheckpointError> {
    Ok(decode::<T>(bytes, path, true)?.tensors)
}

/// Loads weights (from a weights file or a checkpoint) into a model's parameters, checking
/// every name and shape; nothing changes unless all fit.
pub fn load_weights<T: Float>(
    path: impl AsRef<Path>,
    params: &mut ParamStore<T>,
) -> Result<(), CheckpointError> {
    let path = path.as_ref();
    let tensors = read_weights::<T>(path)?;
    params
        .import(&tensors)
        .map_err(|diff| CheckpointError::Mismatch {
            path: path.to_path_buf(),
            diff,
        })
}

/// Exports weights as safetensors, loadable in PyTorch with
/// `safetensors.torch.load_file(path)` and, for an equivalent `nn.Sequential`, directly by
/// `model.load_state_dict(...)`: names are the same dotted names (`0.weight`, `0.bias`, ...)
/// and `Linear` weights have PyTorch's `[out, in]` layout.
pub fn export_safetensors<T: Float>(
    path: impl AsRef<Path>,
    params: &ParamStore<T>,
) -> Result<(), CheckpointError> {
    let path = path.as_ref();
    let dtype = if T::NAME == "f32" {
        safetensors::Dtype::F32
    } else {
        safetensors::Dtype::F64
    };
    // Parameters and buffers, as PyTorch's state_dict holds them.
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = params
        .export()
        .into_iter()
        .map(|(name, a)| {
            let mut bytes = Vec::new();
            encode_elements(&mut bytes, &a);
            (name, a.shape().to_vec(), bytes)
        })
        .collect();
    let views = buffers
        .iter()
        .map(|(n, shape, bytes)| {
            safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CheckpointError::Safetensors {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert(
        "library".to_string(),
        format!("gradus {}", env!("CARGO_PKG_VERSION")),
    );
    let bytes = safetensors::tensor::serialize(views, Some(meta)).map_err(|e| {
        CheckpointError::Safetensors {
            path: path.to_path_buf(),
            problem: e.to_string(),
        }
    })?;
    write_atomically(path, &bytes)
}

/// Reads a safetensors file's F32/F64 tensors, converting to the model's element type.
pub fn read_safetensors<T: Float>(
    path: impl AsRef<Path>,
) -> Result<NamedArrays<T>, CheckpointError> {
    let path = path.as_ref();
    parse_safetensors(&read(path)?, path)
}

/// Parses the bytes of a safetensors file; `path` is used in errors only.
pub fn parse_safetensors<T: Float>(
    bytes: &[u8],
    path: &Path,
) -> Result<NamedArrays<T>, CheckpointError> {
    let bad = |problem: String| CheckpointError::Safetensors {
        path: path.to_path_buf(),
        problem,
    };
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = NamedArrays::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let values: Vec<T> = match view.dtype() {
            safetensors::Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| T::of(f32::from_le_bytes(c.try_into().unwrap()) as f64))
                .collect(),
            safetensors::Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| T::of(f64::from_le_bytes(c.try_into().unwrap())))
                .collect(),
            other => {
                return Err(bad(format!(
                    "tensor {name} has type {other:?}, expected F32 or F64"
                )));
            }
        };
        let array = ArrayD::from_shape_vec(IxDyn(view.shape()), values)
            .map_err(|e| bad(format!("tensor {name}: {e}")))?;
        out.insert(name, array);
    }
    Ok(out)
}

/// Imports a safetensors file into a model's parameters, checking every name and shape.
pub fn import_safetensors<T: Float>(
    path: impl AsRef<Path>,
    params: &mut ParamStore<T>,
) -> Result<(), CheckpointError> {
    let path = path.as_ref();
    let tensors = read_safetensors::<T>(path)?;
    params
        .import(&tensors)
        .map_err(|diff| CheckpointError::Mismatch {
            path: path.to_path_buf(),
            diff,
        })
}
