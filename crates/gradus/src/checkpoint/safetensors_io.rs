//! safetensors, the format PyTorch and Hugging Face load directly: export, and import with
//! every name and shape checked.

use std::path::Path;

use gradus_autograd::ndarray::{ArrayD, IxDyn};
use gradus_autograd::{Float, NamedArrays, ParamStore};

use super::atomic::{read, write_atomically};
use super::error::CheckpointError;
use super::error::printable;
use super::format::{MAGIC, encode_elements, non_finite};

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
    // One entry only: the crate writes its metadata map in the map's (random) iteration
    // order, so with two entries the same weights gave files that differed from run to run.
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
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
    if bytes.starts_with(MAGIC) {
        return Err(bad(
            "this is a gradus weights file, not safetensors: load it with checkpoint::load_weights"
                .into(),
        ));
    }
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
        if let Some(problem) = non_finite(&values) {
            return Err(bad(format!("tensor {}: {problem}", printable(&name))));
        }
        let array = ArrayD::from_shape_vec(IxDyn(view.shape()), values)
            .map_err(|e| bad(format!("tensor {}: {e}", printable(&name))))?;
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
