//! `jobfleet bench`: jobfleet end to end next to the bare broker client on the same
//! broker. The measurement lives in the `jobfleet-bench` crate (which links lapin and
//! rdkafka for the baselines); this command only runs it.

use jobfleet_common::Config;

pub use jobfleet_bench::BenchArgs;

use crate::error::Result;

/// Runs both measurements and prints the report line.
pub async fn run(args: BenchArgs, config: Config) -> Result<()> {
    Ok(jobfleet_bench::run(args, config).await?)
}
