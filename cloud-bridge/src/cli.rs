//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cloud-bridge", version, about = "The cloud supervisor for edge-agent cars")]
pub struct Cli {
    /// A config file (default: /etc/cloud-bridge/config.toml when present).
    #[arg(long, global = true, env = "CLOUD_BRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the supervisor: reads escalations from the broker and answers them.
    Serve,
    /// Works the human-agent queue.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Per-day volumes, local/escalated ratio, sentiment, intents, handoffs, cost.
    Report {
        #[arg(long, default_value_t = 7)]
        days: u32,
        #[arg(long)]
        json: bool,
    },
    /// Stores vehicle and owner profiles from a JSON file (an array of profiles).
    Profiles { file: PathBuf },
    /// Stores recall campaigns from a JSON file (an array of
    /// `{campaign, model, years: [from, to], summary, remedy}`); a campaign
    /// already stored is replaced. The supervisor knows no recall but these.
    Recalls { file: PathBuf },
    /// Signed knowledge updates for the fleet.
    Knowledge {
        #[command(subcommand)]
        command: KnowledgeCommand,
    },
    /// Checks the config, the store and the knowledge pack, then exits.
    Validate,
    /// Prints the shell completion script for `shell` (`cloud-bridge completions
    /// bash > /etc/bash_completion.d/cloud-bridge`).
    Completions { shell: clap_complete::Shell },
    /// A demo on embedded defaults: an in-process broker, the local provider and a
    /// car, showing escalation round trips.
    #[cfg(feature = "demo")]
    Demo,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Open handoffs, queued first.
    List {
        #[arg(long)]
        all: bool,
    },
    /// Takes a queued handoff.
    Take {
        handoff: String,
        #[arg(long, env = "CLOUD_BRIDGE_AGENT")]
        agent: String,
    },
    /// Sends the driver a reply.
    Reply {
        handoff: String,
        text: String,
        #[arg(long, env = "CLOUD_BRIDGE_AGENT")]
        agent: String,
    },
    /// Closes a handoff.
    Close { handoff: String },
}

#[derive(Debug, Subcommand)]
pub enum KnowledgeCommand {
    /// Makes a signing key: DIR/<id>.key (secret, 0600) and DIR/<id>.pub.
    Keygen {
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Makes a bundle payload from a knowledge pack (the shipped pack by default):
    /// the whole pack, or with --delta-from only the changes.
    Build(BuildArgs),
    /// Describes a payload in a manifest, signs it, and writes the notice cars receive.
    Sign(SignArgs),
    /// Publishes a signed notice, retained on its channel's topic. Without
    /// --notice, re-publishes the channel's newest release with a new stage
    /// (widen a rollout, or resume a paused one).
    Publish(PublishArgs),
    /// Stops a channel's rollout: cars that have not applied it do not start.
    Pause {
        #[arg(long)]
        channel: String,
        #[command(flatten)]
        actor: ActorArgs,
    },
    /// Publishes the content of an earlier full release as a new, higher version.
    Rollback(RollbackArgs),
    /// Each car's knowledge version, when it applied it and its last failure, the
    /// rollout's stage, and the audit log's newest entries.
    Status(FleetStatusArgs),
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    #[arg(long)]
    pub pack: Option<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
    /// An earlier full payload: write a delta against it.
    #[arg(long, requires = "base_version")]
    pub delta_from: Option<PathBuf>,
    /// The version the earlier payload was published as.
    #[arg(long)]
    pub base_version: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    #[arg(long)]
    pub bundle: PathBuf,
    /// The secret key file from `keygen`.
    #[arg(long)]
    pub key: PathBuf,
    #[arg(long)]
    pub channel: String,
    #[arg(long)]
    pub version: u64,
    /// Where cars download the payload (https://; a presigned URL in production).
    #[arg(long)]
    pub url: String,
    /// How long the manifest is valid; re-sign before a presigned URL expires.
    #[arg(long, default_value_t = 24)]
    pub valid_hours: i64,
    /// Vehicle models it is for (all when none).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Markets it is for (all when none).
    #[arg(long, value_delimiter = ',')]
    pub markets: Vec<String>,
    #[arg(long, env = "CLOUD_BRIDGE_PUBLISHER")]
    pub publisher: String,
    /// The notice file to write (JSON).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    #[arg(long, required_unless_present = "channel")]
    pub notice: Option<PathBuf>,
    #[arg(long, conflicts_with = "notice")]
    pub channel: Option<String>,
    #[command(flatten)]
    pub stage: StageArgs,
    #[command(flatten)]
    pub actor: ActorArgs,
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    #[arg(long)]
    pub channel: String,
    /// The version whose content goes back out.
    #[arg(long)]
    pub to: u64,
    #[arg(long)]
    pub key: PathBuf,
    #[arg(long, default_value_t = 24)]
    pub valid_hours: i64,
    /// A fresh payload URL (a presigned URL expires); default: the old one.
    #[arg(long)]
    pub url: Option<String>,
    #[command(flatten)]
    pub actor: ActorArgs,
}

#[derive(Debug, clap::Args)]
pub struct FleetStatusArgs {
    #[arg(long)]
    pub channel: String,
    /// With delivery.mode = "iot_data": first read these cars' named shadows
    /// (`knowledge`) with GetThingShadow.
    #[arg(long, value_delimiter = ',')]
    pub shadows: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct StageArgs {
    /// Share of the fleet that takes it now (0 to 100).
    #[arg(long, default_value_t = 100)]
    pub percent: u8,
    /// Cars that take it now whatever the share.
    #[arg(long, value_delimiter = ',')]
    pub cars: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ActorArgs {
    /// Who is acting, for the audit log.
    #[arg(long, env = "CLOUD_BRIDGE_PUBLISHER")]
    pub actor: String,
}
