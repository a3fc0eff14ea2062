//! What the scheduler's tests share: embedded backends on a pausable clock, schedulers
//! started through the public entry point, and helpers to publish and receive jobs.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::broker::Consumer;
use jobfleet_common::clock::TokioClock;
use jobfleet_common::store::{JobRecord, JobState};
use jobfleet_common::testing;
use jobfleet_common::{Backends, Config, ErrorKind, ErrorRecord, Job, JobId, Route};
use jobfleet_scheduler::SchedulerError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Embedded backends and the schedulers running on them.
pub struct Fleet {
    pub backends: Backends,
    pub config: Arc<Config>,
    shutdown: CancellationToken,
    schedulers: Vec<JoinHandle<Result<(), SchedulerError>>>,
}

impl Fleet {
    /// Fresh embedded backends on tokio's (paused) clock, no scheduler yet.
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// Like [`Fleet::new`] with a given configuration.
    pub fn with_config(config: Config) -> Self {
        Self {
            backends: Backends::embedded_with_clock(Arc::new(TokioClock::new())),
            config: Arc::new(config),
            shutdown: CancellationToken::new(),
            schedulers: Vec::new(),
        }
    }

    /// Fresh backends with one scheduler running.
    pub fn started() -> Self {
        let mut fleet = Self::new();
        fleet.start_scheduler();
        fleet
    }

    /// Starts one more scheduler on the same backends.
    pub fn start_scheduler(&mut self) {
        let run = jobfleet_scheduler::run(
            self.config.clone(),
            self.backends.clone(),
            self.shutdown.clone(),
        );
        self.schedulers.push(tokio::spawn(run));
    }

    /// Cancels every scheduler and checks they stopped cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for handle in self.schedulers {
            let result = tokio::time::timeout(Duration::from_secs(5), handle)
                .await
                .expect("scheduler stops promptly")
                .expect("scheduler task did not panic");
            assert!(result.is_ok(), "scheduler failed: {result:?}");
        }
    }

    /// Now on the fleet's clock.
    pub fn now(&self) -> i64 {
        self.backends.clock.now_ms()
    }

    /// Publishes `job` (binary form) to `route`.
    pub async fn publish(&self, route: Route, job: &Job) {
        testing::publish_job(self.backends.broker.as_ref(), route, job).await;
    }

    /// A consumer of `queue`'s ready route.
    pub async fn ready(&self, queue: &str) -> Consumer {
        let route = Route::Ready(queue.to_string());
        self.backends
            .broker
            .consume(&route, 0)
            .await
            .expect("consume")
    }

    /// The job's state record.
    pub async fn record(&self, id: JobId) -> Option<JobRecord> {
        self.backends.store.record(id).await.expect("record")
    }

    /// The job's state, waiting up to `within` for it to become `state`.
    pub async fn wait_for_state(&self, id: JobId, state: JobState, within: Duration) -> JobRecord {
        let store = self.backends.store.as_ref();
        testing::wait_state(store, id, state, within, "embedded").await
    }
}

/// A queue name no other test uses.
pub fn queue() -> String {
    testing::unique_namespace("q")
}

/// The next job on `consumer` within `within`, acked; `None` if none came.
pub async fn recv(consumer: &mut Consumer, within: Duration) -> Option<Job> {
    testing::recv_job(consumer, within).await
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
