//! The `.gradus` format: a fixed prefix, a bincode header, the tensors and an optional
//! training state, all under a SHA-256 (the layout is in the module above).

use std::path::Path;

use gradus_autograd::ndarray::{ArrayD, IxDyn};
use gradus_autograd::{Float, NamedArrays};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{CheckpointError, damaged};

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

/// The element type of a file's tensors. On disk it is the type's name (`"f32"`, `"f64"`),
/// so a file of a type this build does not know is read as [`DType::Other`] and refused
/// with its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum DType {
    /// 32-bit floats.
    F32,
    /// 64-bit floats.
    F64,
    /// Any other name found in a file.
    Other(String),
}

impl DType {
    /// The type of `T`.
    pub fn of<T: Float>() -> Self {
        DType::from(T::NAME.to_string())
    }

    /// Bytes per element, for the types gradus reads.
    pub fn size(&self) -> Option<u64> {
        match self {
            DType::F32 => Some(4),
            DType::F64 => Some(8),
            DType::Other(_) => None,
        }
    }
}

impl From<String> for DType {
    fn from(name: String) -> Self {
        match name.as_str() {
            "f32" => DType::F32,
            "f64" => DType::F64,
            _ => DType::Other(name),
        }
    }
}

impl From<DType> for String {
    fn from(d: DType) -> String {
        d.to_string()
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::Other(name) => name,
        })
    }
}

/// The header after the fixed prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The tensors' element type.
    pub dtype: DType,
    /// The gradus version that wrote the file.
    pub library_version: String,
    /// Weights or full checkpoint.
    pub kind: FileKind,
    /// Every tensor, in payload order.
    pub tensors: Vec<TensorInfo>,
    /// Length of the training-state section (0 for weights).
    pub state_len: u64,
}

pub(crate) fn encode_elements<T: Float>(out: &mut Vec<u8>, a: &ArrayD<T>) {
    match T::NAME {
        "f32" => a
            .iter()
            .for_each(|v| out.extend_from_slice(&(v.as_f64() as f32).to_le_bytes())),
        _ => a
            .iter()
            .for_each(|v| out.extend_from_slice(&v.as_f64().to_le_bytes())),
    }
}

/// The little-endian elements of a file of element type `dtype` (`f32` or `f64`), as `T`
/// (exact from f32 to f64, rounded to nearest from f64 to f32).
fn decode_elements<T: Float>(bytes: &[u8], dtype: &DType) -> Vec<T> {
    match dtype {
        DType::F32 => bytes
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
        dtype: DType::of::<T>(),
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
    // The checksum first: a flipped bit in the version field is damage, not a newer file.
    let (body, stored) = bytes.split_at(bytes.len() - CHECKSUM);
    let digest = Sha256::digest(body);
    if digest.as_slice() != stored {
        let newer = if version > FORMAT_VERSION {
            format!(
                " (its version field says format {version}, newer than this build's \
                 {FORMAT_VERSION}: if it was written by a newer gradus, upgrade)"
            )
        } else {
            String::new()
        };
        return Err(damaged(
            path,
            format!(
                "checksum mismatch (expected {}, found {}): the file is truncated or was modified{newer}",
                hex(stored),
                hex(&digest)
            ),
        ));
    }
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
    let elem = match header.dtype.size() {
        Some(size) if header.dtype == DType::of::<T>() || convert => size,
        _ => {
            return Err(CheckpointError::DType {
                path: path.to_path_buf(),
                expected: T::NAME.into(),
                found: header.dtype.to_string(),
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
        if let Some(bad) = non_finite(&data) {
            return Err(damaged(
                path,
                format!("tensor {}: {bad}", super::error::printable(&t.name)),
            ));
        }
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

/// Says how many values of a tensor are NaN or infinite (an f64 beyond f32's range becomes
/// infinite when read as f32), if any: weights like that would poison every prediction.
pub(crate) fn non_finite<T: Float>(data: &[T]) -> Option<String> {
    if gradus_autograd::all_finite(data) {
        return None;
    }
    let n = data.iter().filter(|v| !v.is_finite()).count();
    Some(format!(
        "{n} of its {} values are NaN or infinite (or beyond the model's {} range)",
        data.len(),
        T::NAME
    ))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
