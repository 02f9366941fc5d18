//! Local language understanding for the in-vehicle assistant.
//!
//! This crate owns everything between a line of recognised speech and the intent,
//! confidence, sentiment and route that the rest of the product acts on:
//!
//! - [`labels`]: the 30 intent labels, their routes and the sentiment labels of the
//!   contract, owned by `protocol` and re-exported here;
//! - [`corpus`]: the team's training corpus and its family-keeping splits;
//! - [`encoder`]: the sentence-encoder seam, with the [`compact`] static encoder
//!   (Model2Vec-style, shipped) and the [`transformer`] BERT encoder;
//! - [`heads`] and [`classifier`]: the trained heads and the out-of-scope gate;
//! - [`noise`]: generated noise lines, training data for what says nothing;
//! - [`distill`], [`finetune`], [`tokenlearn`], [`train`], [`baseline`] and [`metrics`]: how the shipped model is
//!   made and measured (the `train` and `eval` binaries drive them).
//!
//! **Architecture Invariant:** this crate knows nothing of tokio, MQTT or SQLite. It
//! does no network IO; models load from local folders only.

pub mod baseline;
pub mod classifier;
pub mod compact;
pub mod corpus;
pub mod distill;
pub mod encoder;
pub mod error;
pub mod finetune;
pub mod gate;
pub mod heads;
pub mod labels;
pub mod manifest;
pub mod metrics;
pub mod noise;
pub mod public;
pub mod recipe;
pub mod rng;
pub mod spelling;
pub mod tokenlearn;
pub mod train;
pub mod transformer;

pub use classifier::{cpu_features, Classifier};
pub use encoder::EncoderKind;
pub use error::ModelError;
pub use gate::{Gate, Prediction};
pub use labels::{Intent, Route, Sentiment};

/// The longest utterance accepted, in bytes. Speech recognisers emit a sentence or
/// two; anything longer is a fault upstream or hostile input, refused with a clear
/// error instead of being tokenized.
pub const MAX_UTTERANCE_BYTES: usize = 2048;
