//! The knowledge base's SQLite schema and its forward-only migrations.
//!
//! `PRAGMA user_version` holds the number of migrations applied. Opening a base
//! applies the missing ones in one transaction; a base from a newer build (a higher
//! version than [`MIGRATIONS`] knows) is refused, never guessed at.

use rusqlite::Connection;

use crate::error::{KnowledgeError, Result, SqliteContext};

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only: a
/// shipped migration is never edited.
pub const MIGRATIONS: &[&str] = &[
    // 1: articles, their intents, the FTS5 index and the per-article embeddings.
    r#"
    CREATE TABLE pack (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
    CREATE TABLE articles (
        rowid     INTEGER PRIMARY KEY,
        id        TEXT NOT NULL UNIQUE,
        title     TEXT NOT NULL,
        summary   TEXT NOT NULL,
        body      TEXT NOT NULL,
        aliases   TEXT NOT NULL,   -- one per line
        keywords  TEXT NOT NULL,   -- one per line
        models    TEXT NOT NULL,   -- one per line; empty = any
        trims     TEXT NOT NULL,
        markets   TEXT NOT NULL,
        year_from INTEGER,
        year_to   INTEGER,
        locale    TEXT NOT NULL,
        version   INTEGER NOT NULL,
        source    TEXT NOT NULL    -- file:line it was compiled from
    ) STRICT;
    CREATE TABLE article_intents (
        intent        TEXT NOT NULL,
        article_rowid INTEGER NOT NULL REFERENCES articles(rowid) ON DELETE CASCADE,
        PRIMARY KEY (intent, article_rowid)
    ) STRICT;
    CREATE VIRTUAL TABLE articles_fts USING fts5(
        title, aliases, keywords, body,
        tokenize = 'porter unicode61 remove_diacritics 2'
    );
    CREATE TABLE embeddings (
        article_rowid INTEGER PRIMARY KEY REFERENCES articles(rowid) ON DELETE CASCADE,
        vector        BLOB NOT NULL    -- little-endian f32
    ) STRICT;
    "#,
    // 2: one vector per name, alias and summary of an article, so that a question
    // close to any one way of saying it is close to the article.
    r#"
    CREATE TABLE field_embeddings (
        article_rowid INTEGER NOT NULL REFERENCES articles(rowid) ON DELETE CASCADE,
        field         INTEGER NOT NULL,  -- the index in Article::field_texts
        vector        BLOB NOT NULL,     -- little-endian f32
        PRIMARY KEY (article_rowid, field)
    ) STRICT;
    "#,
];

pub fn latest() -> u32 {
    MIGRATIONS.len() as u32
}

/// Brings the schema up to [`latest`], or refuses a newer one.
pub fn migrate(conn: &mut Connection, location: &str) -> Result<u32> {
    apply_migrations(conn, location, MIGRATIONS)
}

/// Applies the missing `migrations` (forward only, tracked in `user_version`) in
/// one transaction; refuses a database from a newer build. Returns the version
/// found. Other SQLite stores of the product (edge-agent's state) use it too.
pub fn apply_migrations(conn: &mut Connection, location: &str, migrations: &[&str]) -> Result<u32> {
    let latest = migrations.len() as u32;
    let found: u32 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .at(location)?;
    if found > latest {
        return Err(KnowledgeError::SchemaTooNew {
            location: location.to_string(),
            found,
            supported: latest,
        });
    }
    if found < latest {
        let tx = conn.transaction().at(location)?;
        for sql in &migrations[found as usize..] {
            tx.execute_batch(sql).at(location)?;
        }
        tx.pragma_update(None, "user_version", latest).at(location)?;
        tx.commit().at(location)?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_base_is_migrated_to_the_latest_version_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn, "mem").unwrap(), 0);
        assert_eq!(migrate(&mut conn, "mem").unwrap(), latest());
    }

    #[test]
    fn a_base_from_a_newer_build_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", latest() + 1).unwrap();
        let err = migrate(&mut conn, "kb.sqlite").unwrap_err();
        assert!(matches!(err, KnowledgeError::SchemaTooNew { found, .. } if found == latest() + 1));
        assert!(err.to_string().contains("update edge-agent"), "{err}");
    }
}
