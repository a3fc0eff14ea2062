//! `jobfleet bench`: jobfleet end to end next to the bare broker client on the same
//! broker. The measurement lives in the `jobfleet-bench` crate (which links lapin and
//! rdkafka for the baselines); this command only runs it.

use jobfleet_common::Config;

pub use jobfleet_bench::BenchArgs;

use crate::error::Result;

/// Runs both measurements and prints the report line.
pub async fn run(args: BenchArgs, config: Config) -> Result<()> {
    warn_if_unoptimised("bench");
    Ok(jobfleet_bench::run(args, config).await?)
}

/// Says on stderr that figures from this binary mean little when it is the quick start's
/// unoptimised build (`cargo run -- dev` builds the `dev` profile); the JSON line is
/// printed all the same.
pub(crate) fn warn_if_unoptimised(command: &str) {
    if cfg!(debug_assertions) {
        eprintln!(
            "{command}: warning: this jobfleet is an unoptimised (debug) build; measure with \
             `cargo build --release` (target/release/jobfleet)"
        );
    }
}
