//! The state one running worker shares between its tasks: who it is, what it runs with,
//! and the table of attempts in flight.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use jobfleet_common::broker::Broker;
use jobfleet_common::store::{JobRecord, JobState, QueueTally, WorkerStore};
use jobfleet_common::{Backends, Config, SharedClock};
use tokio_util::sync::CancellationToken;

use crate::handler::Registry;
use crate::running::Running;
use crate::settlement::Settlement;

/// One worker process's shared state.
pub(crate) struct WorkerState {
    /// `{host}-{pid}-{random}`, unique per run.
    pub id: Arc<str>,
    /// The host name in the id and the heartbeat.
    pub host: String,
    pub config: Arc<Config>,
    /// The store as a worker may use it: its bundle, not the whole store.
    pub store: Arc<dyn WorkerStore>,
    pub broker: Arc<dyn Broker>,
    /// The store's time (see `store_time`).
    pub clock: SharedClock,
    pub registry: Arc<Registry>,
    pub running: Arc<Running>,
    /// Cancelled when the worker starts draining: no new attempt starts after it.
    pub shutdown: CancellationToken,
    pub started_at_ms: i64,
    /// Executions admitted so far, to tell this worker's execution holders apart.
    executions: AtomicU64,
    /// Attempts finished `completed` since start (reported in the heartbeat, from which
    /// the dashboard and `jobfleet queues --watch` derive throughput).
    pub completed: AtomicU64,
    /// Attempts that failed since start (failed, timed out, panicked, lost their lock,
    /// permanent): the failure rate's numerator.
    pub failed: AtomicU64,
    /// The same, per queue.
    pub by_queue: std::sync::Mutex<BTreeMap<String, QueueTally>>,
}

impl WorkerState {
    /// The state of a worker started on `backends`, whose store it keeps narrowed to a
    /// [`WorkerStore`].
    pub fn new(
        config: Arc<Config>,
        backends: Backends,
        registry: Arc<Registry>,
        shutdown: CancellationToken,
    ) -> Self {
        let host = host_name();
        let id = worker_id(&host, std::process::id(), rand::random::<u32>()).into();
        let Backends {
            broker,
            store,
            clock,
        } = backends;
        let started_at_ms = clock.now_ms();
        Self {
            id,
            host,
            config,
            store,
            broker,
            clock,
            registry,
            running: Arc::default(),
            shutdown,
            started_at_ms,
            executions: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            by_queue: std::sync::Mutex::default(),
        }
    }

    /// The `running` record of this worker's attempt at `job`, starting now.
    pub fn running_record(&self, job: &jobfleet_common::Job) -> JobRecord {
        let now = self.clock.now_ms();
        JobRecord {
            started_at_ms: Some(now),
            worker: Some(self.id.to_string()),
            ..JobRecord::of(job, JobState::Running, now)
        }
    }

    /// A delivery of `job` is settled with `outcome`: the log line, the metric, the
    /// heartbeat's tallies and the registry's settled hook.
    pub fn finished(&self, job: &jobfleet_common::Job, outcome: Settlement) {
        crate::events::finished(job, outcome);
        match outcome {
            Settlement::Completed => self.tally(job, true),
            Settlement::Failed
            | Settlement::Timeout
            | Settlement::Panic
            | Settlement::LockLost
            | Settlement::Permanent => self.tally(job, false),
            // No handler's attempt ended here on its own: the throughput and failure rate
            // the heartbeat reports leave these out.
            Settlement::WorkerCrashed
            | Settlement::Cancelled
            | Settlement::Skipped
            | Settlement::Duplicate
            | Settlement::Requeued
            | Settlement::Busy => {}
        }
        self.registry.settled(job, outcome);
    }

    /// Counts a finished attempt, in all and under its queue (one entry per configured
    /// queue: a job routed here by hand counts in all only).
    fn tally(&self, job: &jobfleet_common::Job, completed: bool) {
        let total = if completed {
            &self.completed
        } else {
            &self.failed
        };
        total.fetch_add(1, Ordering::Relaxed);
        if !self.config.worker.queues.contains(&job.queue) {
            return;
        }
        let mut by_queue = self
            .by_queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The queue's name is copied once, the first time; not per finished attempt.
        let tally = match by_queue.get_mut(&job.queue) {
            Some(tally) => tally,
            None => by_queue.entry(job.queue.clone()).or_default(),
        };
        if completed {
            tally.completed += 1;
        } else {
            tally.failed += 1;
        }
    }

    /// The lock holder id of this worker's attempt at `job`: unique per worker and job,
    /// so a redelivery of the same job elsewhere never looks like the same holder.
    pub fn lock_holder(&self, job: &jobfleet_common::Job) -> String {
        format!("{}:{}", self.id, job.id)
    }
}

impl WorkerState {
    /// A fresh execution-lease holder id for one attempt at `job`: unique even within
    /// this worker, so a second delivery of a job it is running waits like any other.
    pub fn execution_holder(&self, job: &jobfleet_common::Job) -> String {
        let n = self.executions.fetch_add(1, Ordering::Relaxed);
        format!("{}:{}:{n}", self.id, job.id)
    }
}

/// The host name from `HOSTNAME`, which shells and container runtimes set; looking it up
/// through libc is not worth a dependency for a label.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn worker_id(host: &str, pid: u32, random: u32) -> String {
    format!("{host}-{pid}-{:06x}", random & 0xff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ids_name_host_pid_and_a_short_random_part() {
        assert_eq!(worker_id("box", 42, 0xdead_beef), "box-42-adbeef");
        assert_eq!(worker_id("box", 42, 1), "box-42-000001");
        assert!(!host_name().is_empty());
    }
}
