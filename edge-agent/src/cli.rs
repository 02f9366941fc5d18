//! The command line: subcommands and their flags. Interfaces others script against
//! (`classify`) keep their flags stable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
pub use daemon::locate::ModelArgs;

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

impl Cli {
    /// The log filter when `EDGE_LOG` sets none: warnings, except in the chat,
    /// where log lines would break into the conversation unless asked for.
    pub fn default_log_filter(&self) -> &'static str {
        match &self.command {
            Command::Chat(args) => match args.verbose {
                0 => "error",
                1 => "warn",
                2 => "info",
                _ => "debug",
            },
            _ => "warn",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Classify utterances: JSON lines `{"text": ...}` on stdin, one JSON line per
    /// input on stdout, in order. Logs go to stderr.
    Classify(ClassifyArgs),
    /// Talk to the assistant: one turn per line (interactive, or piped stdin), on
    /// the shipped model, the shipped knowledge pack and the demo vehicle by default.
    Chat(ChatArgs),
    /// Run the daemon: the local API on a Unix socket (and optional loopback TCP).
    Serve(ServeArgs),
    /// Ask a running daemon one question.
    Ask(AskArgs),
    /// The knowledge base: compile a pack.
    Kb {
        #[command(subcommand)]
        command: KbCommand,
    },
    /// Check the configuration, the model and the knowledge pack, and exit.
    Validate(ValidateArgs),
    /// Print the shell completion script for `shell` (`edge-agent completions
    /// bash > /etc/bash_completion.d/edge-agent`).
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// A TOML config file layered over the built-in defaults (default:
    /// /etc/edge-agent/config.toml when it exists).
    #[arg(long, env = "EDGE_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
}

/// What `chat` and `serve` both run on: the model, the config, the signals.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Follow this JSON-lines file of vehicle signal updates (overrides
    /// vehicle.signals; the demo vehicle is the starting state).
    #[arg(long)]
    pub signals: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// One JSON object per turn on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Continue this conversation (default: a new one).
    #[arg(long)]
    pub conversation: Option<String>,
    /// Show log lines between turns: -v warnings, -vv information, -vvv debug.
    /// Without it the chat shows errors only (`EDGE_LOG` still wins).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Args)]
pub struct AskArgs {
    /// What the driver said.
    pub text: String,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The daemon's socket (default: api.socket from the config).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    #[arg(long)]
    pub conversation: Option<String>,
    /// Print the daemon's JSON answer.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KbCommand {
    /// Compile a pack folder (pack.toml + articles/*.toml) into a SQLite base.
    Build(KbBuildArgs),
    /// Measure retrieval as the driver hears it: top-1 and wrong articles on the
    /// covered questions, honest abstentions on the uncovered ones, by half.
    Eval(KbEvalArgs),
    /// Apply a signed bundle from files at hand (a notice from `cloud-bridge
    /// knowledge sign` and its payload): every fleet check applies.
    Apply(KbApplyArgs),
    /// The knowledge version answering, the high-water mark, the previous version
    /// kept, the last failure, and the content hash.
    Status(KbStatusArgs),
    /// Restore the previous knowledge version kept by the last update. Restart the
    /// service afterwards to serve it.
    Rollback(KbStatusArgs),
}

#[derive(Debug, Args)]
pub struct KbApplyArgs {
    #[command(flatten)]
    pub status: KbStatusArgs,
    /// The notice (JSON, as `cloud-bridge knowledge sign` writes it).
    pub notice: PathBuf,
    /// The payload the manifest describes.
    #[arg(long)]
    pub payload: PathBuf,
}

#[derive(Debug, Args)]
pub struct KbStatusArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KbEvalArgs {
    #[command(flatten)]
    pub build: KbBuildArgs,
    /// `article_id<TAB>question` lines (default: the pack's eval/questions.tsv).
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// Car questions the pack does not answer, one per line (default: the pack's
    /// eval/uncovered.txt, when it has one).
    #[arg(long)]
    pub uncovered: Option<PathBuf>,
    /// A folder of public utterance files (`*.jsonl`, as in the shared data):
    /// every row whose `suggested_intent` is `out_of_scope` is asked too, and the
    /// share that got an article is reported; so is every route, traffic and
    /// place request, and the share the car kept instead of sending it on
    /// (never fitted on).
    #[arg(long, value_name = "DIR")]
    pub out_of_scope: Option<PathBuf>,
    /// Grid-search the search's fusion weights on the tuning half.
    #[arg(long)]
    pub tune: bool,
    /// Fit `knowledge.min_score` (when the car abstains) on the tuning halves.
    #[arg(long)]
    pub calibrate: bool,
    /// List every miss.
    #[arg(long)]
    pub misses: bool,
}

#[derive(Debug, Args)]
pub struct KbBuildArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The pack folder (default: the shipped pack).
    #[arg(long)]
    pub pack: Option<PathBuf>,
    /// The base to write (default: knowledge.db from the config, else
    /// <state dir>/knowledge.sqlite).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub model: ModelArgs,
}
