//! `testfleet`: the worker and scheduler processes of the crash tests.
//!
//! `testfleet worker CONFIG` runs a worker exactly as `jobfleet worker` does, through
//! the same library function, with the test kinds (`jobfleet_tests::processes::kinds`)
//! registered beside the built-in and data ones; `testfleet scheduler CONFIG` runs
//! `jobfleet scheduler`'s function. The configuration file is overridden by `JOBFLEET_*`
//! variables as usual; the test kinds record to the Redis named by
//! `TESTFLEET_RECORDS_URL`, or the configured store without it. Both run until SIGTERM or Ctrl-C; the tests mostly `kill -9` them.

use std::path::PathBuf;
use std::process::ExitCode;

use jobfleet::commands::{scheduler, worker};
use jobfleet::logging::{self, Profile};
use jobfleet::{shutdown, Error};
use jobfleet_common::Config;
use jobfleet_tests::processes::kinds;

const USAGE: &str = "usage: testfleet worker|scheduler CONFIG_FILE";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(role), Some(file)) = (args.next(), args.next()) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match run(&role, PathBuf::from(file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(role: &str, file: PathBuf) -> Result<(), Error> {
    if role != "worker" && role != "scheduler" {
        return Err(Error::Usage(USAGE.into()));
    }
    let config = Config::load_from_env(Some(&file), &[])?;
    let rust_log = std::env::var("RUST_LOG").ok();
    let _spans = logging::init(
        &logging::choose(&config, Profile::Service, None, false, rust_log),
        Some(&config.log),
    )?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Error::Task(format!("cannot start the async runtime: {e}")))?;
    let out = runtime.block_on(shutdown::run_until_signal(|token| async move {
        if role == "scheduler" {
            return scheduler::run(config, token).await;
        }
        // The test's own Redis, even when this worker's store is behind a fault proxy.
        let records = std::env::var(kinds::RECORDS_URL_VAR)
            .unwrap_or_else(|_| config.store.url().to_string());
        let test_kinds = kinds::registry(&records, &config.namespace)
            .await
            .map_err(|e| Error::Usage(format!("the test kinds need Redis: {e}")))?;
        // The kinds `jobfleet worker` has (the data kinds among them), and the test's.
        let mut registry = jobfleet::kinds::registry(&config)?;
        registry.merge(test_kinds);
        worker::run_with(config, registry, token).await
    }));
    runtime.shutdown_background();
    out
}
