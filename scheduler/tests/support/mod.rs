//! What the scheduler's tests share, on the shared test kit (`jobfleet-testkit`):
//! embedded backends on a pausable clock, schedulers started through the public entry
//! point, and helpers to publish and receive jobs.

#![allow(dead_code)]

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use jobfleet_common::broker::Consumer;
use jobfleet_common::store::{JobRecord, JobState};
use jobfleet_common::{Config, ErrorKind, ErrorRecord, Job, JobId, Route};
use jobfleet_testkit as testkit;

/// Embedded backends on tokio's (paused) clock and the schedulers running on them: the
/// shared test kit's [`testkit::Fleet`] (`backends`, `publish`, `record`,
/// `start_scheduler`, … through `Deref`) with this suite's shorthands.
pub struct Fleet(testkit::Fleet);

impl Deref for Fleet {
    type Target = testkit::Fleet;

    fn deref(&self) -> &testkit::Fleet {
        &self.0
    }
}

impl DerefMut for Fleet {
    fn deref_mut(&mut self) -> &mut testkit::Fleet {
        &mut self.0
    }
}

impl Fleet {
    /// Fresh embedded backends on tokio's (paused) clock, no scheduler yet.
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// Like [`Fleet::new`] with a given configuration.
    pub fn with_config(config: Config) -> Self {
        Self(testkit::Fleet::embedded_paused(config))
    }

    /// Fresh backends with one scheduler running.
    pub fn started() -> Self {
        let mut fleet = Self::new();
        fleet.start_scheduler();
        fleet
    }

    /// Cancels every scheduler and checks they stopped cleanly.
    pub async fn stop(mut self) {
        self.0.stop_roles().await;
    }

    /// Now on the fleet's clock.
    pub fn now(&self) -> i64 {
        self.0.now_ms()
    }

    /// A consumer of `queue`'s ready route.
    pub async fn ready(&self, queue: &str) -> Consumer {
        self.0.consumer(Route::Ready(queue.to_string()), 0).await
    }

    /// The job's state, waiting up to `within` for it to become `state`.
    pub async fn wait_for_state(&self, id: JobId, state: JobState, within: Duration) -> JobRecord {
        self.0.wait_state(id, state, within).await
    }
}

/// A queue name no other test uses.
pub fn queue() -> String {
    testkit::unique_namespace("q")
}

/// The next job on `consumer` within `within`, acked; `None` if none came.
pub async fn recv(consumer: &mut Consumer, within: Duration) -> Option<Job> {
    testkit::recv_job(consumer, within).await
}

/// A job on `queue` that failed `attempt` times so far, each with message `e<n>`.
pub fn failed_job(queue: &str, attempt: u32, max_attempts: u32) -> Job {
    let mut job = Job::new(queue, "work", "{}").with_max_attempts(max_attempts);
    job.attempt = attempt;
    job.errors = (1..=attempt)
        .map(|n| ErrorRecord {
            attempt: n,
            at_ms: 0,
            kind: ErrorKind::Failed,
            message: format!("e{n}"),
        })
        .collect();
    job
}
