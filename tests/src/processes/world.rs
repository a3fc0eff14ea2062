//! One crash test's world: a random namespace and queue on the real RabbitMQ (or, when
//! the test's config tweak points `broker` at it, Kafka) and Redis, backends and a
//! producer in the test process, worker and scheduler processes, the checks of the end
//! state, and the cleanup of every queue and key, pass or fail.

use std::time::Duration;

use futures::stream::{self, StreamExt};
use jobfleet_common::config::LogFormat;
use jobfleet_common::store::JobState;
use jobfleet_common::{Backends, BrokerAddr, Config, Job, JobId, Route};
use jobfleet_producer::Producer;
use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;

use super::audit::Audit;
use super::keys::Keys;
use super::{rabbitmqctl, Processes};
use jobfleet_testkit::shared_config;
use jobfleet_testkit::unique;
use jobfleet_testkit::{delete_routes, purge_store, redis_url, HOW_TO_START};

/// Jobs per `enqueue_many` call.
const ENQUEUE_BATCH: usize = 500;
/// Store calls in flight at once while auditing thousands of jobs.
const AUDIT_CONCURRENCY: usize = 64;

/// A crash test's namespace, services, producer and processes.
pub struct World {
    /// The configuration every process of the test runs with.
    pub config: Config,
    /// The test's queue.
    pub queue: String,
    /// Backends in the test process, to enqueue and to inspect.
    pub backends: Backends,
    /// A producer on those backends.
    pub producer: Producer,
    /// The worker and scheduler processes.
    pub procs: Processes,
    /// Where the test kinds record their effects.
    pub keys: Keys,
    redis: MultiplexedConnection,
}

impl World {
    /// A fresh namespace and queue on RabbitMQ and Redis, with `tweak` applied to a
    /// configuration of short timers; processes run `bin` (the `testfleet` binary).
    /// `tweak` may move the broker elsewhere (a `kafka://` URL); the RabbitMQ-only helpers
    /// ([`World::rabbit_messages`] and the like) then do not apply.
    /// Panics with how to start the services if either cannot be reached.
    pub async fn new(bin: &str, tweak: impl FnOnce(&mut Config)) -> Self {
        let queue = unique("q");
        let mut config = shared_config("crash");
        config.worker.queues = vec![queue.clone()];
        config.worker.grace_period = Duration::from_secs(1);
        config.worker.heartbeat = Duration::from_millis(500);
        config.worker.cancel_poll = Duration::from_millis(100);
        // A killed worker's jobs run elsewhere once their execution lease expires.
        config.worker.lease_ttl = Duration::from_secs(2);
        config.scheduler.tick = Duration::from_millis(50);
        config.queue_defaults.retry.base = Duration::from_millis(50);
        config.queue_defaults.retry.cap = Duration::from_millis(200);
        // JSON lines, so a test can count outcomes (`"outcome":"duplicate"`) in the logs.
        config.log.format = LogFormat::Json;
        config.log.level = "info,lapin=warn".into();
        tweak(&mut config);
        config.validate().expect("the test's config is valid");
        let backends = jobfleet_connect::connect(&config)
            .await
            .unwrap_or_else(|e| {
                panic!("{e}\nThe crash tests need their broker and Redis: {HOW_TO_START}")
            });
        let redis = async {
            let client = redis::Client::open(redis_url())?;
            client.get_multiplexed_async_connection().await
        };
        let redis = redis.await.unwrap_or_else(|e| {
            panic!("cannot reach Redis at {}: {e}\n{HOW_TO_START}", redis_url())
        });
        let producer = Producer::new(&backends, &config);
        let procs = Processes::new(bin, &config);
        let keys = Keys::new(&config.namespace);
        Self {
            config,
            queue,
            backends,
            producer,
            procs,
            keys,
            redis,
        }
    }

    /// Whether the broker is RabbitMQ (rather than Kafka).
    pub fn on_rabbitmq(&self) -> bool {
        matches!(self.config.broker, BrokerAddr::Amqp(_))
    }

    /// A connection to the test's Redis.
    pub fn redis(&self) -> MultiplexedConnection {
        self.redis.clone()
    }

    /// The jobs in one of the Redis store's delayed-set ZSETs (`keys::delayed_waiting`,
    /// `keys::delayed_releasing`), decoded from the members as the store keys them.
    pub async fn delayed_set(&self, key: &str) -> Vec<JobId> {
        let members: Vec<Vec<u8>> = self.redis().zrange(key, 0, -1).await.expect("redis");
        members
            .iter()
            .map(|m| jobfleet_connect::redis::keys::delayed_member_id(m).expect("a job id"))
            .collect()
    }

    /// Enqueues `jobs` in batches, returning their ids.
    pub async fn enqueue_all(&self, jobs: Vec<Job>) -> Vec<JobId> {
        let mut ids = Vec::with_capacity(jobs.len());
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            let batch: Vec<Job> = jobs.by_ref().take(ENQUEUE_BATCH).collect();
            let done = self.producer.enqueue_many(batch).await.expect("enqueued");
            ids.extend(done.into_iter().map(|e| e.id));
        }
        ids
    }

    /// How many distinct jobs recorded their effect.
    pub async fn effects(&self) -> u64 {
        self.redis()
            .scard(self.keys.effects())
            .await
            .expect("redis")
    }

    /// How many executions recorded an effect, re-runs included.
    pub async fn executions(&self) -> u64 {
        let n: Option<u64> = self
            .redis()
            .get(self.keys.executions())
            .await
            .expect("redis");
        n.unwrap_or(0)
    }

    /// Waits until `n` distinct effects are recorded, checking meanwhile that no process
    /// died by itself.
    pub async fn wait_effects(&mut self, n: u64, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            self.procs.assert_alive();
            let done = self.effects().await;
            if done >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {done} of {n} effects within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `ids` are all settled (see [`Audit::is_settled`]) and returns the audit;
    /// panics with the last audit if they are not within `within`.
    pub async fn wait_settled(&mut self, ids: &[JobId], within: Duration) -> Audit {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            self.procs.assert_alive();
            let audit = self.audit(ids).await;
            if audit.is_settled() {
                return audit;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not settled within {within:?}: {audit:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Where every job of `ids` and the test's routes and sets stand now.
    pub async fn audit(&self, ids: &[JobId]) -> Audit {
        let names: Vec<String> = ids.iter().map(JobId::to_string).collect();
        let member: Vec<bool> = redis::cmd("SMISMEMBER")
            .arg(self.keys.effects())
            .arg(&names)
            .query_async(&mut self.redis())
            .await
            .expect("redis");
        let store = &self.backends.store;
        let states: Vec<(JobId, bool, Option<JobState>)> = stream::iter(ids.iter().copied())
            .map(|id| async move {
                let done = store.is_completed(id).await.expect("store answers");
                let record = store.record(id).await.expect("store answers");
                (id, done, record.map(|r| r.state))
            })
            .buffered(AUDIT_CONCURRENCY)
            .collect()
            .await;
        let broker = &self.backends.broker;
        let routes = [
            Route::Ready(self.queue.clone()),
            Route::Delayed,
            Route::Failed,
            Route::Dead,
        ];
        let mut waiting = Vec::new();
        for route in routes {
            let depth = broker.depth(&route).await.expect("broker answers");
            waiting.push((route.to_string(), depth.map_or(0, |d| d.ready)));
        }
        let delayed = store.delayed_counts().await.expect("store answers");
        let dead = store.dead_counts().await.expect("store answers");
        Audit {
            jobs: ids.len(),
            effects: self.effects().await,
            executions: self.executions().await,
            missing_effects: ids
                .iter()
                .zip(member)
                .filter(|(_, m)| !m)
                .map(|(id, _)| *id)
                .collect(),
            missing_markers: states.iter().filter(|s| !s.1).map(|s| s.0).collect(),
            not_completed: states
                .iter()
                .filter(|s| s.2 != Some(JobState::Completed))
                .map(|s| (s.0, s.2))
                .collect(),
            route_messages: waiting,
            delayed_set: delayed.values().sum(),
            dead_letters: dead.values().sum(),
        }
    }

    /// Messages (ready plus unacknowledged) in every RabbitMQ queue of the namespace.
    pub async fn rabbit_messages(&self) -> Vec<(String, u64)> {
        let prefix = format!("{}.", self.config.namespace);
        blocking(move || rabbitmqctl::queue_messages(&prefix)).await
    }

    /// How many broker connections the test's processes and producer hold.
    pub async fn broker_connections(&self) -> usize {
        let name = format!("jobfleet/{}", self.config.namespace);
        blocking(move || rabbitmqctl::connections_named(&name).len()).await
    }

    /// Waits until the test's processes and producer hold at least `expected` broker
    /// connections (all are named `jobfleet/<namespace>`), then has RabbitMQ close every
    /// one of them, leaving other tests' connections alone, as
    /// `rabbitmqctl close_all_connections` would for the whole server. Returns how many
    /// it closed.
    pub async fn close_broker_connections(&self, expected: usize, within: Duration) -> usize {
        let name = format!("jobfleet/{}", self.config.namespace);
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let named = name.clone();
            let pids = blocking(move || rabbitmqctl::connections_named(&named)).await;
            if pids.len() >= expected {
                let closed = pids.len();
                blocking(move || rabbitmqctl::close_connections(&pids)).await;
                return closed;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {expected} broker connections named {name} within {within:?}",
                pids.len()
            );
        }
    }
}

/// Runs blocking `f` (a `rabbitmqctl` call, about a second) off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

impl Drop for World {
    fn drop(&mut self) {
        // Processes first, so none re-declares a queue the cleanup removed.
        self.procs.kill_all();
        let (config, queue) = (self.config.clone(), self.queue.clone());
        // Kafka topics stay: deleting one crashes librdkafka in clients still holding it
        // in their metadata (see `jobfleet_testkit::KafkaRedis::cleanup`).
        let rabbit = self.on_rabbitmq();
        // On a thread of its own: this also runs while a failed test unwinds.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if rabbit {
                        delete_routes(&config, &[queue]).await;
                    }
                    purge_store(&config).await;
                });
            }
        });
        let _ = cleanup.join();
    }
}
