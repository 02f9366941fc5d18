//! The transformer encoder: a BERT-family sentence encoder (all-MiniLM-L6-v2 by
//! default) loaded from a Hugging Face style folder (`config.json`, `tokenizer.json`,
//! `model.safetensors`) and run with candle-transformers, mean-pooled over the
//! attention mask and L2-normalised, as sentence-transformers does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::Tokenizer;

use crate::encoder::{l2_normalise, load_tokenizer, SentenceEncoder};
use crate::error::{ModelError, Result};

/// How a lone token's `[CLS] t [SEP]` output becomes one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoneTokenPooling {
    /// Mean over the three positions, as the sentence encoder pools a sentence.
    Mean,
    /// The output at the token's own position.
    TokenPosition,
}

pub struct TransformerEncoder {
    model: BertModel,
    tokenizer: Tokenizer,
    dim: usize,
    pad_id: u32,
}

/// The files a transformer encoder folder must hold.
pub const ENCODER_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// What an encoder folder holds, loaded and checked but not yet built into a
/// model: its config, its weights by name, and its tokenizer.
#[derive(Clone)]
pub struct EncoderParts {
    pub config: Config,
    pub tensors: HashMap<String, Tensor>,
    pub tokenizer: Tokenizer,
}

impl EncoderParts {
    /// Reads `dir`, refusing an incomplete folder or unreadable files.
    pub fn load(dir: &Path) -> Result<Self> {
        for name in ENCODER_FILES {
            if !dir.join(name).is_file() {
                return Err(ModelError::invalid(
                    dir,
                    format!(
                        "{name} is missing; a transformer encoder folder holds {}",
                        ENCODER_FILES.join(", ")
                    ),
                ));
            }
        }
        let config_path = dir.join("config.json");
        let config_text = std::fs::read_to_string(&config_path).map_err(|e| ModelError::io(&config_path, e))?;
        let config: Config = serde_json::from_str(&config_text)
            .map_err(|e| ModelError::invalid(dir, format!("config.json is not a BERT config: {e}")))?;
        let tokenizer = load_tokenizer(&dir.join("tokenizer.json"), Some(config.max_position_embeddings))?;
        let weights_path = dir.join("model.safetensors");
        let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)
            .map_err(|e| ModelError::invalid(dir, format!("model.safetensors is unreadable or corrupt: {e}")))?;
        Ok(EncoderParts {
            config,
            tensors,
            tokenizer,
        })
    }

    /// Replaces weights by the overlay's (converted to f32). `source` names the
    /// overlay in errors.
    pub fn apply_overlay(&mut self, overlay: HashMap<String, Tensor>, source: &Path) -> Result<()> {
        for (name, tensor) in overlay {
            let Some(base) = self.tensors.get(&name) else {
                return Err(ModelError::invalid(
                    source,
                    format!("the overlay names {name}, which the encoder does not have"),
                ));
            };
            if base.dims() != tensor.dims() {
                return Err(ModelError::invalid(
                    source,
                    format!(
                        "the overlay's {name} is {:?}, the encoder's {:?}",
                        tensor.dims(),
                        base.dims()
                    ),
                ));
            }
            self.tensors.insert(name, tensor.to_dtype(DType::F32)?);
        }
        Ok(())
    }
}

impl TransformerEncoder {
    /// Loads the encoder from `dir`, refusing an incomplete or inconsistent folder.
    pub fn load(dir: &Path) -> Result<Self> {
        let parts = EncoderParts::load(dir)?;
        Self::from_parts(parts, dir)
    }

    /// Loads the encoder from `dir` with some of its weights replaced by those in
    /// `overlay` (a fine-tuned encoder's changed layers, see [`crate::finetune`]).
    /// Every overlay tensor must name a weight the encoder has, with its shape.
    pub fn load_with_overlay(dir: &Path, overlay: &Path) -> Result<Self> {
        let mut parts = EncoderParts::load(dir)?;
        let tuned = candle_core::safetensors::load(overlay, &Device::Cpu)
            .map_err(|e| ModelError::invalid(dir, format!("{} is unreadable or corrupt: {e}", overlay.display())))?;
        parts.apply_overlay(tuned, overlay)?;
        Self::from_parts(parts, dir)
    }

    /// Builds the encoder from loaded parts; `dir` names the folder in errors.
    pub fn from_parts(parts: EncoderParts, dir: &Path) -> Result<Self> {
        let vb = VarBuilder::from_tensors(parts.tensors, DType::F32, &Device::Cpu);
        let model = BertModel::load(vb, &parts.config)
            .map_err(|e| ModelError::invalid(dir, format!("model.safetensors does not match config.json: {e}")))?;
        Ok(TransformerEncoder {
            model,
            tokenizer: parts.tokenizer,
            dim: parts.config.hidden_size,
            pad_id: parts.config.pad_token_id as u32,
        })
    }

    /// Tokenises `texts` and pads them to the longest: ids and attention mask,
    /// both `(texts.len(), longest)`, and each text's own length.
    pub fn tokenize_padded(&self, texts: &[&str]) -> Result<(Tensor, Tensor, Vec<usize>)> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let len = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(texts.len() * len);
        let mut mask = Vec::with_capacity(texts.len() * len);
        let mut lengths = Vec::with_capacity(texts.len());
        for e in &encodings {
            let n = e.get_ids().len();
            ids.extend_from_slice(e.get_ids());
            ids.extend(std::iter::repeat_n(self.pad_id, len - n));
            mask.extend(std::iter::repeat_n(1u32, n));
            mask.extend(std::iter::repeat_n(0u32, len - n));
            lengths.push(n);
        }
        let ids = Tensor::from_vec(ids, (texts.len(), len), &Device::Cpu)?;
        let mask = Tensor::from_vec(mask, (texts.len(), len), &Device::Cpu)?;
        Ok((ids, mask, lengths))
    }

    /// The vocabulary size of the tokenizer (the rows a distilled table needs).
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Embeds each token id on its own, as the sentence `[CLS] token [SEP]`,
    /// pooled as `pooling` says and not normalised: the first step of
    /// the Model2Vec distillation. Returns `(ids.len(), dim)`.
    pub fn embed_lone_tokens(&self, ids: &[u32], pooling: LoneTokenPooling) -> Result<Tensor> {
        let special = |name: &str| {
            self.tokenizer
                .token_to_id(name)
                .ok_or_else(|| ModelError::Tokenizer(format!("the tokenizer has no {name} token")))
        };
        let (cls, sep) = (special("[CLS]")?, special("[SEP]")?);
        let seq: Vec<u32> = ids.iter().flat_map(|&id| [cls, id, sep]).collect();
        let input = Tensor::from_vec(seq, (ids.len(), 3), &Device::Cpu)?;
        let hidden = self.model.forward(&input, &input.zeros_like()?, None)?;
        Ok(match pooling {
            LoneTokenPooling::Mean => hidden.mean(1)?,
            LoneTokenPooling::TokenPosition => hidden.narrow(1, 1, 1)?.squeeze(1)?,
        })
    }

    /// The encoder's hidden states for already-tokenised, possibly padded input
    /// `(n, len)` with its attention mask (benchmarks and profiling).
    pub fn forward_raw(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        Ok(self.model.forward(ids, &ids.zeros_like()?, Some(mask))?)
    }

    /// Mean-pools `hidden` `(n, len, dim)` over `mask` `(n, len)`, L2-normalised.
    pub fn pool(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1.0, f64::MAX)?;
        l2_normalise(&summed.broadcast_div(&counts)?)
    }
}

impl SentenceEncoder for TransformerEncoder {
    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, text: &str) -> Result<Tensor> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let ids = Tensor::new(encoding.get_ids(), &Device::Cpu)?.unsqueeze(0)?;
        let types = ids.zeros_like()?;
        // One unpadded sequence: every position is real, so no mask is needed.
        let hidden = self.model.forward(&ids, &types, None)?;
        Ok(l2_normalise(&hidden.mean(1)?)?.squeeze(0)?)
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Tensor> {
        let (ids, mask, _) = self.tokenize_padded(texts)?;
        let hidden = self.model.forward(&ids, &ids.zeros_like()?, Some(&mask))?;
        Self::pool(&hidden, &mask)
    }
}

/// Where the transformer encoder is looked for when no folder is given: the
/// `EDGE_ENCODER_DIR` environment variable, then `models/encoder/all-MiniLM-L6-v2`
/// in this checkout (where `models/fetch-encoder.sh` puts it).
pub fn default_encoder_dir() -> PathBuf {
    std::env::var_os("EDGE_ENCODER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("encoder/all-MiniLM-L6-v2"))
}
