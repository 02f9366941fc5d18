//! The `edge-agent` binary: parses the command line, sets up logging (the journal
//! under systemd, else stderr), and runs the command ([`cmd`]). Nothing else lives
//! here.

mod cmd;

use std::process::ExitCode;

use clap::Parser;
use edge_agent::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    daemon::logging::init("EDGE", cli.default_log_filter());
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("edge-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}
