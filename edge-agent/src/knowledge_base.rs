//! The car's knowledge base: opening the compiled pack (building it from the
//! shipped source when it is missing or older). The model as its embedder is
//! [`daemon::locate::ModelEmbedder`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use daemon::locate::{intent_labels, LocateError};
use knowledge::{Embedder, KnowledgeBase, KnowledgeError};

use crate::config::Config;

/// Why the car has no knowledge base to answer from.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeBaseError {
    #[error(transparent)]
    NoPack(#[from] LocateError),
    #[error("cannot build the knowledge pack {pack}")]
    Build {
        pack: PathBuf,
        #[source]
        source: Box<KnowledgeError>,
    },
    #[error("cannot open the {which} knowledge base {db}")]
    Open {
        which: &'static str,
        db: PathBuf,
        #[source]
        source: Box<KnowledgeError>,
    },
    #[error("the shipped knowledge pack's manifest is unreadable")]
    Manifest(#[source] Box<KnowledgeError>),
}

/// Compiles a pack folder into `out`.
pub fn build(pack: &Path, out: &Path, embedder: &dyn Embedder) -> Result<knowledge::BuildReport, KnowledgeBaseError> {
    knowledge::compile(pack, out, embedder, &intent_labels()).map_err(|source| KnowledgeBaseError::Build {
        pack: pack.to_path_buf(),
        source: Box::new(source),
    })
}

/// Opens the compiled base, first building it from the shipped pack if there is
/// none or the shipped pack is a newer version. A base a fleet update put in place
/// is kept whatever the shipped pack's version: fleet ops own it from then on, and
/// when it is lost it is restored from the kept copy of the applied version
/// ([`crate::fleet::restore_kept`]).
pub fn open(config: &Config, embedder: Arc<dyn Embedder>) -> Result<KnowledgeBase, KnowledgeBaseError> {
    let db = config.knowledge_db();
    let pack = daemon::locate::find_pack_dir(&config.knowledge.pack)?;
    let shipped_version = pack_version(&pack)?;
    let existing = if db.is_file() {
        match check_integrity(&db).and_then(|()| KnowledgeBase::open(&db, embedder.clone())) {
            Ok(kb) if kb.info().bundle_version.is_some() || kb.info().version >= shipped_version => return Ok(kb),
            Ok(kb) => Some(kb.info().version),
            Err(error) => {
                tracing::warn!(db = %db.display(), %error, "the compiled knowledge base is unusable: rebuilding it");
                None
            }
        }
    } else {
        None
    };
    // A fleet version was answering: it comes back from its kept copy, or the
    // gap is recorded and reported (and the shipped pack answers meanwhile).
    // (Only when it was lost: an older shipped base is simply built anew.)
    if existing.is_none() {
        let files = crate::fleet::KbFiles::beside(&db);
        match crate::fleet::restore_kept(&files, embedder.clone()) {
            Ok(Some(_)) => return open_as("restored", &db, embedder),
            Ok(None) => {}
            Err(error) => tracing::error!(%error, "the fleet state could not be updated after the base was lost"),
        }
    }
    let started = Instant::now();
    let report = build(&pack, &db, embedder.as_ref())?;
    tracing::info!(
        pack = %pack.display(), db = %db.display(), articles = report.articles, previous = ?existing,
        ms = started.elapsed().as_millis() as u64, "built the knowledge base"
    );
    open_as("just built", &db, embedder)
}

fn open_as(which: &'static str, db: &Path, embedder: Arc<dyn Embedder>) -> Result<KnowledgeBase, KnowledgeBaseError> {
    KnowledgeBase::open(db, embedder).map_err(|source| KnowledgeBaseError::Open {
        which,
        db: db.to_path_buf(),
        source: Box::new(source),
    })
}

/// SQLite's quick check: a base with a damaged page opens fine and fails later,
/// mid-answer; found here, it is rebuilt (or restored) at once.
fn check_integrity(db: &Path) -> Result<(), KnowledgeError> {
    let location = db.display().to_string();
    let sqlite = |source| KnowledgeError::Sqlite {
        location: location.clone(),
        source,
    };
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite)?;
    let verdict: String = conn
        .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
        .map_err(sqlite)?;
    if verdict != "ok" {
        return Err(KnowledgeError::NotAPack {
            location,
            reason: format!("integrity check: {verdict}"),
        });
    }
    Ok(())
}

fn pack_version(pack: &Path) -> Result<u64, KnowledgeBaseError> {
    Ok(knowledge::pack::read_manifest(pack)
        .map_err(|e| KnowledgeBaseError::Manifest(Box::new(e)))?
        .version)
}
