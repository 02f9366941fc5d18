//! The classifier the product calls: an encoder, its heads and the out-of-scope gate,
//! loaded from a model folder and turned into a [`Prediction`] per utterance.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::compact::CompactEncoder;
use crate::corpus::sha256_file;
use crate::encoder::{load_tokenizer, SentenceEncoder};
use crate::error::{ModelError, Result};
use crate::heads::Heads;
use crate::labels::{Intent, Route, Sentiment};
use crate::manifest::Manifest;
use crate::spelling::Speller;
use crate::transformer::TransformerEncoder;
use crate::MAX_UTTERANCE_BYTES;

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

/// The out-of-scope gate of the contract.
///
/// The best in-scope label is reported as the intent only when its probability is
/// at least `threshold` and above that of the `out_of_scope` class; otherwise the
/// intent is `out_of_scope`. Emergencies come first: whenever `emergency` has at least
/// `emergency_threshold` (lower than `threshold`), the intent is `emergency`, even if
/// another label scored higher: a false alarm costs a question, a missed emergency
/// costs far more.
///
/// The gate also carries the sentiment head's prior correction, `sentiment_bias`
/// (log-odds added per class, in [`Sentiment::ALL`] order, tuned on the held-out
/// families like the threshold): the head learns the corpus's mix of feelings, and
/// the correction moves its boundaries to where the classes are best told apart.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub threshold: f32,
    pub emergency_threshold: f32,
    #[serde(default)]
    pub sentiment_bias: [f32; 3],
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            threshold: 0.5,
            emergency_threshold: 0.25,
            sentiment_bias: [0.0; 3],
        }
    }
}

/// What the product learns about one utterance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prediction {
    /// The reported label: the best in-scope label, or `out_of_scope` below the gate.
    pub intent: Intent,
    /// Confidence in `intent`. For `out_of_scope` it is the larger of the
    /// `out_of_scope` probability and `1 - top_confidence`.
    pub intent_confidence: f32,
    /// The best in-scope label, reported even when gated, so the dialogue can ask
    /// the driver to rephrase.
    pub top_intent: Intent,
    pub top_confidence: f32,
    pub sentiment: Sentiment,
    /// `p(positive) - p(negative)`, in [-1, 1], from the same corrected
    /// probabilities that pick `sentiment` (see [`Gate::sentiment_bias`]), so a
    /// negative label always comes with a score at or below zero and a positive
    /// label with one at or above zero.
    pub sentiment_score: f32,
    pub route: Route,
}

impl Gate {
    /// The sentiment head's probabilities with `sentiment_bias` added to their
    /// logarithms, renormalised.
    fn corrected_sentiment(&self, probs: &[f32]) -> Vec<f32> {
        if self.sentiment_bias == [0.0; 3] || probs.len() != 3 {
            return probs.to_vec();
        }
        let logits: Vec<f32> = probs
            .iter()
            .zip(self.sentiment_bias)
            .map(|(p, b)| p.max(1e-12).ln() + b)
            .collect();
        let max = logits.iter().copied().fold(f32::MIN, f32::max);
        let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        exp.iter().map(|e| e / sum).collect()
    }

    /// Applies the gate to the heads' probabilities (in label order).
    pub fn decide(&self, intent_probs: &[f32], sentiment_probs: &[f32]) -> Prediction {
        let oos = Intent::OutOfScope.index();
        let (top_index, top_confidence) = intent_probs
            .iter()
            .copied()
            .enumerate()
            .filter(|&(i, _)| i != oos)
            .fold((0, f32::MIN), |best, (i, p)| if p > best.1 { (i, p) } else { best });
        let top_intent = Intent::from_index(top_index).expect("head output within the label set");
        let p_oos = intent_probs.get(oos).copied().unwrap_or(0.0);

        let p_emergency = intent_probs.get(Intent::Emergency.index()).copied().unwrap_or(0.0);
        let passes = top_confidence >= self.threshold && top_confidence > p_oos;
        let (intent, intent_confidence) = if p_emergency >= self.emergency_threshold {
            (Intent::Emergency, p_emergency)
        } else if passes {
            (top_intent, top_confidence)
        } else {
            (Intent::OutOfScope, p_oos.max(1.0 - top_confidence))
        };

        let sentiment_probs = self.corrected_sentiment(sentiment_probs);
        let (sentiment_index, _) = sentiment_probs
            .iter()
            .copied()
            .enumerate()
            .fold((1, f32::MIN), |best, (i, p)| if p > best.1 { (i, p) } else { best });
        let p = |s: Sentiment| sentiment_probs.get(s.index()).copied().unwrap_or(0.0);
        Prediction {
            intent,
            intent_confidence,
            top_intent,
            top_confidence,
            sentiment: Sentiment::ALL[sentiment_index],
            sentiment_score: (p(Sentiment::Positive) - p(Sentiment::Negative)).clamp(-1.0, 1.0),
            route: intent.route(),
        }
    }
}

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

    fn probs_with(pairs: &[(Intent, f32)]) -> Vec<f32> {
        let rest = 1.0 - pairs.iter().map(|p| p.1).sum::<f32>();
        let mut v = vec![rest / (Intent::COUNT - pairs.len()) as f32; Intent::COUNT];
        for &(i, p) in pairs {
            v[i.index()] = p;
        }
        v
    }

    const NEUTRAL: [f32; 3] = [0.1, 0.8, 0.1];

    #[test]
    fn the_sentiment_correction_moves_the_label_and_the_score_together() {
        let probs = probs_with(&[(Intent::FuelLevel, 0.9)]);
        let plain = Gate::default().decide(&probs, &[0.35, 0.6, 0.05]);
        assert_eq!(plain.sentiment, Sentiment::Neutral);
        let gate = Gate {
            sentiment_bias: [0.7, 0.0, 0.0],
            ..Default::default()
        };
        let corrected = gate.decide(&probs, &[0.35, 0.6, 0.05]);
        assert_eq!(corrected.sentiment, Sentiment::Negative);
        assert!(corrected.sentiment_score < plain.sentiment_score && corrected.sentiment_score < 0.0);
        // The intent side is untouched.
        assert_eq!(
            (corrected.intent, corrected.intent_confidence),
            (plain.intent, plain.intent_confidence)
        );
    }

    #[test]
    fn confident_in_scope_label_passes_the_gate() {
        let gate = Gate {
            threshold: 0.5,
            emergency_threshold: 0.25,
            ..Default::default()
        };
        let p = gate.decide(&probs_with(&[(Intent::FuelLevel, 0.9)]), &NEUTRAL);
        assert_eq!(
            (p.intent, p.top_intent, p.route),
            (Intent::FuelLevel, Intent::FuelLevel, Route::Local)
        );
        assert!((p.intent_confidence - 0.9).abs() < 1e-6);
    }

    #[test]
    fn below_the_gate_reports_out_of_scope_but_keeps_the_top_label() {
        let gate = Gate {
            threshold: 0.5,
            emergency_threshold: 0.25,
            ..Default::default()
        };
        let p = gate.decide(
            &probs_with(&[(Intent::Traffic, 0.4), (Intent::Directions, 0.3)]),
            &NEUTRAL,
        );
        assert_eq!(p.intent, Intent::OutOfScope);
        assert_eq!(p.top_intent, Intent::Traffic);
        assert!((p.top_confidence - 0.4).abs() < 1e-6);
        assert!((p.intent_confidence - 0.6).abs() < 1e-6);
        assert_eq!(p.route, Route::Cloud);
    }

    #[test]
    fn the_out_of_scope_class_wins_over_a_weaker_in_scope_label() {
        let gate = Gate {
            threshold: 0.3,
            emergency_threshold: 0.25,
            ..Default::default()
        };
        let p = gate.decide(
            &probs_with(&[(Intent::OutOfScope, 0.6), (Intent::Greeting, 0.35)]),
            &NEUTRAL,
        );
        assert_eq!(p.intent, Intent::OutOfScope);
        assert_eq!(p.top_intent, Intent::Greeting);
        assert!((p.intent_confidence - 0.65).abs() < 1e-6);
    }

    #[test]
    fn a_confident_emergency_is_never_gated() {
        let gate = Gate {
            threshold: 0.6,
            emergency_threshold: 0.25,
            ..Default::default()
        };
        let p = gate.decide(
            &probs_with(&[(Intent::Emergency, 0.3), (Intent::OutOfScope, 0.29)]),
            &NEUTRAL,
        );
        assert_eq!((p.intent, p.route), (Intent::Emergency, Route::Urgent));
        // Emergency outranks a more probable label once it reaches its floor.
        let p = gate.decide(
            &probs_with(&[(Intent::RoadsideAssistance, 0.6), (Intent::Emergency, 0.3)]),
            &NEUTRAL,
        );
        assert_eq!(
            (p.intent, p.top_intent),
            (Intent::Emergency, Intent::RoadsideAssistance)
        );
        assert!((p.intent_confidence - 0.3).abs() < 1e-6);
        // An emergency below its own floor is still gated like anything else.
        let p = gate.decide(
            &probs_with(&[(Intent::Emergency, 0.2), (Intent::OutOfScope, 0.5)]),
            &NEUTRAL,
        );
        assert_eq!(p.intent, Intent::OutOfScope);
        assert_eq!(p.top_intent, Intent::Emergency);
    }

    #[test]
    fn sentiment_label_is_the_argmax_and_score_is_pos_minus_neg() {
        let gate = Gate::default();
        let p = gate.decide(&probs_with(&[(Intent::Complaint, 0.9)]), &[0.7, 0.2, 0.1]);
        assert_eq!(p.sentiment, Sentiment::Negative);
        assert!((p.sentiment_score + 0.6).abs() < 1e-6);
        let p = gate.decide(&probs_with(&[(Intent::Goodbye, 0.9)]), &[0.05, 0.15, 0.8]);
        assert_eq!(p.sentiment, Sentiment::Positive);
        assert!(p.sentiment_score > 0.7);
    }

    #[test]
    fn empty_and_oversize_utterances_are_refused() {
        assert!(check_utterance("  ").unwrap_err().to_string().contains("empty"));
        let long = "a".repeat(MAX_UTTERANCE_BYTES + 1);
        assert!(check_utterance(&long).unwrap_err().to_string().contains("limit"));
        assert!(check_utterance("how much gas").is_ok());
    }
}
