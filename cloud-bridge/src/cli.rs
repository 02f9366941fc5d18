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
    /// Signed knowledge updates for the fleet.
    Knowledge {
        #[command(subcommand)]
        command: KnowledgeCommand,
    },
    /// Checks the config, the store and the knowledge pack, then exits.
    Validate,
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
    /// Compiles a knowledge pack into a bundle (the shipped pack by default).
    Build {
        #[arg(long)]
        pack: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Describes a bundle in a manifest, signs it, and writes the notice cars receive.
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
        /// Where cars download the bundle (https://; a presigned URL in production).
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
        /// A delta against this version instead of a full bundle.
        #[arg(long)]
        delta_base: Option<u64>,
        /// The notice file to write (JSON).
        #[arg(long)]
        out: PathBuf,
    },
}
