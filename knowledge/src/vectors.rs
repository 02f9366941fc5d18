//! Article vectors in SQLite: each article embedded whole and field by field,
//! stored as little-endian f32 blobs. Compiling a pack and re-embedding a base
//! both write them through here.

use rusqlite::{params, Connection};

use crate::article::Article;
use crate::embed::Embedder;
use crate::error::{KnowledgeError, Result, SqliteContext};

/// Embeds an article whole and field by field, and stores the vectors.
pub(crate) fn store_vectors(
    conn: &Connection,
    location: &str,
    rowid: i64,
    article: &Article,
    embedder: &dyn Embedder,
) -> Result<()> {
    let whole = embedder
        .embed(&article.embedding_text())
        .map_err(KnowledgeError::Embedding)?;
    conn.prepare_cached("INSERT INTO embeddings (article_rowid, vector) VALUES (?1, ?2)")
        .and_then(|mut insert| insert.execute(params![rowid, vector_to_blob(&whole)]))
        .at(location)?;
    let mut insert = conn
        .prepare_cached("INSERT INTO field_embeddings (article_rowid, field, vector) VALUES (?1, ?2, ?3)")
        .at(location)?;
    for (field, text) in article.field_texts().into_iter().enumerate() {
        let v = embedder.embed(text).map_err(KnowledgeError::Embedding)?;
        insert
            .execute(params![rowid, field as i64, vector_to_blob(&v)])
            .at(location)?;
    }
    Ok(())
}

pub(crate) fn vector_to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn blob_to_vector(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
