//! Where the shipped model and knowledge pack are found, so that the built binary
//! works with no flags.
//!
//! Model order: `--model DIR`; then `$EDGE_AGENT_MODEL_DIR` (both used as given);
//! then the installed location (`/usr/share/edge-agent/models/<encoder>`, where the
//! packages put it); then the `models/<encoder>` folder of the checkout the binary
//! was built from (found by walking up from the executable, then from the crate's
//! source path). The knowledge pack is found the same way: the config's
//! `knowledge.pack`, then `/usr/share/edge-agent/knowledge/<pack>`, then the
//! checkout's `knowledge/packs/<pack>`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use models::{Classifier, EncoderKind};

use crate::cli::ModelArgs;

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
pub fn find_pack_dir(configured: &str) -> anyhow::Result<PathBuf> {
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
        None => bail!(
            "no knowledge pack found; looked in: {}. Set knowledge.pack in the config",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The model folder to load: the one named by `--model` or `$EDGE_AGENT_MODEL_DIR`
/// (used as given, so a wrong path fails loudly instead of falling back), else the
/// first candidate that holds a manifest.
pub fn find_model_dir(kind: EncoderKind, explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
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
        None => bail!(
            "no {} model found; looked in: {}. Pass --model DIR or set {MODEL_DIR_ENV}",
            folder_name(kind),
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Loads the classifier the arguments ask for.
pub fn load_classifier(args: &ModelArgs) -> anyhow::Result<Classifier> {
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
                    .context("the model folder has no parent to find the encoder beside")?,
            };
            Classifier::load_transformer(&dir, &encoder_dir)?
        }
    };
    Ok(classifier)
}
