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
