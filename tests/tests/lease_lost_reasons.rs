//! What a job's error says when its worker loses the execution lease mid-run, for each
//! way it can be lost, on a Redis of the test's own (volatile, so a restart empties it)
//! and the test RabbitMQ, with a worker and (where the record must be written after the
//! loss) a scheduler in-process:
//!
//! - Redis restarted without persistence: the lease key went with the data, and the
//!   error says the store lost its data, naming the data-loss incident (whoever detected
//!   it first; with no other role looking, the watchdog's own check does);
//! - the lease key deleted behind the worker's back (no data loss detected): the store
//!   refused the renewal;
//! - Redis down past `worker.lease_ttl`: no renewal reached the store.
//!
//! None of these is "the worker stalled", which the error used to offer beside "store
//! unreachable" for all three.

use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::broker::Route;
use jobfleet_common::store::JobState;
use jobfleet_common::{Backends, Config, ErrorKind, ErrorRecord, Job, JobId};
use jobfleet_producer::Producer;
use jobfleet_testkit::RedisServer;
use jobfleet_testkit::{amqp_url, delete_routes, HOW_TO_START};
use jobfleet_testkit::{fast_config, init_tracing, recv_job, unique, wait_for, wait_state, Fleet};
use jobfleet_worker::Registry;
use redis::AsyncCommands;

/// How long the worker may take to notice and the scheduler to record.
const WITHIN: Duration = Duration::from_secs(20);
/// A heartbeat (and integrity check) every 2 s.
const BEATS: Duration = Duration::from_secs(2);
/// A heartbeat slower than the test: only the lease watchdog can notice a loss.
const NO_BEAT: Duration = Duration::from_secs(600);

/// A worker (and a scheduler if asked) in this process on `server` and the test RabbitMQ.
struct Setup {
    config: Arc<Config>,
    backends: Backends,
    queue: String,
    fleet: Fleet,
}

impl Setup {
    /// `heartbeat`: how often the worker beats, and checks the store's integrity with it.
    async fn start(server: &RedisServer, scheduler: bool, heartbeat: Duration) -> Self {
        init_tracing();
        let queue = unique("q");
        let mut config = fast_config(&queue);
        config.broker = amqp_url().parse().expect("an AMQP URL");
        config.store = server.url().parse().expect("a Redis URL");
        config.worker.heartbeat = heartbeat;
        config.validate().expect("valid test config");
        let config = Arc::new(config);
        let backends = jobfleet_connect::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("{e}\nThis test needs RabbitMQ: {HOW_TO_START}"));
        let mut fleet = Fleet::new(config.as_ref().clone(), backends.clone());
        if scheduler {
            fleet.start_scheduler();
        }
        fleet.start_worker(Registry::with_builtins());
        Self {
            config,
            backends,
            queue,
            fleet,
        }
    }

    /// Enqueues a one-attempt job that sleeps a minute and waits until it runs.
    async fn running_job(&self) -> JobId {
        let producer = Producer::new(&self.backends, &self.config);
        let job = Job::new(&self.queue, "sleep", r#"{"ms": 60000}"#).with_max_attempts(1);
        let id = producer.enqueue(job).await.expect("enqueued").id;
        let store = self.backends.store.as_ref();
        wait_state(store, id, JobState::Running, WITHIN, "redis").await;
        id
    }

    async fn stop(mut self) {
        // Fails the test unless every role stops cleanly within 20 s.
        self.fleet.stop_roles().await;
        delete_routes(&self.config, std::slice::from_ref(&self.queue)).await;
    }
}

/// The error the job's record keeps once the scheduler has filed it dead. The store may
/// refuse a call or two while it reconnects after a restart.
async fn recorded_error(setup: &Setup, id: JobId) -> ErrorRecord {
    let store = setup.backends.store.clone();
    let deadline = tokio::time::Instant::now() + WITHIN;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        match store.record(id).await {
            Ok(Some(record)) if record.state == JobState::Dead => {
                return record
                    .last_error
                    .expect("the dead record keeps the attempt's error");
            }
            seen => last = Some(seen),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} not dead within {WITHIN:?}: last seen {last:?}");
}

/// Kills the store under the running job `id`, restarting it at once (`restart_at_once`)
/// or only once the attempt has failed, and returns the attempt's error as the worker
/// published it to the failed route (a store that is down cannot have recorded it).
async fn kill_store_and_read_the_failure(
    setup: &Setup,
    server: &mut RedisServer,
    id: JobId,
    restart_at_once: bool,
) -> ErrorRecord {
    let mut failed = setup
        .backends
        .broker
        .consume(&Route::Failed, 10)
        .await
        .expect("consume the failed route");
    server.kill();
    if restart_at_once {
        server.restart();
    }
    let job = recv_job(&mut failed, WITHIN)
        .await
        .expect("the attempt fails and is published to the failed route");
    if !restart_at_once {
        server.restart();
    }
    assert_eq!(job.id, id);
    job.errors.last().cloned().expect("the attempt's error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_lost_to_a_restart_without_persistence_says_the_store_lost_its_data() {
    let mut server = RedisServer::volatile();
    let setup = Setup::start(&server, true, BEATS).await;
    let id = setup.running_job().await;

    server.kill();
    server.restart();

    let error = recorded_error(&setup, id).await;
    assert_eq!(error.kind, ErrorKind::LockLost);
    let expected = "execution lease lost mid-run: the lease key is gone because the store \
                    lost its data (data-loss incident detected at ";
    assert!(error.message.starts_with(expected), "{}", error.message);
    let incident = setup
        .backends
        .store
        .data_loss_incident()
        .await
        .expect("store answers")
        .expect("the loss is recorded");
    assert!(
        error
            .message
            .ends_with(&format!("by {})", incident.detected_by)),
        "names who detected it ({}): {}",
        incident.detected_by,
        error.message
    );
    setup.stop().await;
}

/// With nothing else checking the store (no scheduler, no heartbeat due), the refusal
/// itself is what detects the loss: the watchdog runs the integrity check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_watchdog_itself_detects_the_data_loss_behind_a_refusal() {
    let mut server = RedisServer::volatile();
    let setup = Setup::start(&server, false, NO_BEAT).await;
    let id = setup.running_job().await;
    let error = kill_store_and_read_the_failure(&setup, &mut server, id, true).await;
    assert_eq!(error.kind, ErrorKind::LockLost);
    let expected = "execution lease lost mid-run: the lease key is gone because the store \
                    lost its data (data-loss incident detected at ";
    assert!(error.message.starts_with(expected), "{}", error.message);
    assert!(error.message.contains(" by worker "), "{}", error.message);
    let incident = setup
        .backends
        .store
        .data_loss_incident()
        .await
        .expect("store answers")
        .expect("the watchdog recorded the loss");
    assert!(incident.detected_by.starts_with("worker "), "{incident:?}");
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_key_removed_behind_the_workers_back_is_a_refusal() {
    let server = RedisServer::volatile();
    let setup = Setup::start(&server, true, BEATS).await;
    let id = setup.running_job().await;

    let client = redis::Client::open(server.url()).expect("a Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("the test's Redis");
    let key = jobfleet_connect::redis::keys::lease(&setup.config.namespace, id);
    let removed: u64 = conn.del(&key).await.expect("DEL");
    assert_eq!(removed, 1, "{key} existed while the job ran");

    let error = recorded_error(&setup, id).await;
    assert_eq!(error.kind, ErrorKind::LockLost);
    assert_eq!(
        error.message,
        "execution lease lost mid-run: the store refused its renewal: the lease key is gone \
         or another holder has it"
    );
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_lost_to_an_unreachable_store_says_no_renewal_reached_it() {
    let mut server = RedisServer::volatile();
    // No scheduler: with the store down nothing could record the failure, so the check
    // reads the failed job the worker publishes to the broker.
    let setup = Setup::start(&server, false, BEATS).await;
    let id = setup.running_job().await;
    let error = kill_store_and_read_the_failure(&setup, &mut server, id, false).await;
    assert_eq!(error.kind, ErrorKind::LockLost);
    // The renewals failed (the last error is named), or the last one was still waiting
    // on a reconnect at the deadline.
    let text = error.message.as_str();
    let failing = "execution lease lost mid-run: no renewal reached the store within \
                   worker.lease_ttl (3s): store connection: ";
    let silent = "execution lease lost mid-run: the store did not answer a renewal within \
                  worker.lease_ttl (3s)";
    assert!(text.starts_with(failing) || text == silent, "{text}");
    let store = setup.backends.store.clone();
    let answers = wait_for(WITHIN, || async { store.record(id).await.is_ok() }).await;
    assert!(answers, "the restarted store answers again");
    setup.stop().await;
}
