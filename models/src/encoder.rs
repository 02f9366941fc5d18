//! The sentence-encoder seam: text in, one fixed-size embedding out. The compact
//! static encoder and the BERT transformer both sit behind [`SentenceEncoder`], so
//! heads, training, evaluation and the product never care which one runs.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::error::{ModelError, Result};

/// Which encoder a model folder is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncoderKind {
    Compact,
    Transformer,
}

impl std::str::FromStr for EncoderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "compact" => Ok(EncoderKind::Compact),
            "transformer" => Ok(EncoderKind::Transformer),
            other => Err(format!("unknown encoder {other:?}: use compact or transformer")),
        }
    }
}

impl std::fmt::Display for EncoderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EncoderKind::Compact => "compact",
            EncoderKind::Transformer => "transformer",
        })
    }
}

pub trait SentenceEncoder: Send + Sync {
    /// Width of the embeddings.
    fn dim(&self) -> usize;

    /// Embeds one utterance, whole (no truncation below the encoder's own limit):
    /// a rank-1 tensor of `dim()` f32 values, L2-normalised.
    fn embed(&self, text: &str) -> Result<Tensor>;

    /// Embeds many utterances into an `(n, dim)` matrix; encoders that can batch
    /// override it. Training uses it, the product does not.
    fn embed_batch(&self, texts: &[&str]) -> Result<Tensor> {
        let rows = texts.iter().map(|t| self.embed(t)).collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&rows, 0)?)
    }
}

/// Loads a `tokenizer.json` for single-utterance use: no padding, and no truncation
/// other than `max_tokens` (the encoder's own position limit, if it has one).
pub fn load_tokenizer(path: &std::path::Path, max_tokens: Option<usize>) -> Result<Tokenizer> {
    let dir = path.parent().unwrap_or(path);
    let mut tokenizer = Tokenizer::from_file(path)
        .map_err(|e| ModelError::invalid(dir, format!("{} is not a usable tokenizer: {e}", path.display())))?;
    tokenizer.with_padding(None);
    let truncation = max_tokens.map(|max_length| tokenizers::TruncationParams {
        max_length,
        ..Default::default()
    });
    tokenizer
        .with_truncation(truncation)
        .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
    Ok(tokenizer)
}

/// Divides a rank-1 or rank-2 (row-wise) tensor by its L2 norm.
pub fn l2_normalise(x: &Tensor) -> Result<Tensor> {
    let last = x.rank() - 1;
    let norm = x.sqr()?.sum_keepdim(last)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    Ok(x.broadcast_div(&norm)?)
}
