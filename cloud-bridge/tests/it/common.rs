//! What the supervisor tests share: the default config with every store on a
//! SQLite file in a temporary folder.

use std::sync::Arc;

use cloud_bridge::config::Config;
use cloud_bridge::store::{SqliteStore, Stores};

/// The config, its stores, and the folder that holds them (kept alive by the caller).
pub fn temp_stores() -> (Config, Stores, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("cb.sqlite").display().to_string();
    let config = Config::layered(None, [("CLOUD_BRIDGE__STORE__PATH".to_string(), store)].into_iter()).unwrap();
    let stores = Stores::sqlite(Arc::new(SqliteStore::open(&config.store_path()).unwrap()));
    (config, stores, dir)
}
