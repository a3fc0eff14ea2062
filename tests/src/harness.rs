//! The test harness: backend factories, a fleet started in-process through the roles'
//! public entry points, and helpers to wait for what must happen.

use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use async_trait::async_trait;
use jobfleet_common::store::{JobRecord, JobState};
use jobfleet_common::testing;
pub use jobfleet_common::testing::wait_for;
use jobfleet_common::{Backends, BrokerAddr, Config, JobId, StoreAddr};
use jobfleet_producer::Producer;
use jobfleet_worker::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Makes the backends one conformance check runs on.
#[async_trait]
pub trait BackendFactory: Send + Sync {
    /// The backend pair's name, for messages.
    fn name(&self) -> &'static str;
    /// Points `config` at the backends (broker and store URLs); the namespace is already
    /// unique to the test.
    fn configure(&self, config: &mut Config);
    /// Fresh backends for `config`. A backend that cannot be reached panics with how to
    /// start it: a conformance check never passes without its service.
    async fn backends(&self, config: &Config) -> Backends;
    /// The band a priority falls in on this broker: brokers with native priorities (the
    /// default) order all ten levels; a banded one (Kafka) orders only between bands.
    fn priority_band(&self, config: &Config, priority: u8) -> u8 {
        let _ = config;
        priority
    }
    /// Removes what a check left in shared services (queues, keys) under its namespace.
    async fn cleanup(&self, config: &Config, queues: &[String]) {
        let _ = (config, queues);
    }
}

/// How checks receive their backend factory.
pub type Factory = Arc<dyn BackendFactory>;

/// The in-process embedded broker and store.
#[derive(Debug, Clone, Copy, Default)]
pub struct Embedded;

#[async_trait]
impl BackendFactory for Embedded {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn configure(&self, config: &mut Config) {
        config.broker = BrokerAddr::Embedded;
        config.store = StoreAddr::Embedded;
    }

    async fn backends(&self, _config: &Config) -> Backends {
        Backends::embedded()
    }
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

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("{prefix}{}", &id[id.len() - 12..])
}

/// A configuration with every timer short, so checks run in well under a second each.
pub fn fast_config(queue: &str) -> Config {
    let mut c = Config {
        namespace: unique("t"),
        ..Config::default()
    };
    // Factories that point the store at the test Redis (no persistence) need this; it is
    // inert on the embedded store.
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

/// One check's world: its configuration, backends, queue and producer.
pub struct Ctx {
    /// The configuration every role of the check shares.
    pub config: Arc<Config>,
    /// The backends.
    pub backends: Backends,
    /// The check's queue (random name).
    pub queue: String,
    /// A producer on the backends.
    pub producer: Producer,
    fleet: Vec<(CancellationToken, JoinHandle<()>)>,
    factory: Arc<dyn BackendFactory>,
}

impl Ctx {
    /// A fresh world on `factory`'s backends, with `tweak` applied to the fast config.
    pub async fn new(factory: &Arc<dyn BackendFactory>, tweak: impl FnOnce(&mut Config)) -> Self {
        let queue = unique("q");
        let mut config = fast_config(&queue);
        factory.configure(&mut config);
        tweak(&mut config);
        config.validate().expect("test config is valid");
        let backends = factory.backends(&config).await;
        let producer = Producer::new(&backends, &config);
        let factory = factory.clone();
        Self {
            config: Arc::new(config),
            backends,
            queue,
            producer,
            fleet: Vec::new(),
            factory,
        }
    }

    /// Now, on the backends' clock.
    pub fn now_ms(&self) -> i64 {
        self.backends.clock.now_ms()
    }

    /// Starts a scheduler; it stops with [`Ctx::stop`].
    pub fn start_scheduler(&mut self) {
        let token = CancellationToken::new();
        let (config, backends, t) = (self.config.clone(), self.backends.clone(), token.clone());
        let handle = tokio::spawn(async move {
            if let Err(e) = jobfleet_scheduler::run(config, backends, t).await {
                panic!("scheduler failed: {e}");
            }
        });
        self.fleet.push((token, handle));
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

    /// Starts a worker that stops with [`Ctx::stop`].
    pub fn start_worker(&mut self, registry: Registry) {
        let w = self.spawn_worker(registry);
        self.fleet.push(w);
    }

    /// Stops every role started through `start_*`, waits for them, and removes the
    /// check's queues and keys from shared services.
    pub async fn stop(&mut self) {
        self.stop_roles().await;
        self.factory_cleanup().await;
    }

    async fn factory_cleanup(&self) {
        self.factory
            .cleanup(&self.config, std::slice::from_ref(&self.queue))
            .await;
    }

    /// Stops every role started through `start_*` and waits for them.
    pub async fn stop_roles(&mut self) {
        for (token, _) in &self.fleet {
            token.cancel();
        }
        for (_, handle) in self.fleet.drain(..) {
            tokio::time::timeout(Duration::from_secs(20), handle)
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
        testing::wait_state(store, id, state, within, self.factory.name()).await
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
