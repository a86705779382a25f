//! Typed errors for data, checkpoints and training: each names the file or field and what
//! was expected versus found.

use std::path::PathBuf;

/// Reading a dataset failed.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A required file is not there.
    #[error("{path}: not found. {hint}")]
    Missing {
        /// Where it looked.
        path: PathBuf,
        /// How to get the data.
        hint: String,
    },
    /// The bytes are not a valid IDX file.
    #[error("{path}: not a valid IDX file: {problem}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, with expected and found values.
        problem: String,
    },
    /// Two files that belong together disagree.
    #[error("{first} and {second} do not match: {problem}")]
    Mismatch {
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
        /// What differs.
        problem: String,
    },
    /// A dataset's arrays are inconsistent (built in code, not read from a file).
    #[error("dataset: {0}")]
    Invalid(String),
}
