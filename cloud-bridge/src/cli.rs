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
    Build {
        #[arg(long)]
        pack: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// An earlier full payload: write a delta against it.
        #[arg(long, requires = "base_version")]
        delta_from: Option<PathBuf>,
        /// The version the earlier payload was published as.
        #[arg(long)]
        base_version: Option<u64>,
    },
    /// Describes a payload in a manifest, signs it, and writes the notice cars receive.
    Sign {
        #[arg(long)]
        bundle: PathBuf,
        /// The secret key file from `keygen`.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        channel: String,
        #[arg(long)]
        version: u64,
        /// Where cars download the payload (https://; a presigned URL in production).
        #[arg(long)]
        url: String,
        /// How long the manifest is valid; re-sign before a presigned URL expires.
        #[arg(long, default_value_t = 24)]
        valid_hours: i64,
        /// Vehicle models it is for (all when none).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Markets it is for (all when none).
        #[arg(long, value_delimiter = ',')]
        markets: Vec<String>,
        #[arg(long, env = "CLOUD_BRIDGE_PUBLISHER")]
        publisher: String,
        /// The notice file to write (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Publishes a signed notice, retained on its channel's topic. Without
    /// --notice, re-publishes the channel's newest release with a new stage
    /// (widen a rollout, or resume a paused one).
    Publish {
        #[arg(long, required_unless_present = "channel")]
        notice: Option<PathBuf>,
        #[arg(long, conflicts_with = "notice")]
        channel: Option<String>,
        #[command(flatten)]
        stage: StageArgs,
        #[command(flatten)]
        actor: ActorArgs,
    },
    /// Stops a channel's rollout: cars that have not applied it do not start.
    Pause {
        #[arg(long)]
        channel: String,
        #[command(flatten)]
        actor: ActorArgs,
    },
    /// Publishes the content of an earlier full release as a new, higher version.
    Rollback {
        #[arg(long)]
        channel: String,
        /// The version whose content goes back out.
        #[arg(long)]
        to: u64,
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value_t = 24)]
        valid_hours: i64,
        /// A fresh payload URL (a presigned URL expires); default: the old one.
        #[arg(long)]
        url: Option<String>,
        #[command(flatten)]
        actor: ActorArgs,
    },
    /// Each car's knowledge version, when it applied it and its last failure, the
    /// rollout's stage, and the audit log's newest entries.
    Status {
        #[arg(long)]
        channel: String,
        /// With delivery.mode = "iot_data": first read these cars' named shadows
        /// (`knowledge`) with GetThingShadow.
        #[arg(long, value_delimiter = ',')]
        shadows: Vec<String>,
        #[arg(long)]
        json: bool,
    },
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
