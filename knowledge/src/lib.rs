//! knowledge: the knowledge base that edge-agent, cloud-bridge and the fleet tooling
//! share. It owns the pack source format and its compiler ([`pack`]), the SQLite
//! schema and migrations ([`schema`]), and search over a compiled pack ([`kb`]).
//!
//! **Architecture Invariant:** the crate knows no model and no network. Embeddings
//! come through the [`Embedder`] seam; the caller decides where the pack lives.

pub mod article;
pub mod bundle;
pub mod embed;
pub mod error;
pub mod kb;
pub mod pack;
pub mod schema;
mod vectors;

pub use article::{Applicability, Article, VehicleFilter};
pub use embed::{cosine, Embedder};
pub use error::{KnowledgeError, Result};
pub use kb::{content_words, fts_query, Hit, KnowledgeBase, PackInfo, Query, SearchWeights};
pub use pack::{compile, compile_into, BuildReport};
