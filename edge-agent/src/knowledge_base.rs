//! The car's knowledge base: opening the compiled pack (building it from the
//! shipped source when it is missing or older). The model as its embedder is
//! [`daemon::locate::ModelEmbedder`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use daemon::locate::intent_labels;
use knowledge::{Embedder, KnowledgeBase};

use crate::config::Config;

/// Where the compiled base lives.
pub fn db_path(config: &Config) -> PathBuf {
    if config.knowledge.db.is_empty() {
        config.state_dir().join("knowledge.sqlite")
    } else {
        PathBuf::from(&config.knowledge.db)
    }
}

/// Compiles a pack folder into `out`.
pub fn build(pack: &Path, out: &Path, embedder: &dyn Embedder) -> anyhow::Result<knowledge::BuildReport> {
    Ok(knowledge::compile(pack, out, embedder, &intent_labels())?)
}

/// Opens the compiled base, first building it from the shipped pack if there is
/// none or the shipped pack is a newer version. A base a fleet update put in place
/// is kept whatever the shipped pack's version: fleet ops own it from then on, and
/// when it is lost it is restored from the kept copy of the applied version
/// ([`crate::fleet::restore_kept`]).
pub fn open(config: &Config, embedder: Arc<dyn Embedder>) -> anyhow::Result<KnowledgeBase> {
    let db = db_path(config);
    let pack = daemon::locate::find_pack_dir(&config.knowledge.pack)?;
    let shipped_version = pack_version(&pack)?;
    let existing = if db.is_file() {
        match check_integrity(&db).and_then(|()| Ok(KnowledgeBase::open(&db, embedder.clone())?)) {
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
            Ok(Some(_)) => {
                return KnowledgeBase::open(&db, embedder).context("cannot open the restored knowledge base")
            }
            Ok(None) => {}
            Err(error) => tracing::error!(%error, "the fleet state could not be updated after the base was lost"),
        }
    }
    let started = Instant::now();
    let report = build(&pack, &db, embedder.as_ref())
        .with_context(|| format!("cannot build the knowledge pack {}", pack.display()))?;
    tracing::info!(
        pack = %pack.display(), db = %db.display(), articles = report.articles, previous = ?existing,
        ms = started.elapsed().as_millis() as u64, "built the knowledge base"
    );
    KnowledgeBase::open(&db, embedder).context("cannot open the knowledge base just built")
}

/// SQLite's quick check: a base with a damaged page opens fine and fails later,
/// mid-answer; found here, it is rebuilt (or restored) at once.
fn check_integrity(db: &Path) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let verdict: String = conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0))?;
    anyhow::ensure!(verdict == "ok", "integrity check: {verdict}");
    Ok(())
}

fn pack_version(pack: &Path) -> anyhow::Result<u64> {
    Ok(knowledge::pack::read_manifest(pack)?.version)
}
