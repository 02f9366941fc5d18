//! edge-agent: the in-vehicle assistant daemon. This crate owns the command line,
//! where the shipped models are found, and the commands built on them (`classify`
//! so far).
//!
//! **Architecture Invariant:** edge-agent depends on no AWS SDK, no broker and no
//! demo code; everything it needs runs on the head unit, offline.

pub mod classify;
pub mod cli;
pub mod locate;

use anyhow::Context;

use cli::{Cli, Command};

/// Runs one command to completion.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Classify(args) => {
            let classifier = locate::load_classifier(&args.model).context("cannot load the intent model")?;
            let stdin = std::io::stdin().lock();
            let stdout = std::io::stdout().lock();
            let summary = classify::run(&classifier, stdin, stdout)?;
            tracing::info!(lines = summary.lines, errors = summary.errors, "classify finished");
            Ok(())
        }
    }
}
