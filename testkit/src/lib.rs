//! The one test kit jobfleet's tests build on, whatever they test:
//!
//! - where the services are and how to start them, fresh namespaces, waits and route
//!   helpers: [`jobfleet_common::testing`], re-exported here (the backend crates' own
//!   tests use it directly, since this crate depends on them);
//! - [`fast_config`]: every timer short, so a check runs in well under a second;
//! - [`Fleet`]: a configuration, backends, and roles (workers, schedulers) started
//!   in-process through their public entry points, stopped together;
//! - [`Probe`]: a log handlers append to and checks read; [`init_tracing`].
//!
//! The harnesses are thin layers on it: the conformance suite's `Ctx`
//! (`tests/src/harness.rs`: a [`Fleet`] on a backend factory, with a producer), the
//! worker's (`worker/tests/behaviour/main.rs`: one worker whose result a check reads)
//! and the scheduler's (`scheduler/tests/support/mod.rs`: schedulers on a paused clock).
//! The crash tests' `World` (`tests/src/processes/world.rs`) runs roles as processes and
//! uses the same URLs and waits.

use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use jobfleet_common::broker::{Consumer, Route};
use jobfleet_common::clock::TokioClock;
use jobfleet_common::store::{JobRecord, JobState};
use jobfleet_common::{Backends, Config, Job, JobId};
use jobfleet_worker::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use jobfleet_common::testing::*;

/// How long a stopped role may take to drain before a check fails.
const STOP_PATIENCE: Duration = Duration::from_secs(20);

/// A name no other test uses: `prefix` and 12 random hex digits.
pub fn unique(prefix: &str) -> String {
    let id = JobId::new().0.simple().to_string();
    format!("{prefix}{}", &id[id.len() - 12..])
}

/// A configuration with every timer short, so checks run in well under a second each,
/// on a fresh namespace and consuming `queue`.
pub fn fast_config(queue: &str) -> Config {
    let mut c = Config {
        namespace: unique("t"),
        ..Config::default()
    };
    // Configurations that point the store at the test Redis (which may keep nothing on
    // disk) need this; it is inert on the embedded store.
    c.redis.require_persistence = false;
    c.worker.queues = vec![queue.to_string()];
    c.worker.concurrency = 4;
    c.worker.grace_period = Duration::from_secs(5);
    c.worker.lock_ttl = Duration::from_millis(900);
    // Long enough that a loaded CI machine does not starve a renewal past it.
    c.worker.lease_ttl = Duration::from_secs(3);
    c.worker.lock_conflict_delay = Duration::from_millis(50);
    c.worker.heartbeat = Duration::from_millis(200);
    c.worker.cancel_poll = Duration::from_millis(50);
    c.scheduler.tick = Duration::from_millis(20);
    c.queue_defaults.retry.base = Duration::from_millis(20);
    c.queue_defaults.retry.cap = Duration::from_millis(100);
    c
}

/// Installs a test log subscriber once (`RUST_LOG` to see more).
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// A configuration, its backends, and the roles running on them in this process.
pub struct Fleet {
    /// The configuration every role shares.
    pub config: Arc<Config>,
    /// The backends every role shares.
    pub backends: Backends,
    roles: Vec<(CancellationToken, JoinHandle<()>)>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("namespace", &self.config.namespace)
            .field("backends", &self.backends)
            .field("roles", &self.roles.len())
            .finish()
    }
}

impl Fleet {
    /// No roles yet, on `backends`.
    pub fn new(config: Config, backends: Backends) -> Self {
        Self {
            config: Arc::new(config),
            backends,
            roles: Vec::new(),
        }
    }

    /// No roles yet, on fresh embedded backends whose clock is tokio's, so a test with
    /// paused time (`start_paused`) moves every expiry instantly.
    pub fn embedded_paused(config: Config) -> Self {
        Self::new(
            config,
            Backends::embedded_with_clock(Arc::new(TokioClock::new())),
        )
    }

    /// Now, on the backends' clock.
    pub fn now_ms(&self) -> i64 {
        self.backends.clock.now_ms()
    }

    /// Starts a scheduler; it stops with [`Fleet::stop_roles`], and an error it stops
    /// with fails the check there.
    pub fn start_scheduler(&mut self) {
        let token = CancellationToken::new();
        let (config, backends, t) = (self.config.clone(), self.backends.clone(), token.clone());
        let handle = tokio::spawn(async move {
            if let Err(e) = jobfleet_scheduler::run(config, backends, t).await {
                panic!("scheduler failed: {e}");
            }
        });
        self.roles.push((token, handle));
    }

    /// Starts a worker with `registry`; returns its own shutdown token and task so a
    /// check can drain it alone.
    pub fn spawn_worker(&self, registry: Registry) -> (CancellationToken, JoinHandle<()>) {
        self.spawn_worker_with(self.config.clone(), registry)
    }

    /// Starts a worker with its own configuration.
    pub fn spawn_worker_with(
        &self,
        config: Arc<Config>,
        registry: Registry,
    ) -> (CancellationToken, JoinHandle<()>) {
        let token = CancellationToken::new();
        let (backends, t) = (self.backends.clone(), token.clone());
        let handle = tokio::spawn(async move {
            if let Err(e) = jobfleet_worker::run(config, backends, Arc::new(registry), t).await {
                panic!("worker failed: {e}");
            }
        });
        (token, handle)
    }

    /// Starts a worker that stops with [`Fleet::stop_roles`].
    pub fn start_worker(&mut self, registry: Registry) {
        let w = self.spawn_worker(registry);
        self.roles.push(w);
    }

    /// Asks every role to stop and aborts its task, without waiting: for a `Drop` that
    /// cannot await (a check that failed part-way).
    pub fn abort_roles(&mut self) {
        for (token, handle) in self.roles.drain(..) {
            token.cancel();
            handle.abort();
        }
    }

    /// Stops every role started through `start_*` and waits for them to drain; a role
    /// that errs, panics or takes longer than 20 s fails the check.
    pub async fn stop_roles(&mut self) {
        for (token, _) in &self.roles {
            token.cancel();
        }
        for (_, handle) in self.roles.drain(..) {
            tokio::time::timeout(STOP_PATIENCE, handle)
                .await
                .expect("role stops within 20s of shutdown")
                .expect("role task ends without panic");
        }
    }

    /// The job's state record.
    pub async fn record(&self, id: JobId) -> Option<JobRecord> {
        self.backends.store.record(id).await.expect("store answers")
    }

    /// Waits until the job's record is in `state`, returning it.
    pub async fn wait_state(&self, id: JobId, state: JobState, within: Duration) -> JobRecord {
        let store = self.backends.store.as_ref();
        wait_state(store, id, state, within, self.backends.store.name()).await
    }

    /// Publishes `job` (binary form, at its priority) to `route`.
    pub async fn publish(&self, route: Route, job: &Job) {
        publish_job(self.backends.broker.as_ref(), route, job).await;
    }

    /// A consumer of `route` with at most `prefetch` unsettled deliveries (0: no limit).
    pub async fn consumer(&self, route: Route, prefetch: u16) -> Consumer {
        self.backends
            .broker
            .consume(&route, prefetch)
            .await
            .expect("consume")
    }
}

/// A shared log a handler appends to and a check reads.
#[derive(Debug)]
pub struct Probe<T>(Arc<Mutex<Vec<T>>>);

impl<T> Clone for Probe<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for Probe<T> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Vec::new())))
    }
}

impl<T: Clone> Probe<T> {
    /// Appends an event.
    pub fn push(&self, item: T) {
        self.0.lock().expect("probe lock").push(item);
    }

    /// Every event so far.
    pub fn items(&self) -> Vec<T> {
        self.0.lock().expect("probe lock").clone()
    }

    /// How many events so far.
    pub fn len(&self) -> usize {
        self.0.lock().expect("probe lock").len()
    }

    /// Whether nothing happened yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
