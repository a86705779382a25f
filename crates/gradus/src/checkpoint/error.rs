//! How reading or writing a weights file, checkpoint or safetensors file fails: every error
//! names the file and says what was expected and what was found.

use std::path::{Path, PathBuf};

use gradus_autograd::ImportError;

use super::format::FileKind;

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

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn damaged(path: &Path, problem: impl Into<String>) -> CheckpointError {
    CheckpointError::Damaged {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// A tensor name as it may be printed: control characters and terminal escapes from a
/// hostile file are escaped, so they cannot forge output lines; a very long name is cut.
pub(crate) fn printable(name: &str) -> String {
    let escaped: String = name.chars().flat_map(char::escape_debug).collect();
    if escaped.chars().count() > 200 {
        let cut: String = escaped.chars().take(200).collect();
        format!("{cut}...")
    } else {
        escaped
    }
}
