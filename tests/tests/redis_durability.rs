//! Redis durability, end to end: a Redis with an append-only file fsynced on every write
//! (`appendfsync always`) is `kill -9`ed while 500 delayed jobs wait in it and restarted
//! on the same directory and port; the scheduler and worker (in-process, on RabbitMQ and
//! that Redis) carry on and every job completes: none is lost. The server is the test's
//! own (`redis-server` must be installed), never the shared one.
//!
//! Also on servers of its own: a managed-style Redis with CONFIG disabled is judged by
//! `INFO persistence` alone, and a restart of a volatile Redis is detected as data loss.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::clock;
use jobfleet_common::config::RedisConfig;
use jobfleet_common::store::{Integrity, IntegrityCheck};
use jobfleet_common::{Config, Job, JobId};
use jobfleet_connect::redis::{RedisConnectError, RedisStore};
use jobfleet_producer::Producer;
use jobfleet_testkit::{amqp_url, delete_routes, HOW_TO_START};
use jobfleet_testkit::{init_tracing, unique, wait_for, Fleet};
use jobfleet_testkit::{RedisServer, VOLATILE};
use jobfleet_worker::{JobContext, Registry};

/// Delayed jobs waiting in Redis when it is killed.
const JOBS: usize = 500;
/// How far in the future they are due: long enough to file them all and kill Redis first.
const DUE_IN: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_jobs_survive_a_kill_9_of_a_redis_with_aof_always() {
    init_tracing();
    let mut redis = RedisServer::start(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
    ]);
    let queue = unique("q");
    let mut config = Config {
        namespace: unique("durable"),
        broker: amqp_url().parse().expect("an AMQP URL"),
        store: redis.url().parse().expect("a Redis URL"),
        ..Config::default()
    };
    // Left at its default on purpose: `redis.require_persistence = true` accepts this server.
    assert!(config.redis.require_persistence);
    config.worker.queues = vec![queue.clone()];
    config.worker.concurrency = 16;
    config.worker.heartbeat = Duration::from_millis(200);
    config.scheduler.tick = Duration::from_millis(20);
    config.validate().expect("valid test config");
    let backends = jobfleet_connect::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}\nThis test needs RabbitMQ: {HOW_TO_START}"));

    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    let r = runs.clone();
    registry.register_fn("tick", move |_ctx: JobContext| {
        let r = r.clone();
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let mut fleet = Fleet::new(config.clone(), backends.clone());
    fleet.start_scheduler();
    fleet.start_worker(registry);

    let producer = Producer::new(&backends, &config);
    let due = producer.now_ms() + i64::try_from(DUE_IN.as_millis()).unwrap_or(i64::MAX);
    let jobs: Vec<Job> = (0..JOBS)
        .map(|_| Job::new(&queue, "tick", "{}").with_run_at_ms(due))
        .collect();
    let mut ids: Vec<JobId> = Vec::with_capacity(JOBS);
    for batch in jobs.chunks(100) {
        let done = producer
            .enqueue_many(batch.to_vec())
            .await
            .expect("enqueued");
        ids.extend(done.iter().map(|e| e.id));
    }
    let store = backends.store.clone();
    let filed = wait_for(Duration::from_secs(5), || async {
        let counts = store.delayed_counts().await.unwrap_or_default();
        counts.get(&queue).copied() == Some(JOBS as u64)
    })
    .await;
    assert!(
        filed,
        "the scheduler filed all {JOBS} jobs in the delayed set"
    );
    assert!(
        producer.now_ms() < due - 1_000,
        "filed well before the due time"
    );

    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart();
    let after_restart = store.delayed_counts().await;
    assert!(
        producer.now_ms() < due,
        "the restart came before the due time"
    );

    let all_done = wait_for(Duration::from_secs(60), || async {
        let mut done = 0;
        for id in &ids {
            if store.is_completed(*id).await.unwrap_or(false) {
                done += 1;
            }
        }
        done == JOBS
    })
    .await;
    let mut lost = 0;
    for id in &ids {
        if !store.is_completed(*id).await.unwrap_or(false) {
            lost += 1;
        }
    }
    println!(
        "redis_durability: {JOBS} delayed jobs, Redis (appendfsync always) killed -9 and \
         restarted; delayed counts right after the restart: {after_restart:?}; completed \
         {}, lost {lost}, handler runs {}",
        JOBS - lost,
        runs.load(Ordering::SeqCst)
    );
    let integrity = store.check_integrity("redis_durability test").await;
    let incident = store.data_loss_incident().await;

    // Fails the test unless the scheduler and the worker stop cleanly within 20 s.
    fleet.stop_roles().await;
    delete_routes(&config, std::slice::from_ref(&queue)).await;
    drop(redis);

    assert!(
        all_done && lost == 0,
        "{lost} of {JOBS} delayed jobs lost across the Redis kill"
    );
    assert!(runs.load(Ordering::SeqCst) >= JOBS, "every job ran");
    assert_eq!(
        integrity.ok(),
        Some(IntegrityCheck::Intact),
        "AOF kept the sentinel"
    );
    assert_eq!(
        incident.ok(),
        Some(None),
        "no data-loss incident on a durable Redis"
    );
}

/// A store on the test's own server under a fresh namespace.
async fn connect(
    server: &RedisServer,
    settings: &RedisConfig,
) -> Result<RedisStore, RedisConnectError> {
    RedisStore::connect(&server.url(), &unique("durable"), settings, clock::system()).await
}

#[tokio::test]
async fn managed_redis_without_config_is_judged_by_info_alone() {
    // Managed services rename or disable CONFIG; INFO persistence still answers.
    let aof = RedisServer::start(&["--appendonly", "yes", "--rename-command", "CONFIG", ""]);
    connect(&aof, &RedisConfig::default())
        .await
        .expect("AOF on (from INFO) is accepted though CONFIG is unavailable");
    let volatile = RedisServer::start(&["--appendonly", "no", "--rename-command", "CONFIG", ""]);
    let err = connect(&volatile, &RedisConfig::default())
        .await
        .expect_err("no AOF is refused");
    let text = err.to_string();
    assert!(matches!(err, RedisConnectError::NotDurable(_)), "{text}");
    assert!(text.contains("unknown (CONFIG unavailable)"), "{text}");
    assert!(text.contains("redis.require_persistence"), "{text}");
}

#[tokio::test]
async fn a_restart_of_a_volatile_redis_is_detected_as_data_loss() {
    let mut server = RedisServer::start(VOLATILE);
    let accept = RedisConfig {
        require_persistence: false,
        ..RedisConfig::default()
    };
    let store = connect(&server, &accept)
        .await
        .expect("accepted with the opt-out");
    assert_eq!(
        store.check_integrity("test").await.expect("check"),
        IntegrityCheck::Intact
    );
    server.kill();
    server.restart();
    // The connection manager reconnects on the call after the one that failed.
    let mut found = store.check_integrity("test").await;
    for _ in 0..20 {
        if found.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        found = store.check_integrity("test").await;
    }
    let IntegrityCheck::DataLost(incident) = found.expect("check after the restart") else {
        panic!("the emptied server is detected");
    };
    assert!(incident.lost.contains("vanished"), "{}", incident.lost);
    assert_eq!(
        store.data_loss_incident().await.expect("read"),
        Some(incident),
        "recorded in the restarted server"
    );
    assert_eq!(
        store.check_integrity("test").await.expect("check"),
        IntegrityCheck::Intact,
        "re-armed: one restart, one detection"
    );
}
