//! The command line: subcommands and their flags. Interfaces others script against
//! (`classify`) keep their flags stable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use models::EncoderKind;

#[derive(Debug, Parser)]
#[command(
    name = "edge-agent",
    version,
    about = "In-vehicle assistant: local understanding and answers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Classify utterances: JSON lines `{"text": ...}` on stdin, one JSON line per
    /// input on stdout, in order. Logs go to stderr.
    Classify(ClassifyArgs),
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub model: ModelArgs,
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
