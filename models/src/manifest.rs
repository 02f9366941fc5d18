//! The model folder's manifest (`manifest.json`) and label file (`labels.json`):
//! what a folder holds, how it was made, how well it did, and the hashes that let the
//! loader refuse a corrupt or mismatched folder.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::corpus::sha256_file;
use crate::encoder::EncoderKind;
use crate::error::{ModelError, Result};
use crate::gate::Gate;
use crate::labels::{Intent, Sentiment};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const LABELS_FILE: &str = "labels.json";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Bumped when the folder layout changes; the loader refuses versions it does
    /// not know.
    pub format_version: u32,
    pub encoder: EncoderKind,
    /// Width of the embeddings the heads take.
    pub dim: usize,
    pub gate: Gate,
    /// sha256 of every file in the folder that the loader reads.
    pub files: BTreeMap<String, String>,
    /// For transformer heads: sha256 of the encoder's `model.safetensors`, so heads
    /// are never paired with an encoder they were not trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_sha256: Option<String>,
    /// sha256 of the training corpus (see [`crate::corpus::Corpus::sha256`]).
    pub corpus_sha256: String,
    /// The public sets training read from `shared/data`: each file's hash and the
    /// rows it gave (never the rows themselves).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_data: Vec<crate::public::SourceUse>,
    /// sha256 over `corpus_sha256` and `public_data` (the data manifest): the
    /// loader refuses a folder whose data record was edited or mixed up after
    /// training. Absent only in manifests written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_sha256: Option<String>,
    /// How the static embeddings were distilled (compact only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distillation: Option<Distillation>,
    pub training: TrainingRecord,
    /// Named figures measured when the model was made, e.g. `held_out.in_scope_accuracy`.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Distillation {
    pub source: String,
    pub source_sha256: String,
    /// The steps, in order, as they were run.
    pub steps: Vec<String>,
    pub vocab_size: usize,
    pub source_dim: usize,
    pub pca_dim: usize,
    /// Share of the variance the kept components explain.
    pub explained_variance: f64,
    pub dtype: String,
    pub sif_coefficient: f64,
}

fn one() -> usize {
    1
}

fn one_f32() -> f32 {
    1.0
}

fn three() -> f32 {
    3.0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingRecord {
    pub seed: u64,
    pub hidden: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub dropout: f32,
    /// Extra weight on `emergency` lines in the intent loss, on top of class
    /// balancing (absent in older manifests, which all used 3).
    #[serde(default = "three")]
    pub emergency_weight: f32,
    /// Extra weight on `out_of_scope` lines (absent in older manifests: 1).
    #[serde(default = "one_f32")]
    pub out_of_scope_weight: f32,
    /// Augmented copies per line for heads trained on a fixed table: the frozen
    /// table's heads, or the extra heads on a tuned one. Otherwise unused (0).
    pub token_dropout_copies: usize,
    /// Probability of dropping each token of a training line.
    #[serde(default)]
    pub token_dropout: f32,
    /// Learning rate of the fine-tuned static table; `None` when it stayed frozen
    /// (and always for transformer heads).
    #[serde(default)]
    pub embedding_learning_rate: Option<f64>,
    /// Heads trained on the tuned table besides the joint pair, averaged with it in
    /// logit space (the stored head is their concatenation).
    #[serde(default)]
    pub extra_heads: usize,
    /// Joint runs averaged weight by weight into the shipped table and heads (a
    /// model soup); 1 (or absent, in older manifests) is a single run.
    #[serde(default = "one")]
    pub soup_runs: usize,
    pub held_out_percent: u64,
    /// Training lines from the corpus, before any augmented copies.
    pub train_examples: usize,
    /// Of those, lines of generated noise ([`crate::noise`]; 0 in older manifests).
    #[serde(default)]
    pub generated_noise: usize,
    /// Misspelt copies of training lines added to them (compact, fine-tuned only).
    #[serde(default)]
    pub misspelt_copies: usize,
    /// Nearest trained rows that moved each untrained row of the table (0: none).
    #[serde(default)]
    pub propagate_neighbours: usize,
    /// Corpus words the compact model's typo correction knows (0: no correction).
    #[serde(default)]
    pub spelling_words: usize,
    pub held_out_examples: usize,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Labels {
    pub intents: Vec<String>,
    pub sentiments: Vec<String>,
}

impl Labels {
    pub fn contract() -> Labels {
        Labels {
            intents: Intent::ALL.iter().map(|i| i.as_str().to_string()).collect(),
            sentiments: Sentiment::ALL.iter().map(|s| s.as_str().to_string()).collect(),
        }
    }
}

impl Manifest {
    /// Reads and checks a folder's manifest and labels: known format, labels equal
    /// to the contract, every listed file present with its recorded hash.
    pub fn load_checked(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ModelError::invalid(
                dir,
                format!("{MANIFEST_FILE} cannot be read ({e}); is this a model folder?"),
            )
        })?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| ModelError::invalid(dir, format!("{MANIFEST_FILE} is corrupt: {e}")))?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(ModelError::invalid(
                dir,
                format!(
                    "format version {} is not supported (this build reads version {FORMAT_VERSION})",
                    manifest.format_version
                ),
            ));
        }
        let labels_path = dir.join(LABELS_FILE);
        let labels_text = std::fs::read_to_string(&labels_path)
            .map_err(|e| ModelError::invalid(dir, format!("{LABELS_FILE} cannot be read: {e}")))?;
        let labels: Labels = serde_json::from_str(&labels_text)
            .map_err(|e| ModelError::invalid(dir, format!("{LABELS_FILE} is corrupt: {e}")))?;
        let contract = Labels::contract();
        if labels.intents != contract.intents {
            return Err(ModelError::invalid(
                dir,
                format!(
                    "has {} intent labels that differ from the contract's {} (first difference: {:?}): \
                     retrain or update the contract",
                    labels.intents.len(),
                    contract.intents.len(),
                    labels
                        .intents
                        .iter()
                        .zip(&contract.intents)
                        .find(|(a, b)| a != b)
                        .map(|(a, _)| a)
                        .or(labels.intents.get(contract.intents.len()))
                ),
            ));
        }
        if labels.sentiments != contract.sentiments {
            return Err(ModelError::invalid(
                dir,
                "sentiment labels differ from the contract: retrain",
            ));
        }
        if let Some(want) = &manifest.data_sha256 {
            let got = manifest.data_digest();
            if &got != want {
                return Err(ModelError::invalid(
                    dir,
                    format!(
                        "its data manifest (corpus_sha256 and public_data) does not match data_sha256: \
                         {got} against {want}; the record of what the model learnt from was changed"
                    ),
                ));
            }
        }
        for (name, want) in &manifest.files {
            let got = sha256_file(&dir.join(name))
                .map_err(|e| ModelError::invalid(dir, format!("{name} listed in the manifest cannot be read: {e}")))?;
            if &got != want {
                return Err(ModelError::invalid(
                    dir,
                    format!("{name} is corrupt: its sha256 is {got}, the manifest says {want}"),
                ));
            }
        }
        Ok(manifest)
    }

    /// The digest of the data manifest: the corpus hash and every public set used.
    pub fn data_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let record = serde_json::json!({"corpus_sha256": self.corpus_sha256, "public_data": self.public_data});
        crate::corpus::hex(&Sha256::digest(record.to_string().as_bytes()))
    }

    /// Writes manifest and labels, recording the hashes of `files` (already written)
    /// and of the data manifest.
    pub fn write(mut self, dir: &Path, files: &[&str]) -> Result<()> {
        self.data_sha256 = Some(self.data_digest());
        for name in files {
            self.files.insert(name.to_string(), sha256_file(&dir.join(name))?);
        }
        write_atomically(
            &dir.join(LABELS_FILE),
            &serde_json::to_vec_pretty(&Labels::contract()).expect("labels serialise"),
        )?;
        write_atomically(
            &dir.join(MANIFEST_FILE),
            &serde_json::to_vec_pretty(&self).expect("manifest serialises"),
        )
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so an interrupted
/// run never leaves a half-written file behind.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| ModelError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))
}
