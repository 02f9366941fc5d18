//! The classifier the product calls: an encoder, its heads and the out-of-scope gate,
//! loaded from a model folder and turned into a [`Prediction`] per utterance.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use crate::compact::CompactEncoder;
use crate::corpus::sha256_file;
use crate::encoder::{load_tokenizer, EncoderKind, SentenceEncoder};
use crate::error::{ModelError, Result};
use crate::gate::{Gate, Prediction};
use crate::heads::Heads;
use crate::manifest::Manifest;
use crate::spelling::Speller;
use crate::transformer::TransformerEncoder;
use crate::MAX_UTTERANCE_BYTES;

pub struct Classifier {
    encoder: Box<dyn SentenceEncoder>,
    heads: Heads,
    manifest: Manifest,
    /// The folder the model was loaded from, for logs and errors.
    dir: PathBuf,
}

/// File names inside model folders.
pub const COMPACT_WEIGHTS: &str = "model.safetensors";
pub const TOKENIZER: &str = "tokenizer.json";
/// The compact model's known words for typo correction, one per line, most frequent
/// first ([`crate::spelling`]). Optional: a folder without it corrects nothing.
pub const SPELLING_WORDS: &str = "words.txt";
pub const TRANSFORMER_HEADS: &str = "heads.safetensors";

impl Classifier {
    /// Loads the compact model: `manifest.json`, `labels.json`, `tokenizer.json` and
    /// `model.safetensors` (the `embeddings` table plus both heads).
    pub fn load_compact(dir: &Path) -> Result<Classifier> {
        let manifest = Manifest::load_checked(dir)?;
        if manifest.encoder != EncoderKind::Compact {
            return Err(ModelError::invalid(
                dir,
                format!(
                    "holds {} heads, not a compact model: use --encoder {}",
                    manifest.encoder, manifest.encoder
                ),
            ));
        }
        let weights = dir.join(COMPACT_WEIGHTS);
        let tensors = candle_core::safetensors::load(&weights, &Device::Cpu)
            .map_err(|e| ModelError::invalid(dir, format!("{COMPACT_WEIGHTS} is unreadable or corrupt: {e}")))?;
        let embeddings = tensors
            .get("embeddings")
            .ok_or_else(|| ModelError::invalid(dir, format!("{COMPACT_WEIGHTS} has no `embeddings` tensor")))?
            .clone();
        let (_, dim) = embeddings
            .dims2()
            .map_err(|_| ModelError::invalid(dir, "`embeddings` is not a (vocab, dim) matrix"))?;
        if dim != manifest.dim {
            return Err(ModelError::invalid(
                dir,
                format!("embeddings are {dim} wide but the manifest says {}", manifest.dim),
            ));
        }
        let heads = Heads::from_map(&tensors, dim, dir)?;
        let tokenizer = load_tokenizer(&dir.join(TOKENIZER), None)?;
        let speller = if manifest.files.contains_key(SPELLING_WORDS) {
            let path = dir.join(SPELLING_WORDS);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ModelError::invalid(dir, format!("{SPELLING_WORDS} cannot be read: {e}")))?;
            let words: Vec<String> = text.lines().map(str::to_string).collect();
            Speller::new(&words, &tokenizer)
        } else {
            Speller::default()
        };
        let encoder = CompactEncoder::new(tokenizer, embeddings)
            .map_err(|e| ModelError::invalid(dir, e.to_string()))?
            .with_speller(speller);
        Ok(Classifier {
            encoder: Box::new(encoder),
            heads,
            manifest,
            dir: dir.to_path_buf(),
        })
    }

    /// Loads transformer heads from `heads_dir` and the encoder from `encoder_dir`
    /// (with the tuned layers in `heads_dir`, when the heads were trained on a
    /// fine-tuned encoder), refusing an encoder other than the one the heads were
    /// trained on.
    pub fn load_transformer(heads_dir: &Path, encoder_dir: &Path) -> Result<Classifier> {
        let manifest = Manifest::load_checked(heads_dir)?;
        if manifest.encoder != EncoderKind::Transformer {
            return Err(ModelError::invalid(
                heads_dir,
                format!("holds a {} model, not transformer heads", manifest.encoder),
            ));
        }
        let weights = encoder_dir.join("model.safetensors");
        if let Some(want) = &manifest.encoder_sha256 {
            let got = sha256_file(&weights)
                .map_err(|e| ModelError::invalid(encoder_dir, format!("{e}; fetch it with models/fetch-encoder.sh")))?;
            if &got != want {
                return Err(ModelError::invalid(
                    encoder_dir,
                    format!(
                        "model.safetensors has sha256 {got}, but the heads in {} were trained on {want}: \
                         retrain the heads for this encoder",
                        heads_dir.display()
                    ),
                ));
            }
        }
        // A fine-tuned encoder ships its tuned layers beside the heads; the
        // manifest, checked above, vouches for them.
        let encoder = if manifest.files.contains_key(crate::finetune::OVERLAY_FILE) {
            TransformerEncoder::load_with_overlay(encoder_dir, &heads_dir.join(crate::finetune::OVERLAY_FILE))?
        } else {
            TransformerEncoder::load(encoder_dir)?
        };
        let path = heads_dir.join(TRANSFORMER_HEADS);
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu).map_err(|e| {
            ModelError::invalid(heads_dir, format!("{TRANSFORMER_HEADS} is unreadable or corrupt: {e}"))
        })?;
        let heads = Heads::from_map(&tensors, encoder.dim(), heads_dir)?;
        Ok(Classifier {
            encoder: Box::new(encoder),
            heads,
            manifest,
            dir: heads_dir.to_path_buf(),
        })
    }

    /// Classifies one utterance.
    pub fn classify(&self, text: &str) -> Result<Prediction> {
        let (intent, sentiment) = self.probabilities(text)?;
        Ok(self.manifest.gate.decide(&intent, &sentiment))
    }

    /// The heads' raw probabilities for one utterance.
    pub fn probabilities(&self, text: &str) -> Result<(Vec<f32>, Vec<f32>)> {
        check_utterance(text)?;
        let embedding = self.encoder.embed(text)?;
        debug_assert_eq!(embedding.dtype(), DType::F32);
        self.heads.probabilities(&embedding)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn gate(&self) -> Gate {
        self.manifest.gate
    }

    pub fn set_gate(&mut self, gate: Gate) {
        self.manifest.gate = gate;
    }

    pub fn encoder(&self) -> &dyn SentenceEncoder {
        self.encoder.as_ref()
    }

    pub fn heads(&self) -> &Heads {
        &self.heads
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Refuses what is not an utterance: empty text, or longer than
/// [`MAX_UTTERANCE_BYTES`].
pub fn check_utterance(text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(ModelError::Input("the utterance is empty".into()));
    }
    if text.len() > MAX_UTTERANCE_BYTES {
        return Err(ModelError::Input(format!(
            "the utterance is {} bytes; the limit is {MAX_UTTERANCE_BYTES}",
            text.len()
        )));
    }
    Ok(())
}

/// The CPU features candle's kernels use in this build (NEON on aarch64; AVX and
/// F16C on x86_64), for `edge-agent validate` and the cross-build smoke runs.
pub fn cpu_features() -> String {
    format!(
        "neon={} avx={} f16c={}",
        candle_core::utils::with_neon(),
        candle_core::utils::with_avx(),
        candle_core::utils::with_f16c()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_oversize_utterances_are_refused() {
        assert!(check_utterance("  ").unwrap_err().to_string().contains("empty"));
        let long = "a".repeat(MAX_UTTERANCE_BYTES + 1);
        assert!(check_utterance(&long).unwrap_err().to_string().contains("limit"));
        assert!(check_utterance("how much gas").is_ok());
    }
}
