//! What waiting delayed jobs cost the store (`--mode memory`): `--jobs` jobs of
//! `--payload-bytes` due in an hour are enqueued and taken into the delayed set by an
//! in-process scheduler; Redis's `used_memory` before and after gives the bytes per job,
//! and the bytes beyond the payload. Then the run's keys are deleted. The same-run
//! reference is the payload itself: what a job must cost at least.
//!
//! Redis only: the embedded store's memory is the process's own.

use std::time::Duration;

use bytes::Bytes;
use jobfleet_common::{Config, Job, StoreAddr};
use serde::Serialize;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::fleet::{enqueue_in_batches, Rig, KIND, QUEUE};
use crate::report::round;
use crate::Plan;

/// What `--jobs` waiting delayed jobs cost.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Memory {
    pub jobs: usize,
    pub payload_bytes: usize,
    /// Redis `used_memory` before, bytes.
    pub used_before: u64,
    /// Redis `used_memory` with every job in the delayed set, bytes.
    pub used_after: u64,
    /// (after − before) / jobs.
    pub bytes_per_job: f64,
    /// `bytes_per_job` − the payload.
    pub beyond_payload: f64,
    /// The bench process's resident set (producer, worker and scheduler), KiB, after.
    pub process_rss_kib: u64,
}

/// `used_memory` from `INFO memory`.
async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> Result<u64> {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .map_err(|e| Error::Task(format!("INFO memory: {e}")))?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::Task("INFO memory has no used_memory".into()))
}

/// This process's resident set, KiB (0 where `/proc` does not tell).
pub(crate) fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Enqueues the delayed jobs and measures; see the module docs.
pub(crate) async fn measure(config: &Config, plan: &Plan) -> Result<Memory> {
    let StoreAddr::Redis(url) = &config.store else {
        return Err(Error::Usage(
            "--mode memory measures Redis: give --store redis://…".into(),
        ));
    };
    let client = redis::Client::open(url.as_str())
        .map_err(|e| Error::Task(format!("the store URL: {e}")))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| Error::Task(format!("cannot reach Redis: {e}")))?;
    let rig = Rig::start(config, plan, true).await?;
    let outcome = async {
        let before = used_memory(&mut conn).await?;
        let due = rig.clock.now_ms() + 3_600_000;
        let payload = Bytes::from(vec![b'x'; plan.payload_bytes]);
        let jobs = plan.jobs;
        let job = |_| Job::new(QUEUE, KIND, payload.clone()).with_run_at_ms(due);
        enqueue_in_batches(&rig.producer, plan, jobs, job, |_| Ok(())).await?;
        // The scheduler takes them off the delayed route into the store.
        let deadline = Instant::now() + plan.timeout;
        loop {
            let counts = rig.backends.store.delayed_counts().await?;
            let waiting = counts.get(QUEUE).copied().unwrap_or(0);
            if waiting >= jobs as u64 {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Task(format!(
                    "only {waiting} of {jobs} jobs reached the delayed set within {:?}",
                    plan.timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let after = used_memory(&mut conn).await?;
        let per_job = after.saturating_sub(before) as f64 / jobs as f64;
        Ok(Memory {
            jobs,
            payload_bytes: plan.payload_bytes,
            used_before: before,
            used_after: after,
            bytes_per_job: round(per_job, 1),
            beyond_payload: round(per_job - plan.payload_bytes as f64, 1),
            process_rss_kib: rss_kib(),
        })
    }
    .await;
    rig.stop().await?;
    outcome
}
