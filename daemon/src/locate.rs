//! Where the shipped model and knowledge pack are found, so that the built binary
//! works with no flags; loading the model; and the model as the knowledge base's
//! embedder (cars and the cloud embed articles with the same one).
//!
//! Model order: `--model DIR`; then `$EDGE_AGENT_MODEL_DIR` (both used as given);
//! then the installed location (`/usr/share/edge-agent/models/<encoder>`, where the
//! packages put it); then the `models/<encoder>` folder of the checkout the binary
//! was built from (found by walking up from the executable, then from the crate's
//! source path). The knowledge pack is found the same way: the config's
//! `knowledge.pack`, then `/usr/share/edge-agent/knowledge/<pack>`, then the
//! checkout's `knowledge/packs/<pack>`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use knowledge::Embedder;
use models::{Classifier, EncoderKind, Intent};

/// What cannot be found or loaded.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("no knowledge pack found; looked in: {looked}. Set knowledge.pack in the config")]
    NoPack { looked: String },
    #[error("no {kind} model found; looked in: {looked}. Pass --model DIR or set {MODEL_DIR_ENV}")]
    NoModel { kind: &'static str, looked: String },
    #[error("the model folder {} has no parent to find the encoder beside", .0.display())]
    NoEncoderParent(PathBuf),
    #[error(transparent)]
    Model(#[from] models::ModelError),
}

/// Which model to run and where it is.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// The encoder: `compact` (shipped, default) or `transformer`.
    #[arg(long, default_value = "compact", env = "EDGE_AGENT_ENCODER")]
    pub encoder: EncoderKind,
    /// The model folder. Default: $EDGE_AGENT_MODEL_DIR, then the installed
    /// location, then this checkout's `models/` folder.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// For `--encoder transformer`: the pretrained encoder folder
    /// (config.json, tokenizer.json, model.safetensors).
    #[arg(long, env = "EDGE_ENCODER_DIR")]
    pub encoder_dir: Option<PathBuf>,
}

impl Default for ModelArgs {
    /// The shipped compact model, found as with no flags.
    fn default() -> Self {
        ModelArgs {
            encoder: EncoderKind::Compact,
            model: None,
            encoder_dir: None,
        }
    }
}

/// The packaged install's model root.
pub const INSTALLED_MODELS: &str = "/usr/share/edge-agent/models";
/// The environment variable naming a model folder.
pub const MODEL_DIR_ENV: &str = "EDGE_AGENT_MODEL_DIR";
/// Where `models/fetch-encoder.sh` puts the pretrained encoder, under a models root.
pub const ENCODER_SUBDIR: &str = "encoder/all-MiniLM-L6-v2";

fn folder_name(kind: EncoderKind) -> &'static str {
    match kind {
        EncoderKind::Compact => "compact",
        EncoderKind::Transformer => "transformer",
    }
}

/// The packaged install's knowledge pack root.
pub const INSTALLED_KNOWLEDGE: &str = "/usr/share/edge-agent/knowledge";
/// The pack shipped with the product.
pub const SHIPPED_PACK: &str = "kestrel-voyager";

/// Every place looked at, in order, for the model folder of `kind` when neither
/// `--model` nor `$EDGE_AGENT_MODEL_DIR` names one.
pub fn candidates(kind: EncoderKind) -> Vec<PathBuf> {
    shipped_candidates(
        Path::new(INSTALLED_MODELS),
        Path::new("models").join(folder_name(kind)),
        folder_name(kind),
    )
}

/// `installed/name`, then `in_checkout` under each ancestor of the executable, then
/// under the checkout this crate was built from.
fn shipped_candidates(installed: &Path, in_checkout: PathBuf, name: &str) -> Vec<PathBuf> {
    let mut out = vec![installed.join(name)];
    if let Ok(exe) = std::env::current_exe() {
        out.extend(exe.ancestors().skip(1).map(|dir| dir.join(&in_checkout)));
    }
    out.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(&in_checkout));
    out
}

/// The knowledge pack source folder: the configured one as given, else the first
/// shipped location that holds a `pack.toml`.
pub fn find_pack_dir(configured: &str) -> Result<PathBuf, LocateError> {
    if !configured.is_empty() {
        return Ok(PathBuf::from(configured));
    }
    let candidates = shipped_candidates(
        Path::new(INSTALLED_KNOWLEDGE),
        Path::new("knowledge/packs").join(SHIPPED_PACK),
        SHIPPED_PACK,
    );
    match candidates.iter().find(|dir| dir.join("pack.toml").is_file()) {
        Some(dir) => Ok(dir.canonicalize().unwrap_or_else(|_| dir.clone())),
        None => Err(LocateError::NoPack {
            looked: listed(&candidates),
        }),
    }
}

/// The model folder to load: the one named by `--model` or `$EDGE_AGENT_MODEL_DIR`
/// (used as given, so a wrong path fails loudly instead of falling back), else the
/// first candidate that holds a manifest.
pub fn find_model_dir(kind: EncoderKind, explicit: Option<&Path>) -> Result<PathBuf, LocateError> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os(MODEL_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let candidates = candidates(kind);
    match candidates
        .iter()
        .find(|dir| dir.join(models::manifest::MANIFEST_FILE).is_file())
    {
        Some(dir) => Ok(dir.canonicalize().unwrap_or_else(|_| dir.clone())),
        None => Err(LocateError::NoModel {
            kind: folder_name(kind),
            looked: listed(&candidates),
        }),
    }
}

fn listed(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Loads the classifier the arguments ask for.
pub fn load_classifier(args: &ModelArgs) -> Result<Classifier, LocateError> {
    let dir = find_model_dir(args.encoder, args.model.as_deref())?;
    tracing::info!(model = %dir.display(), encoder = %args.encoder, "loading model");
    let classifier = match args.encoder {
        EncoderKind::Compact => Classifier::load_compact(&dir)?,
        EncoderKind::Transformer => {
            let encoder_dir = match &args.encoder_dir {
                Some(d) => d.clone(),
                None => dir
                    .parent()
                    .map(|root| root.join(ENCODER_SUBDIR))
                    .ok_or_else(|| LocateError::NoEncoderParent(dir.clone()))?,
            };
            Classifier::load_transformer(&dir, &encoder_dir)?
        }
    };
    Ok(classifier)
}

/// The intent model's sentence encoder as the knowledge base's embedder. Its id is
/// the hash of the encoder weights, so a new model re-embeds the articles.
pub struct ModelEmbedder {
    classifier: Arc<Classifier>,
    id: String,
}

impl ModelEmbedder {
    pub fn new(classifier: Arc<Classifier>) -> ModelEmbedder {
        let manifest = classifier.manifest();
        let weights = manifest
            .encoder_sha256
            .clone()
            .or_else(|| manifest.files.get(models::classifier::COMPACT_WEIGHTS).cloned())
            .unwrap_or_else(|| manifest.corpus_sha256.clone());
        let id = format!("{}:{}", manifest.encoder, &weights[..weights.len().min(16)]);
        ModelEmbedder { classifier, id }
    }
}

impl Embedder for ModelEmbedder {
    fn model_id(&self) -> String {
        self.id.clone()
    }

    fn embed(&self, text: &str) -> Result<Vec<f32>, String> {
        self.classifier
            .encoder()
            .embed(text)
            .and_then(|t| Ok(t.to_vec1::<f32>()?))
            .map_err(|e| e.to_string())
    }
}

/// The contract's labels, which a pack's articles may name.
pub fn intent_labels() -> Vec<&'static str> {
    Intent::ALL.iter().map(|i| i.as_str()).collect()
}
