//! The knowledge crate's error type. Pack errors name the file and line to fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    /// A pack source file is wrong: the message says what to change, at which line.
    #[error("{}:{line}: {message}", path.display())]
    Pack {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("cannot read or write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("knowledge base {location}: {source}")]
    Sqlite {
        location: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "knowledge base {location} has schema version {found}, newer than the {supported} this build knows: \
         update edge-agent, or rebuild the pack with this version"
    )]
    SchemaTooNew {
        location: String,
        found: u32,
        supported: u32,
    },
    #[error("knowledge base {location} is not a compiled knowledge pack: {reason}")]
    NotAPack { location: String, reason: String },
    #[error("embedding failed: {0}")]
    Embedding(String),
}

pub type Result<T, E = KnowledgeError> = std::result::Result<T, E>;

/// Attaches the knowledge base's location to SQLite errors.
pub(crate) trait SqliteContext<T> {
    fn at(self, location: &str) -> Result<T>;
}

impl<T> SqliteContext<T> for std::result::Result<T, rusqlite::Error> {
    fn at(self, location: &str) -> Result<T> {
        self.map_err(|source| KnowledgeError::Sqlite {
            location: location.to_string(),
            source,
        })
    }
}
