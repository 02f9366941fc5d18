//! The crate's typed error: every failure names the file, line or input it concerns
//! and, where there is one, what to do next.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model folder is missing a file, has a corrupt one, or does not fit the
    /// contract or its encoder.
    #[error("model folder {dir}: {reason}")]
    InvalidModel { dir: PathBuf, reason: String },

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A corpus or evaluation file has a bad line.
    #[error("{path}:{line}: {reason}")]
    BadLine { path: PathBuf, line: usize, reason: String },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// The utterance itself cannot be classified (empty, oversize).
    #[error("{0}")]
    Input(String),

    /// Training was asked for something it cannot do (no lines, a bad setting).
    #[error("training: {0}")]
    Training(String),

    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    pub(crate) fn invalid(dir: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        ModelError::InvalidModel {
            dir: dir.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
