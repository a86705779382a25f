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

mod atomic;
mod error;
mod format;
mod safetensors_io;

use std::path::Path;

use gradus_autograd::{Float, NamedArrays, ParamStore};

use atomic::read_checking_prefix;

/// Reads a `.gradus` file, refusing one whose first eight bytes are not the magic before
/// reading the rest.
pub(crate) fn read_gradus(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    read_checking_prefix(path, MAGIC.len(), |head| {
        if head == MAGIC {
            Ok(())
        } else {
            Err(CheckpointError::NotGradus {
                path: path.to_path_buf(),
                found: head.to_vec(),
                expected: MAGIC.to_vec(),
            })
        }
    })
}
pub use atomic::write_atomically;
pub use error::CheckpointError;
pub use format::{DType, FORMAT_VERSION, FileKind, Header, MAGIC, TensorInfo};
pub(crate) use format::{decode, decode_state, encode};
pub use safetensors_io::{
    export_safetensors, import_safetensors, parse_safetensors, read_safetensors,
};

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
///
/// ```
/// use gradus::{checkpoint, Sequential};
/// let (_, params) = Sequential::<f32>::new().linear(3, 2).build(0).unwrap();
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("model.gradus");
/// checkpoint::save_weights(&path, &params).unwrap();
/// let weights = checkpoint::read_weights::<f32>(&path).unwrap();
/// assert_eq!(weights, params.export());
/// ```
pub fn read_weights<T: Float>(path: impl AsRef<Path>) -> Result<NamedArrays<T>, CheckpointError> {
    let path = path.as_ref();
    parse_weights(&read_gradus(path)?, path)
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
///
/// ```
/// use gradus::{checkpoint, Sequential};
/// let (_, params) = Sequential::<f32>::new().linear(3, 2).build(0).unwrap();
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("model.gradus");
/// checkpoint::save_weights(&path, &params).unwrap();
/// // Another shape is refused, naming the parameter, and the model is left as it was:
/// let (_, mut wider) = Sequential::<f32>::new().linear(3, 4).build(1).unwrap();
/// let before = wider.export();
/// let err = checkpoint::load_weights(&path, &mut wider).unwrap_err();
/// assert!(err.to_string().contains("0.weight"));
/// assert_eq!(wider.export(), before);
/// ```
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
