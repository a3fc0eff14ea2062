//! [`Fleet`]: a configuration, its backends, and the roles a check runs on them in this
//! process, started through the in-process launcher `jobfleet dev`, `run` and the bench
//! use ([`jobfleet_fleet::Fleet`]) and stopped together; [`fast_config`], with every
//! timer short so a check runs in well under a second.

use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::broker::{Consumer, Route};
use jobfleet_common::clock::TokioClock;
use jobfleet_common::store::{JobRecord, JobState};
use jobfleet_common::{Backends, Config, Job, JobId};
use jobfleet_fleet::RoleHandle;
use jobfleet_worker::Registry;
use tokio_util::sync::CancellationToken;

use crate::routes::publish_job;
use crate::services::unique;
use crate::waits::wait_state;

/// How long a stopped role may take to drain before a check fails.
const STOP_PATIENCE: Duration = Duration::from_secs(20);

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

/// A configuration, its backends, and the roles running on them in this process,
/// started by the launcher `jobfleet dev`, `run` and the bench use
/// ([`jobfleet_fleet::Fleet`]), with what checks read and wait for beside it.
#[derive(Debug)]
pub struct Fleet {
    /// The configuration every role shares.
    pub config: Arc<Config>,
    /// The backends every role shares.
    pub backends: Backends,
    roles: jobfleet_fleet::Fleet,
}

impl Fleet {
    /// No roles yet, on `backends`.
    pub fn new(config: Config, backends: Backends) -> Self {
        let config = Arc::new(config);
        Self {
            roles: launcher(&config),
            config,
            backends,
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
        self.roles.start_scheduler(self.backends.clone());
    }

    /// Starts a worker with `registry` apart: it has its own shutdown token, and
    /// awaiting its handle gives how it ended, so a check can drain it alone. It stops
    /// with [`Fleet::stop_roles`] too.
    pub fn spawn_worker(&self, registry: Registry) -> (CancellationToken, RoleHandle) {
        self.spawn_worker_with(self.config.clone(), registry)
    }

    /// [`Fleet::spawn_worker`] with a configuration of its own.
    pub fn spawn_worker_with(
        &self,
        config: Arc<Config>,
        registry: Registry,
    ) -> (CancellationToken, RoleHandle) {
        self.roles
            .spawn_worker(config, self.backends.clone(), Arc::new(registry))
    }

    /// Starts a worker that stops with [`Fleet::stop_roles`], where an error it stops
    /// with fails the check.
    pub fn start_worker(&mut self, registry: Registry) {
        self.roles
            .start_worker(self.backends.clone(), Arc::new(registry));
    }

    /// Asks every role to stop and aborts its task, without waiting: for a `Drop` that
    /// cannot await (a check that failed part-way).
    pub fn abort_roles(&mut self) {
        self.roles.abort();
        self.roles = launcher(&self.config);
    }

    /// Stops every role and waits for them to drain; a role that errs, panics or takes
    /// longer than 20 s fails the check. Roles can be started again afterwards.
    pub async fn stop_roles(&mut self) {
        let roles = std::mem::replace(&mut self.roles, launcher(&self.config));
        tokio::time::timeout(STOP_PATIENCE, roles.stop())
            .await
            .expect("roles stop within 20s of shutdown")
            .unwrap_or_else(|failure| panic!("a role failed: {failure}"));
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

/// A launcher for `config`'s roles on a token of their own.
fn launcher(config: &Arc<Config>) -> jobfleet_fleet::Fleet {
    jobfleet_fleet::Fleet::new(config.clone(), CancellationToken::new())
}
