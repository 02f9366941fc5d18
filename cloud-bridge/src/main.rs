//! The `cloud-bridge` binary: parses the command line, sets up logging, and runs
//! the command ([`cmd`]). A failure is printed as its chain of causes, one line,
//! never a backtrace.

mod cmd;

use std::process::ExitCode;

use clap::Parser;
use cloud_bridge::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    daemon::logging::init("CLOUD_BRIDGE", "info");
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cloud-bridge: {err:#}");
            ExitCode::FAILURE
        }
    }
}
