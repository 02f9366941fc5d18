//! The compact encoder: static token embeddings (distilled from the pretrained
//! sentence encoder, see [`crate::distill`]) mean-pooled over the utterance's tokens.
//!
//! It is a table lookup and an average, so it answers in microseconds on a head unit
//! and its whole table fits the 16 MB budget (f16).

use candle_core::{DType, Device, Tensor};
use tokenizers::Tokenizer;

use crate::encoder::{l2_normalise, SentenceEncoder};
use crate::error::{ModelError, Result};

pub struct CompactEncoder {
    tokenizer: Tokenizer,
    /// `(vocab, dim)`, in the dtype it was stored in (f16 when shipped); rows are
    /// converted to f32 after the lookup, so the table stays half-size in memory.
    embeddings: Tensor,
    dim: usize,
}

impl CompactEncoder {
    pub fn new(tokenizer: Tokenizer, embeddings: Tensor) -> Result<Self> {
        let (vocab, dim) = embeddings.dims2()?;
        let tokenizer_vocab = tokenizer.get_vocab_size(true);
        if tokenizer_vocab > vocab {
            return Err(ModelError::Input(format!(
                "the tokenizer has {tokenizer_vocab} tokens but the embedding table only {vocab} rows"
            )));
        }
        Ok(CompactEncoder {
            tokenizer,
            embeddings,
            dim,
        })
    }

    /// The utterance's token ids, without special tokens (they carry no meaning in a
    /// static bag of tokens).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Mean of the token rows, L2-normalised. No tokens gives the zero vector.
    pub fn pool_ids(&self, ids: &[u32]) -> Result<Tensor> {
        if ids.is_empty() {
            return Ok(Tensor::zeros(self.dim, DType::F32, &Device::Cpu)?);
        }
        let index = Tensor::new(ids, &Device::Cpu)?;
        let rows = self.embeddings.index_select(&index, 0)?.to_dtype(DType::F32)?;
        l2_normalise(&rows.mean(0)?)
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn embeddings(&self) -> &Tensor {
        &self.embeddings
    }
}

impl SentenceEncoder for CompactEncoder {
    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, text: &str) -> Result<Tensor> {
        let ids = self.token_ids(text)?;
        self.pool_ids(&ids)
    }
}
