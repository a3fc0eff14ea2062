//! A fleet on a 3-node RabbitMQ cluster of the test's own ([`RabbitCluster`]), while nodes
//! die: the `broker` URL list moves every connection to a live node, and with quorum
//! queues (`rabbitmq.queue_type = "quorum"`) no confirmed job is lost and none runs twice
//! at the same time.
//!
//! One cluster for the binary, one test in phases (each on a namespace of its own):
//!
//! 1. **Failover of the connection.** The queues are classic, declared on node 0; the
//!    fleet's list names nodes 1 and 2 only. The node the fleet is connected to is
//!    `kill -9`ed while jobs are enqueued: every connection moves to the other node (as
//!    the cluster and the worker's `/metrics`, `jobfleet_broker_connected`, both show),
//!    enqueuing resumes, every confirmed job completes once.
//! 2. **The queues' leader dies.** Quorum queues, the list names all three nodes; 16
//!    long jobs run while jobs are enqueued at a steady rate, and the node that leads
//!    most of the fleet's queues is `kill -9`ed. Every confirmed job completes once (one
//!    `completed` settlement per job; redeliveries are `duplicate`), no job's handler
//!    runs twice at the same time, and enqueuing resumes within 15 s.
//! 3. **Rolling restart.** Each node in turn is stopped and started again under load:
//!    nothing confirmed is lost.
//!
//! The shared RabbitMQ is left alone (the cluster is the test's own); the store is the
//! shared Redis, under fresh namespaces purged at the end. The figures (cluster start,
//! enqueue rate reached, how long enqueuing paused) are printed for the docs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobfleet_common::config::QueueType;
use jobfleet_common::telemetry::BROKER_CONNECTED;
use jobfleet_common::{BrokerAddr, Config, Job, JobId, StoreAddr};
use jobfleet_producer::Producer;
use jobfleet_testkit::{
    fast_config, free_addr, http_get, purge_store, redis_url, unique, Fleet, RabbitCluster,
};
use jobfleet_worker::{JobContext, JobError, Registry, Settlement};
use tokio::sync::watch;

/// The kind every job here is: it runs for the milliseconds its payload says.
const KIND: &str = "timed";
/// Jobs per enqueue call, and the pause between calls: a target of 1,000 jobs/s.
const BATCH: usize = 50;
const EVERY: Duration = Duration::from_millis(50);
/// Long jobs running while the leader dies, and how long each runs.
const LONG_JOBS: usize = 16;
const LONG_MS: u64 = 8_000;
/// How long enqueuing may pause when a node dies (the bound).
const RESUME_WITHIN: Duration = Duration::from_secs(15);
/// How long every confirmed job has to complete once the load stops.
const SETTLE_WITHIN: Duration = Duration::from_secs(60);

/// What the handler and the settled hook saw, per job.
#[derive(Default)]
struct Seen {
    running: HashMap<JobId, u32>,
    /// Jobs whose handler started while another run of the same job was running.
    overlapped: Vec<JobId>,
    runs: HashMap<JobId, u32>,
    completed: HashMap<JobId, u32>,
}

type Shared = Arc<Mutex<Seen>>;

fn seen(shared: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Ends a run in [`Seen`] when dropped, so a handler the worker stops still counts out.
struct Running(Shared, JobId);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(n) = seen(&self.0).running.get_mut(&self.1) {
            *n -= 1;
        }
    }
}

async fn timed(shared: Shared, ctx: JobContext) -> Result<(), JobError> {
    let ms: u64 = ctx.payload_json()?;
    let id = ctx.job().id;
    {
        let mut s = seen(&shared);
        let running = s.running.entry(id).or_default();
        *running += 1;
        if *running > 1 {
            s.overlapped.push(id);
        }
        *s.runs.entry(id).or_default() += 1;
    }
    let _running = Running(shared, id);
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(ms)) => Ok(()),
        () = ctx.cancelled().cancelled() => Err(JobError::retryable("stopped by the worker")),
    }
}

fn registry(shared: &Shared) -> Registry {
    let mut registry = Registry::new();
    let handler = shared.clone();
    registry.register_fn(KIND, move |ctx| timed(handler.clone(), ctx));
    let hook = shared.clone();
    registry.on_settled(move |job, outcome| {
        if outcome == Settlement::Completed {
            *seen(&hook).completed.entry(job.id).or_default() += 1;
        }
    });
    registry
}

fn job(queue: &str, ms: u64) -> Job {
    Job::new(
        queue,
        KIND,
        serde_json::to_vec(&ms).expect("a number serialises"),
    )
}

/// A configuration on `broker` and the shared Redis, under a fresh namespace, consuming
/// a fresh queue (returned beside it).
fn config(broker: &str, queue_type: QueueType) -> (Config, String) {
    let queue = unique("q");
    let mut config: Config = fast_config(&queue);
    config.broker = BrokerAddr::parse(broker).expect("the cluster's URL list");
    config.store = StoreAddr::parse(&redis_url()).expect("TEST_REDIS_URL");
    config.rabbitmq.queue_type = queue_type;
    // Room for the long jobs and the stream of quick ones.
    config.worker.concurrency = 64;
    config.validate().expect("a valid configuration");
    (config, queue)
}

/// A fleet (scheduler and worker) on `config`, and a producer on its backends.
async fn fleet(config: Config, shared: &Shared) -> (Fleet, Producer) {
    let backends = jobfleet_connect::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("the cluster at {} and Redis: {e}", config.broker));
    let producer = Producer::new(&backends, &config);
    let mut fleet = Fleet::new(config, backends);
    fleet.start_scheduler();
    fleet.start_worker(registry(shared));
    (fleet, producer)
}

/// What a load of enqueues saw.
#[derive(Debug, Default)]
struct Load {
    confirmed: Vec<JobId>,
    /// Enqueue calls that failed (their batch was enqueued again).
    errors: usize,
    first_error: Option<String>,
    /// The longest time between two enqueue calls that succeeded.
    longest_pause: Duration,
    elapsed: Duration,
}

/// Enqueues a batch of quick jobs every [`EVERY`] until `stop` turns true; a batch that
/// fails is enqueued again (same ids) until it is confirmed.
async fn load(producer: &Producer, queue: &str, mut stop: watch::Receiver<bool>) -> Load {
    let began = Instant::now();
    let mut seen = Load::default();
    let mut last_ok = Instant::now();
    // A call that takes longer than the period is followed by the next at once: the rate
    // is the target's or the most one publisher reaches.
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stop.borrow() {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => break,
        }
        let batch: Vec<Job> = (0..BATCH).map(|_| job(queue, 0)).collect();
        loop {
            match producer.enqueue_many(batch.clone()).await {
                Ok(done) => {
                    seen.confirmed.extend(done.iter().map(|e| e.id));
                    seen.longest_pause = seen.longest_pause.max(last_ok.elapsed());
                    last_ok = Instant::now();
                    break;
                }
                Err(e) => {
                    seen.errors += 1;
                    seen.first_error.get_or_insert_with(|| e.to_string());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    seen.elapsed = began.elapsed();
    seen
}

/// Waits until every job of `ids` completed, then checks each completed once and none
/// ran twice at the same time.
async fn assert_settled(shared: &Shared, ids: &[JobId], phase: &str) {
    let deadline = Instant::now() + SETTLE_WITHIN;
    loop {
        let missing = {
            let s = seen(shared);
            ids.iter()
                .filter(|id| !s.completed.contains_key(id))
                .count()
        };
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{phase}: {missing} of {} confirmed jobs not completed within {SETTLE_WITHIN:?}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = seen(shared);
    assert!(
        s.overlapped.is_empty(),
        "{phase}: ran twice at once: {:?}",
        s.overlapped
    );
    let twice: Vec<_> = ids.iter().filter(|id| s.completed[id] > 1).collect();
    assert!(
        twice.is_empty(),
        "{phase}: completed more than once: {twice:?}"
    );
    let reruns = ids
        .iter()
        .filter(|id| s.runs.get(id).copied().unwrap_or(0) > 1)
        .count();
    println!(
        "cluster_rabbitmq {phase}: {} jobs completed once each; {reruns} ran again (one \
         after the other)",
        ids.len()
    );
}

/// The node of `nodes` holding the most client connections, asked of `via`.
fn busiest(cluster: &RabbitCluster, via: usize, nodes: &[usize]) -> usize {
    let connections = cluster.connections(via);
    *nodes
        .iter()
        .max_by_key(|&&i| connections[i])
        .expect("some nodes")
}

/// Runs `during` (a blocking node operation) while `producer` enqueues: load for a
/// second, then `during`, then load for `after`. Also returns when `during` ended.
async fn under_load<F>(
    producer: &Producer,
    queue: &str,
    after: Duration,
    during: F,
) -> (Load, Instant)
where
    F: FnOnce() + Send + 'static,
{
    let (stop, stopped) = watch::channel(false);
    let operate = async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        tokio::task::spawn_blocking(during)
            .await
            .expect("the node operation");
        let done = Instant::now();
        tokio::time::sleep(after).await;
        let _ = stop.send(true);
        done
    };
    tokio::join!(load(producer, queue, stopped), operate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_on_a_rabbitmq_cluster_survives_its_nodes_dying() {
    let began = Instant::now();
    let cluster = Arc::new(Mutex::new(RabbitCluster::start(3)));
    println!(
        "cluster_rabbitmq: 3 nodes running in a cluster after {:?}",
        began.elapsed()
    );

    connection_failover(&cluster).await;
    leader_killed(&cluster).await;
    rolling_restart(&cluster).await;
    println!("cluster_rabbitmq: all phases in {:?}", began.elapsed());
}

fn lock(cluster: &Mutex<RabbitCluster>) -> std::sync::MutexGuard<'_, RabbitCluster> {
    cluster
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Phase 1 (see the module).
async fn connection_failover(cluster: &Arc<Mutex<RabbitCluster>>) {
    let (list, home) = {
        let c = lock(cluster);
        let list = format!("{},{}", c.node_url(1), c.node_url(2));
        (list, c.node_url(0))
    };
    let shared = Shared::default();
    // The classic queues live on the node they were declared on: node 0, which stays up.
    let (mut config, queue) = config(&home, QueueType::Classic);
    let declarer = jobfleet_connect::connect_broker(&config)
        .await
        .unwrap_or_else(|e| panic!("node 0 at {home}: {e}"));
    declarer
        .declare(std::slice::from_ref(&queue))
        .await
        .expect("declare on node 0");
    declarer.close().await;
    config.broker = BrokerAddr::parse(&list).expect("the list");
    let metrics = free_addr();
    config.worker.http = Some(metrics.clone());
    let (mut fleet, producer) = fleet(config, &shared).await;

    let connected = busiest(&lock(cluster), 0, &[1, 2]);
    let other = 3 - connected;
    let victim = cluster.clone();
    let (load, _) = under_load(&producer, &queue, Duration::from_secs(3), move || {
        lock(&victim).kill(connected)
    })
    .await;
    let after = lock(cluster).connections(0);
    println!(
        "cluster_rabbitmq failover: killed node {connected}; connections per node now {after:?}; \
         {} jobs confirmed in {:?}, {} failed calls (first: {:?}), enqueuing paused at most {:?}",
        load.confirmed.len(),
        load.elapsed,
        load.errors,
        load.first_error,
        load.longest_pause
    );
    assert!(
        after[other] > 0 && after[connected] == 0,
        "connections moved to node {other}: {after:?}"
    );
    let (_, scraped) = http_get(&metrics, "/metrics").await;
    let port = |i: usize| lock(cluster).nodes[i].port;
    let gauge =
        |i: usize, v: u8| format!("{BROKER_CONNECTED}{{node=\"127.0.0.1:{}\"}} {v}", port(i));
    assert!(
        scraped.contains(&gauge(other, 1)) && scraped.contains(&gauge(connected, 0)),
        "/metrics shows the node the worker moved to:\n{scraped}"
    );
    assert_settled(&shared, &load.confirmed, "failover").await;
    fleet.stop_roles().await;
    purge_store(&fleet.config).await;
    let restarted = Instant::now();
    lock(cluster).restart(connected);
    println!(
        "cluster_rabbitmq: a killed node is back in the cluster after {:?}",
        restarted.elapsed()
    );
}

/// Phase 2 (see the module).
async fn leader_killed(cluster: &Arc<Mutex<RabbitCluster>>) {
    let list = lock(cluster).url();
    let shared = Shared::default();
    let (config, queue) = config(&list, QueueType::Quorum);
    let (mut fleet, producer) = fleet(config, &shared).await;
    let long: Vec<Job> = (0..LONG_JOBS).map(|_| job(&queue, LONG_MS)).collect();
    let long: Vec<JobId> = producer
        .enqueue_many(long)
        .await
        .expect("enqueue the long jobs")
        .iter()
        .map(|e| e.id)
        .collect();
    let started = jobfleet_testkit::wait_for(Duration::from_secs(20), || {
        let running = long
            .iter()
            .filter(|id| seen(&shared).runs.contains_key(id))
            .count();
        async move { running == LONG_JOBS }
    })
    .await;
    assert!(started, "the {LONG_JOBS} long jobs did not all start");
    let leader = leader_of_namespace(&lock(cluster), &fleet.config.namespace);
    let victim = cluster.clone();
    let (load, killed_at) = under_load(&producer, &queue, Duration::from_secs(5), move || {
        lock(&victim).kill(leader)
    })
    .await;
    let rate = load.confirmed.len() as f64 / load.elapsed.as_secs_f64();
    println!(
        "cluster_rabbitmq leader: killed node {leader} (leads the most queues); {} jobs \
         confirmed in {:?} ({rate:.0}/s), {} failed calls (first: {:?}), enqueuing paused \
         at most {:?}",
        load.confirmed.len(),
        load.elapsed,
        load.errors,
        load.first_error,
        load.longest_pause
    );
    assert!(
        load.longest_pause < RESUME_WITHIN,
        "enqueuing paused {:?} after the leader died (bound {RESUME_WITHIN:?})",
        load.longest_pause
    );
    let mut ids = long;
    ids.extend(&load.confirmed);
    assert_settled(&shared, &ids, "leader").await;
    println!(
        "cluster_rabbitmq leader: all settled {:?} after the kill",
        killed_at.elapsed()
    );
    fleet.stop_roles().await;
    purge_store(&fleet.config).await;
    lock(cluster).restart(leader);
}

/// The node that leads most of `namespace`'s quorum queues.
fn leader_of_namespace(cluster: &RabbitCluster, namespace: &str) -> usize {
    let leaders = cluster.queue_leaders(0);
    let mut led = vec![0usize; cluster.nodes.len()];
    for (_, leader) in leaders.iter().filter(|(q, _)| q.starts_with(namespace)) {
        if let Some(i) = leader {
            led[*i] += 1;
        }
    }
    assert!(
        led.iter().any(|&n| n > 0),
        "no quorum queue of {namespace} has a leader: {leaders:?}"
    );
    (0..led.len()).max_by_key(|&i| led[i]).unwrap_or(0)
}

/// Phase 3 (see the module).
async fn rolling_restart(cluster: &Arc<Mutex<RabbitCluster>>) {
    let list = lock(cluster).url();
    let shared = Shared::default();
    let (config, queue) = config(&list, QueueType::Quorum);
    let (mut fleet, producer) = fleet(config, &shared).await;
    let mut ids = Vec::new();
    for node in 0..3 {
        let victim = cluster.clone();
        let (load, _) = under_load(&producer, &queue, Duration::from_secs(1), move || {
            let mut c = lock(&victim);
            c.stop(node);
            c.restart(node);
        })
        .await;
        println!(
            "cluster_rabbitmq rolling: node {node} restarted; {} jobs confirmed in {:?}, {} \
             failed calls, enqueuing paused at most {:?}",
            load.confirmed.len(),
            load.elapsed,
            load.errors,
            load.longest_pause
        );
        ids.extend(load.confirmed);
    }
    assert_settled(&shared, &ids, "rolling").await;
    fleet.stop_roles().await;
    purge_store(&fleet.config).await;
}
