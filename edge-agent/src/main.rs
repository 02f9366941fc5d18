//! The `edge-agent` binary: parses the command line, sets up logging (the journal
//! under systemd, else stderr), and hands over to the library. Nothing else lives
//! here.

use std::process::ExitCode;

use clap::Parser;
use edge_agent::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    daemon::logging::init("EDGE", cli.default_log_filter());
    match edge_agent::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("edge-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}
