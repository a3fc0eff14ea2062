//! The jobfleet half of the bench: a producer and an in-process worker on the configured
//! backends, and a probe that times them.
//!
//! The probe is the worker's own hooks: the `noop` handler notes when it starts and how
//! long the job waited since it was enqueued, and [`Registry::on_settled`] notes when a
//! job's outcome is recorded and its delivery acked. The run ends when every job has
//! settled as `completed`, not when the last handler returned.
//!
//! The clock starts once one warm-up job (kind `warm-up`, not counted) has settled: the
//! worker's consumers are then open and, on Kafka, hold their partitions, so the figures
//! are of moving jobs, not of connecting or of a consumer group's first rebalance.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use jobfleet_common::{Backends, Config, Job, SharedClock};
use jobfleet_fleet::{Fleet, Role, RoleError, RoleFailure};
use jobfleet_producer::Producer;
use jobfleet_worker::{Registry, Settlement};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::report::{percentile, FleetFigures};
use crate::{per_second, Plan};

/// The queue the bench's jobs go through (under the run's own namespace).
pub(crate) const QUEUE: &str = "bench";
/// The job kind: a handler that does nothing.
pub(crate) const KIND: &str = "noop";
/// The warm-up job's kind: does nothing either, and is not counted.
const WARM_UP: &str = "warm-up";
/// How long the worker may take to start consuming.
const WORKER_START: Duration = Duration::from_secs(10);

/// What the worker's hooks record.
struct Probe {
    clock: SharedClock,
    first_start: OnceLock<Instant>,
    /// Enqueue → handler start per job, ms (the clock's resolution).
    waits_ms: Mutex<Vec<f64>>,
    /// Jobs settled as `completed`.
    completed: Countdown,
    /// Settled otherwise (failed, duplicate…): a sign something is off, reported.
    other: AtomicUsize,
}

impl Probe {
    fn new(clock: SharedClock, expected: usize) -> Self {
        Self {
            clock,
            first_start: OnceLock::new(),
            waits_ms: Mutex::new(Vec::with_capacity(expected)),
            completed: Countdown::new(expected),
            other: AtomicUsize::new(0),
        }
    }
}

impl Hooks for Probe {
    fn started(&self, job: &Job) {
        self.first_start.get_or_init(Instant::now);
        let waited = self.clock.now_ms().saturating_sub(job.enqueued_at_ms);
        self.waits_ms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(waited as f64);
    }

    fn settled(&self, _job: &Job, outcome: Settlement) {
        match outcome {
            Settlement::Completed => self.completed.tick(),
            // Never expected of `noop` jobs on a healthy fleet: counted and reported.
            Settlement::Failed
            | Settlement::Timeout
            | Settlement::Panic
            | Settlement::LockLost
            | Settlement::Permanent
            | Settlement::WorkerCrashed
            | Settlement::Cancelled
            | Settlement::Skipped
            | Settlement::Duplicate
            | Settlement::Requeued
            | Settlement::Busy => {
                self.other.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Counts settled jobs up to the number expected; remembers when the last one settled
/// and wakes whoever waits for it.
pub(crate) struct Countdown {
    expected: usize,
    settled: AtomicUsize,
    last: OnceLock<Instant>,
    all: Notify,
}

impl Countdown {
    pub(crate) fn new(expected: usize) -> Self {
        Self {
            expected,
            settled: AtomicUsize::new(0),
            last: OnceLock::new(),
            all: Notify::new(),
        }
    }

    /// Counts one settled job.
    pub(crate) fn tick(&self) {
        if self.settled.fetch_add(1, Ordering::AcqRel) + 1 == self.expected {
            self.last.get_or_init(Instant::now);
            // Stores a permit if nobody waits yet, so the wake-up cannot be missed.
            self.all.notify_one();
        }
    }

    /// When the last expected job settled, if it has.
    pub(crate) fn last(&self) -> Option<Instant> {
        self.last.get().copied()
    }

    /// Waits up to `within` for the last expected job; on timeout, how many settled.
    pub(crate) async fn wait(&self, within: Duration) -> Result<(), usize> {
        match tokio::time::timeout(within, self.all.notified()).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.settled.load(Ordering::Acquire)),
        }
    }
}

/// The values a hook collected, leaving the collection empty.
pub(crate) fn take<T>(samples: &Mutex<Vec<T>>) -> Vec<T> {
    std::mem::take(&mut *samples.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Enqueues `jobs` jobs made by `job(k)` in batches of `plan.batch`, `plan.in_flight`
/// calls at a time, and hands each answer to `check`.
pub(crate) async fn enqueue_in_batches(
    producer: &Producer,
    plan: &Plan,
    jobs: usize,
    job: impl Fn(usize) -> Job,
    mut check: impl FnMut(&jobfleet_producer::Enqueued) -> Result<()>,
) -> Result<()> {
    let batches = (0..jobs)
        .step_by(plan.batch)
        .map(|start| (start..jobs.min(start + plan.batch)).map(&job).collect());
    let mut calls = futures::stream::iter(batches)
        .map(|batch| producer.enqueue_many(batch))
        .buffer_unordered(plan.in_flight);
    while let Some(answers) = calls.next().await {
        for answer in &answers? {
            check(answer)?;
        }
    }
    Ok(())
}

/// Enqueues and runs `plan.jobs` no-op jobs; see the module docs.
pub(crate) async fn measure(config: &Config, plan: &Plan) -> Result<FleetFigures> {
    let rig = Rig::start(config, plan, false).await?;
    let probe = Arc::new(Probe::new(rig.clock.clone(), plan.jobs));
    rig.hooks(probe.clone());
    let outcome = async {
        let enqueued = enqueue(&rig.producer, plan).await?;
        let wait = plan.timeout.saturating_sub(enqueued.began.elapsed());
        if let Err(completed) = probe.completed.wait(wait).await {
            return Err(Error::Task(format!(
                "only {completed} of {} jobs completed within {:?}",
                plan.jobs, plan.timeout
            )));
        }
        Ok(enqueued)
    }
    .await;
    let broker = rig.broker;
    rig.stop().await?;
    let enqueued = outcome?;

    let other = probe.other.load(Ordering::Acquire);
    if other > 0 {
        eprintln!("bench: warning: {other} deliveries settled other than `completed`");
    }
    let (Some(first_start), Some(last)) = (probe.first_start.get(), probe.completed.last()) else {
        return Err(Error::Task("the probe saw no job run".into()));
    };
    let mut waits = take(&probe.waits_ms);
    Ok(FleetFigures {
        broker,
        enqueue_per_s: per_second(plan.jobs, enqueued.took),
        process_per_s: per_second(plan.jobs, last.duration_since(*first_start)),
        e2e_per_s: per_second(plan.jobs, last.duration_since(enqueued.began)),
        latency_p50_ms: percentile(&mut waits, 0.50),
        latency_p99_ms: percentile(&mut waits, 0.99),
    })
}

/// When the enqueue began and how long it took.
struct Enqueued {
    began: Instant,
    took: Duration,
}

/// Enqueues the jobs in batches of `plan.batch`, `plan.in_flight` calls at a time: one
/// call's confirm wait overlaps the next one's store write and sends, as with a producer
/// serving concurrent requests (order across calls is not kept, as then).
async fn enqueue(producer: &Producer, plan: &Plan) -> Result<Enqueued> {
    let payload = Bytes::from(vec![b'x'; plan.payload_bytes]);
    let began = Instant::now();
    let job = |_| Job::new(QUEUE, KIND, payload.clone());
    enqueue_in_batches(producer, plan, plan.jobs, job, |_| Ok(())).await?;
    Ok(Enqueued {
        began,
        took: began.elapsed(),
    })
}

/// What a measurement watches: each counted job's handler start and its settling.
pub(crate) trait Hooks: Send + Sync + 'static {
    /// The `noop` handler of `job` started.
    fn started(&self, job: &Job);
    /// `job`'s outcome was recorded and its delivery acked.
    fn settled(&self, job: &Job, outcome: Settlement);
}

/// Hooks that see nothing, until a measurement installs its own.
struct Unset;

impl Hooks for Unset {
    fn started(&self, _: &Job) {}
    fn settled(&self, _: &Job, _: Settlement) {}
}

/// A worker (and, for delayed jobs, a scheduler) on the configured backends, running the
/// `noop` kind, and a producer on connections of its own, as separate processes would
/// have; warm when [`Rig::start`] returns. The roles run in a [`Fleet`], the in-process
/// launcher `jobfleet dev` and the tests use too.
pub(crate) struct Rig {
    pub producer: Arc<Producer>,
    pub clock: SharedClock,
    pub broker: &'static str,
    /// The producer's backends (the worker and the scheduler have their own).
    pub backends: Backends,
    hooks: Arc<std::sync::RwLock<Arc<dyn Hooks>>>,
    fleet: Fleet,
    to_close: Vec<Arc<dyn jobfleet_common::Broker>>,
}

impl Rig {
    /// Starts the roles (`plan.workers` workers, each on connections of its own), waits
    /// until they all heartbeat and one uncounted job has run.
    pub(crate) async fn start(config: &Config, plan: &Plan, scheduler: bool) -> Result<Self> {
        let embedded = config.broker.is_embedded();
        let connect = || async {
            if embedded {
                Ok::<_, Error>(Backends::embedded())
            } else {
                Ok(jobfleet_connect::connect(config).await?)
            }
        };
        // The embedded backend only exists as one instance shared in-process.
        let producer_side = connect().await?;
        let mut worker_sides = Vec::with_capacity(plan.workers);
        for _ in 0..plan.workers.max(1) {
            worker_sides.push(if embedded {
                producer_side.clone()
            } else {
                connect().await?
            });
        }
        let scheduler_side = match (scheduler, embedded) {
            (false, _) => None,
            (true, true) => Some(producer_side.clone()),
            (true, false) => Some(connect().await?),
        };
        // Every side is closed before the caller deletes the run's topics: a live
        // librdkafka client that still has a deleted topic in its metadata can crash the
        // process (docs/kafka.md, broker caveats).
        let mut to_close = vec![producer_side.broker.clone()];
        to_close.extend(worker_sides.iter().map(|b| b.broker.clone()));
        to_close.extend(scheduler_side.iter().map(|b| b.broker.clone()));
        let hooks: Arc<std::sync::RwLock<Arc<dyn Hooks>>> =
            Arc::new(std::sync::RwLock::new(Arc::new(Unset)));
        let warmed_up = Arc::new(Notify::new());
        let mut registry = Registry::new();
        let (on_start, on_settled, on_warm) = (hooks.clone(), hooks.clone(), warmed_up.clone());
        registry
            .register_fn(KIND, move |ctx| {
                read(&on_start).started(ctx.job());
                async { Ok(()) }
            })
            .register_fn(WARM_UP, |_| async { Ok(()) })
            .on_settled(move |job, outcome| {
                if job.kind == WARM_UP {
                    // Stores a permit if nobody waits yet, so it cannot be missed.
                    on_warm.notify_one();
                } else {
                    read(&on_settled).settled(job, outcome);
                }
            });
        let config = Arc::new(config.clone());
        let registry = Arc::new(registry);
        let fleet = Fleet::new(config.clone(), CancellationToken::new());
        for side in worker_sides {
            fleet.start_worker(side, registry.clone());
        }
        if let Some(side) = scheduler_side {
            fleet.start_scheduler(side);
        }
        let rig = Self {
            producer: Arc::new(Producer::new(&producer_side, &config)),
            clock: producer_side.clock.clone(),
            broker: producer_side.broker.name(),
            backends: producer_side,
            hooks,
            fleet,
            to_close,
        };
        let warm = async {
            rig.wait_for_worker().await?;
            rig.producer
                .enqueue(Job::new(QUEUE, WARM_UP, Bytes::new()))
                .await?;
            tokio::time::timeout(plan.timeout, warmed_up.notified())
                .await
                .map_err(|_| {
                    Error::Task(format!(
                        "the warm-up job did not settle within {:?}",
                        plan.timeout
                    ))
                })
        };
        match warm.await {
            Ok(()) => Ok(rig),
            Err(e) => {
                let _ = rig.stop().await;
                Err(e)
            }
        }
    }

    /// Installs the measurement's hooks.
    pub(crate) fn hooks(&self, hooks: Arc<dyn Hooks>) {
        *self.hooks.write().unwrap_or_else(PoisonError::into_inner) = hooks;
    }

    /// Stops the roles and closes every connection.
    pub(crate) async fn stop(self) -> Result<()> {
        let stopped = self.fleet.stop().await;
        let embedded = self.backends.broker.name() == "embedded";
        drop(self.producer);
        drop(self.backends);
        if !embedded {
            // The last handles: the clients are gone once these are dropped.
            for broker in self.to_close {
                broker.close().await;
            }
        }
        stopped.map_err(role_failure)
    }

    /// Waits until the worker heartbeats, which it does once its consumers are open, so
    /// no clock includes the worker's start-up.
    async fn wait_for_worker(&self) -> Result<()> {
        let deadline = Instant::now() + WORKER_START;
        while self.backends.store.workers().await?.len() < self.fleet.workers() {
            if Instant::now() >= deadline {
                return Err(Error::Task(format!(
                    "the bench worker did not start within {WORKER_START:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// A role's failure as the bench's: a worker's error keeps its kind.
fn role_failure(RoleFailure { role, error }: RoleFailure) -> Error {
    let who = match role {
        Role::Worker(_) => "a bench worker",
        Role::Scheduler(_) => "the bench scheduler",
    };
    match error {
        RoleError::Worker(e) => Error::Worker(e),
        RoleError::Panicked(message) => Error::Task(format!("{who} panicked: {message}")),
        e => Error::Task(format!("{who}: {e}")),
    }
}

fn read(hooks: &std::sync::RwLock<Arc<dyn Hooks>>) -> Arc<dyn Hooks> {
    hooks.read().unwrap_or_else(PoisonError::into_inner).clone()
}
