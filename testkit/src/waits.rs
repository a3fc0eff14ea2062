//! Waiting for what a check expects: a condition, or a job's state record.

use std::future::Future;
use std::time::Duration;

use jobfleet_common::store::{JobRecord, JobState, JobStates};
use jobfleet_common::JobId;

/// How often the waits look again.
const POLL: Duration = Duration::from_millis(10);

/// Polls `check` every 10 ms until it is true (returns true) or `within` passes (false).
pub async fn wait_for<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the job's state record is in `state` and returns it; panics after
/// `within` with the last record seen (`context` says where, e.g. the backend's name).
pub async fn wait_state(
    store: &dyn JobStates,
    id: JobId,
    state: JobState,
    within: Duration,
    context: &str,
) -> JobRecord {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = store.record(id).await.expect("the store answers");
        match last {
            Some(r) if r.state == state => return r,
            _ if tokio::time::Instant::now() >= deadline => {
                panic!("job {id} not {state} within {within:?} ({context}): last record {last:?}")
            }
            _ => tokio::time::sleep(POLL).await,
        }
    }
}
