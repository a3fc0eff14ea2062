//! Issue 26, Redis with replicas and Sentinel: a primary, two replicas and three sentinels
//! of the test's own ([`RedisSentinels`]), the store on a `redis+sentinel://` URL, the
//! broker the shared RabbitMQ. One cluster for the binary, used by one test in two phases:
//!
//! 1. `redis.min_replicas = 1`: the primary is `kill -9`ed while 2,000 delayed jobs wait,
//!    jobs run and a 1-second cron schedule fires. Every delayed job completes, no job runs
//!    twice at once, every cron instant ran once; the time from the kill to the promoted
//!    replica, to the store answering and to the fleet completing jobs again is printed.
//! 2. `redis.min_replicas = 0`: the last replica is cut off from the new primary (a wrong
//!    `masterauth` on it), delayed jobs are written, and the primary is killed: the writes
//!    are gone on the promoted replica, and the store's integrity check reports the loss
//!    (an incident naming the failover), never silently. A lease taken meanwhile is gone
//!    too, and its holder's next renewal is refused: what stops a running handler before
//!    a second execution could run long beside it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobfleet_common::clock;
use jobfleet_common::cron::{instant_job_id, ScheduleSpec};
use jobfleet_common::store::DelayedSet as _;
use jobfleet_common::store::{Admission, Executions as _, LeaseRequest};
use jobfleet_common::store::{Integrity, IntegrityCheck, ScheduledJob};
use jobfleet_common::{Job, JobId};
use jobfleet_connect::redis::RedisStore;
use jobfleet_producer::Producer;
use jobfleet_testkit::{amqp_url, delete_routes, fast_config, HOW_TO_START};
use jobfleet_testkit::{init_tracing, unique, wait_for, Fleet, RedisSentinels};
use jobfleet_worker::{JobContext, Registry};

/// Delayed jobs waiting when the primary dies.
const DELAYED: usize = 2_000;
/// How far ahead they are due: time to file them all and kill the primary first.
const DUE_IN: Duration = Duration::from_secs(10);
/// The cron schedule's name.
const CRON: &str = "every-second";

/// What the handlers saw: runs per job id, and runs that began while the same job ran.
#[derive(Default)]
struct Runs {
    running: Mutex<HashSet<JobId>>,
    counts: Mutex<HashMap<JobId, u32>>,
    overlapping: AtomicUsize,
    /// Milliseconds since `epoch` of the last handler that finished.
    last_done_ms: AtomicU64,
}

impl Runs {
    async fn run(&self, id: JobId, epoch: Instant, work: Duration) {
        if !lock(&self.running).insert(id) {
            self.overlapping.fetch_add(1, Ordering::SeqCst);
        }
        *lock(&self.counts).entry(id).or_insert(0) += 1;
        tokio::time::sleep(work).await;
        lock(&self.running).remove(&id);
        let ms = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_done_ms.fetch_max(ms, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn registry(runs: &Arc<Runs>, epoch: Instant) -> Registry {
    let mut registry = Registry::new();
    for (kind, work) in [
        ("tick", Duration::from_millis(5)),
        ("work", Duration::from_millis(400)),
    ] {
        let runs = runs.clone();
        registry.register_fn(kind, move |ctx: JobContext| {
            let runs = runs.clone();
            async move {
                runs.run(ctx.job().id, epoch, work).await;
                Ok(())
            }
        });
    }
    registry
}

/// Retries `call` until it succeeds (the store answers again after a failover).
async fn until_ok<T, F, Fut>(what: &str, within: Duration, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, jobfleet_common::store::StoreError>>,
{
    let begun = Instant::now();
    loop {
        match call().await {
            Ok(v) => return v,
            Err(e) if begun.elapsed() > within => panic!("{what}: still failing: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_under_load_loses_nothing_acknowledged_and_a_lossy_failover_is_reported() {
    init_tracing();
    let cluster = tokio::task::spawn_blocking(RedisSentinels::start)
        .await
        .expect("start the cluster");
    println!(
        "cluster_redis_sentinel: primary + 2 replicas + 3 sentinels started in {:?}",
        cluster.started_in
    );
    let cluster = phase_one_loses_nothing(cluster).await;
    drop(phase_two_reports_the_loss(cluster).await);
}

/// Phase 1: `redis.min_replicas = 1`, the primary killed under load.
async fn phase_one_loses_nothing(mut cluster: RedisSentinels) -> RedisSentinels {
    let queue = unique("q");
    let mut config = fast_config(&queue);
    config.namespace = unique("sentinel");
    config.broker = amqp_url().parse().expect("an AMQP URL");
    config.store = cluster.url().parse().expect("a sentinel URL");
    config.redis.require_persistence = true;
    config.redis.min_replicas = 1;
    config.worker.concurrency = 16;
    config.schedules.insert(
        CRON.into(),
        ScheduleSpec::new("* * * * * *", &queue, "tick"),
    );
    config.validate().expect("valid test config");
    let backends = jobfleet_connect::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}\nThis test needs RabbitMQ: {HOW_TO_START}"));
    let epoch = Instant::now();
    let runs = Arc::new(Runs::default());
    let mut fleet = Fleet::new(config.clone(), backends.clone());
    fleet.start_scheduler();
    fleet.start_worker(registry(&runs, epoch));

    let producer = Producer::new(&backends, &config);
    let due = producer.now_ms() + i64::try_from(DUE_IN.as_millis()).unwrap_or(i64::MAX);
    let mut delayed: Vec<JobId> = Vec::with_capacity(DELAYED);
    let jobs: Vec<Job> = (0..DELAYED)
        .map(|_| Job::new(&queue, "tick", "{}").with_run_at_ms(due))
        .collect();
    for batch in jobs.chunks(200) {
        let done = producer
            .enqueue_many(batch.to_vec())
            .await
            .expect("enqueued");
        delayed.extend(done.iter().map(|e| e.id));
    }
    let store = backends.store.clone();
    let filed = wait_for(Duration::from_secs(8), || async {
        let counts = store.delayed_counts().await.unwrap_or_default();
        counts.get(&queue).copied() == Some(DELAYED as u64)
    })
    .await;
    assert!(
        filed,
        "the scheduler filed all {DELAYED} jobs in the delayed set"
    );

    // Jobs running while the primary dies: a feeder enqueues 400 ms jobs throughout.
    let stop_feeding = tokio_util::sync::CancellationToken::new();
    let feeder = {
        let (producer, queue, stop) = (
            Producer::new(&backends, &config),
            queue.clone(),
            stop_feeding.clone(),
        );
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            while !stop.is_cancelled() {
                let batch: Vec<Job> = (0..8).map(|_| Job::new(&queue, "work", "{}")).collect();
                if let Ok(done) = producer.enqueue_many(batch).await {
                    accepted.extend(done.iter().map(|e| e.id));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            accepted
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        producer.now_ms() < due - 3_000,
        "the kill comes well before the due time"
    );

    let killed_at = Instant::now();
    let old = cluster.kill_primary();
    let (cluster, (new, promoted_in)) = tokio::task::spawn_blocking(move || {
        let found = cluster.wait_for_new_primary(old, Duration::from_secs(30));
        (cluster, found)
    })
    .await
    .expect("wait for the promotion");
    until_ok(
        "the store after the failover",
        Duration::from_secs(30),
        || store.store_time_ms(),
    )
    .await;
    let answering_in = killed_at.elapsed();
    let kill_ms = u64::try_from(killed_at.duration_since(epoch).as_millis()).unwrap_or(0);
    let resumed = wait_for(Duration::from_secs(30), || async {
        runs.last_done_ms.load(Ordering::SeqCst) > kill_ms + answering_in.as_millis() as u64
    })
    .await;
    assert!(resumed, "jobs complete again after the failover");
    let running_in = Duration::from_millis(runs.last_done_ms.load(Ordering::SeqCst) - kill_ms);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_feeding.cancel();
    let fed = feeder.await.expect("feeder");

    let everything = delayed.iter().chain(&fed).copied().collect::<Vec<_>>();
    let all_done = wait_for(Duration::from_secs(60), || async {
        for id in &everything {
            if !store.is_completed(*id).await.unwrap_or(false) {
                return false;
            }
        }
        true
    })
    .await;
    let mut lost = 0;
    for id in &delayed {
        if !store.is_completed(*id).await.unwrap_or(false) {
            lost += 1;
        }
    }
    let schedule = store
        .schedule_get(CRON)
        .await
        .expect("store")
        .expect("the schedule exists");
    let instants = cron_instants(&schedule);
    let cron_runs: Vec<u32> = {
        let counts = lock(&runs.counts);
        instants
            .iter()
            .map(|i| counts.get(&instant_job_id(CRON, *i)).copied().unwrap_or(0))
            .collect()
    };
    println!(
        "cluster_redis_sentinel (min_replicas = 1): primary on port {old} killed -9, \
         replica on port {new} promoted in {promoted_in:?}; store answering after \
         {answering_in:?}; a job completed again {running_in:?} after the kill; \
         {DELAYED} delayed jobs, {lost} lost; {} running jobs fed; {} cron instants, runs \
         per instant {:?}; overlapping runs {}",
        fed.len(),
        instants.len(),
        cron_runs.iter().copied().fold(HashMap::new(), |mut m, n| {
            *m.entry(n).or_insert(0) += 1;
            m
        }),
        runs.overlapping.load(Ordering::SeqCst)
    );
    assert_eq!(
        lost, 0,
        "no delayed job is lost with redis.min_replicas = 1"
    );
    assert!(all_done, "every delayed and fed job completed");
    assert_eq!(
        runs.overlapping.load(Ordering::SeqCst),
        0,
        "no job ran twice at once"
    );
    assert!(
        instants.len() >= 5,
        "the schedule fired across the failover"
    );
    assert!(
        cron_runs.iter().all(|n| *n <= 1),
        "no cron instant ran twice: {cron_runs:?}"
    );
    assert_eq!(
        schedule.state.fires,
        instants.len() as u64,
        "the store counted one fire per instant"
    );

    fleet.stop_roles().await;
    delete_routes(&config, std::slice::from_ref(&queue)).await;
    cluster
}

/// Every instant of an every-second schedule from its creation to its last fire.
fn cron_instants(s: &jobfleet_common::store::StoredSchedule) -> Vec<i64> {
    let first = (s.state.created_at_ms / 1000 + 1) * 1000;
    let last = s.state.last_instant_ms.unwrap_or(first - 1000);
    (first..=last).step_by(1000).collect()
}

/// Phase 2: `redis.min_replicas = 0`, the last replica cut off before the primary dies.
async fn phase_two_reports_the_loss(cluster: RedisSentinels) -> RedisSentinels {
    let settings = jobfleet_common::config::RedisConfig::default();
    assert_eq!(settings.min_replicas, 0);
    let namespace = unique("lossy");
    let store = RedisStore::connect(&cluster.url(), &namespace, &settings, clock::system())
        .await
        .expect("connect through the sentinels");
    // Connected while a replica is: it refuses to start without one.
    let waiting = RedisStore::connect(
        &cluster.url(),
        &namespace,
        &jobfleet_common::config::RedisConfig {
            min_replicas: 1,
            replica_timeout: Duration::from_millis(300),
            ..settings.clone()
        },
        clock::system(),
    )
    .await
    .expect("connect with min_replicas = 1");
    let primary = cluster.primary_port().expect("a primary");
    let replica = *cluster
        .others(primary)
        .iter()
        .find(|p| std::net::TcpStream::connect(("127.0.0.1", **p)).is_ok())
        .expect("a live replica");
    // Cut the replica off: it reconnects, fails to authenticate, and stays behind.
    let _: () = cluster.on_node(
        replica,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("masterauth")
            .arg("bogus"),
    );
    let _: u64 = cluster.on_node(
        replica,
        redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("master"),
    );
    let cut = wait_for(Duration::from_secs(5), || async {
        let info: String = cluster.on_node(replica, redis::cmd("INFO").arg("replication"));
        info.contains("master_link_status:down")
    })
    .await;
    assert!(cut, "the replica's link to the primary is down");

    let refused = waiting
        .schedule(vec![ScheduledJob {
            id: JobId::new(),
            queue: "waited".into(),
            due_ms: clock::system().now_ms() + 3_600_000,
            body: b"{}".to_vec().into(),
        }])
        .await
        .expect_err("no replica acknowledges it");
    assert!(refused.is_retryable(), "{refused}");
    assert!(
        refused
            .to_string()
            .contains("`redis.min_replicas` asks for 1"),
        "{refused}"
    );
    let due = clock::system().now_ms() + 3_600_000;
    let jobs: Vec<ScheduledJob> = (0..50)
        .map(|_| ScheduledJob {
            id: JobId::new(),
            queue: "lossy".into(),
            due_ms: due,
            body: b"{}".to_vec().into(),
        })
        .collect();
    store.schedule(jobs).await.expect("written on the primary");
    let written = store.delayed_counts().await.expect("counts");
    assert_eq!(written.get("lossy"), Some(&50));
    // A lease taken now is lost with the primary: the running execution's next renewal
    // must be refused on the new primary, which is what stops its handler.
    let leased = JobId::new();
    let first = LeaseRequest {
        holder: "first-execution".into(),
        ttl_ms: 30_000,
        max_crashes: 3,
    };
    let taken = store.admit(leased, None, &first).await.expect("admit");
    assert!(matches!(taken, Admission::Clear { .. }), "{taken:?}");
    assert!(store
        .lease_renew(leased, &first.holder, 30_000)
        .await
        .expect("renew"));

    let mut cluster = cluster;
    cluster.node(primary).kill();
    let _: () = cluster.on_node(
        replica,
        redis::cmd("CONFIG").arg("SET").arg("masterauth").arg(""),
    );
    let (cluster, (promoted, _)) = tokio::task::spawn_blocking(move || {
        let found = cluster.wait_for_new_primary(primary, Duration::from_secs(30));
        (cluster, found)
    })
    .await
    .expect("wait for the promotion");
    assert_eq!(promoted, replica);
    let after = until_ok(
        "the store after the failover",
        Duration::from_secs(30),
        || store.delayed_counts(),
    )
    .await;
    assert_eq!(
        after.get("lossy"),
        None,
        "the failover lost the 50 delayed jobs"
    );
    let renewed = until_ok("a renewal", Duration::from_secs(10), || {
        store.lease_renew(leased, &first.holder, 30_000)
    })
    .await;
    assert!(
        !renewed,
        "the renewal of a lease the failover lost is refused, stopping the first execution"
    );
    let check = until_ok("the integrity check", Duration::from_secs(10), || {
        store.check_integrity("cluster_redis_sentinel")
    })
    .await;
    let IntegrityCheck::DataLost(incident) = check else {
        panic!("a failover that lost writes is reported, not {check:?}");
    };
    assert!(
        incident.lost.contains("failover lost writes"),
        "{}",
        incident.lost
    );
    let open = store.data_loss_incident().await.expect("read");
    assert_eq!(
        open.as_ref(),
        Some(&incident),
        "the incident is recorded for /readyz"
    );
    println!(
        "cluster_redis_sentinel (min_replicas = 0): reported: {}",
        incident.lost
    );
    let _ = store.clear_data_loss().await;
    cluster
}
