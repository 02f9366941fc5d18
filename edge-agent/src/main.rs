//! The `edge-agent` binary: parses the command line, sets up logging to stderr, and
//! hands over to the library. Nothing else lives here.

use std::process::ExitCode;

use clap::Parser;
use edge_agent::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("EDGE_LOG").unwrap_or_else(|_| "warn".into()))
        .init();
    match edge_agent::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("edge-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}
