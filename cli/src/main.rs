//! The `jobfleet` binary: parses the command line and runs the command through the
//! library ([`jobfleet::app`]), where all of its code is compiled.

use std::process::ExitCode;

use clap::Parser;
use jobfleet::app::{self, Cli};

fn main() -> ExitCode {
    match app::run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
