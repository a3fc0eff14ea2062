//! Redis durability as operators meet it: `jobfleet` refuses a volatile Redis (one of the
//! test's own, started with no persistence) unless told to accept it, and, on the shared
//! test Redis and RabbitMQ, a loss of the store's data while a scheduler runs (the
//! namespace's sentinel deleted, as a restart without persistence or a `FLUSHDB` would)
//! is detected: the incident record is written, the loss counted, `/readyz` answers 503,
//! `jobfleet queues` warns, and `jobfleet queues --ack-data-loss` clears it.

use jobfleet_connect::redis::keys;
use jobfleet_testkit::http_get;
use jobfleet_testkit::RedisServer;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobfleet_common::Config;
use jobfleet_scheduler::SchedulerError;
use redis::AsyncCommands;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use jobfleet_testkit::{amqp_url, redis_url, shared_config, unique_namespace, HOW_TO_START};

fn namespace() -> String {
    unique_namespace("dataloss")
}

/// `jobfleet <args>` on the test services under `namespace`; `accept_volatile` sets
/// JOBFLEET_REDIS__REQUIRE_PERSISTENCE=false.
fn jobfleet(namespace: &str, accept_volatile: bool, args: &[&str]) -> Output {
    command(namespace, accept_volatile, args)
        .output()
        .expect("run jobfleet")
}

/// The command [`jobfleet`] runs, for a test to change before running it.
fn command(namespace: &str, accept_volatile: bool, args: &[&str]) -> Command {
    let mut cmd = support::jobfleet_on(namespace, args);
    if !accept_volatile {
        cmd.env_remove("JOBFLEET_REDIS__REQUIRE_PERSISTENCE");
    }
    cmd
}

mod support;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn redis() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis_url()).expect("a Redis URL");
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis at {} is unreachable ({e}): {HOW_TO_START}",
                redis_url()
            )
        })
}

/// Deletes the namespace's keys and the queues the scheduler and `queues` declared.
async fn cleanup(namespace: &str) {
    let mut conn = redis().await;
    let keys: Vec<String> = conn
        .keys(format!("{namespace}:*"))
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = conn.del(keys).await;
    }
    cleanup_amqp(namespace).await;
}

/// Deletes the queues the scheduler and `queues` declared under `namespace`.
async fn cleanup_amqp(namespace: &str) {
    let props = lapin::ConnectionProperties::default();
    if let Ok(amqp) = lapin::Connection::connect(&amqp_url(), props).await {
        if let Ok(channel) = amqp.create_channel().await {
            for route in ["delayed", "failed", "dead", "q.default"] {
                let name = format!("{namespace}.{route}");
                let _ = channel
                    .queue_delete(name.as_str().into(), Default::default())
                    .await;
            }
        }
        let _ = amqp.close(200, "cleanup".into()).await;
    }
}

/// A scheduler on `config` serving HTTP on a free port: the address, the token that
/// stops it, and its task.
async fn start_scheduler(
    mut config: Config,
) -> (
    String,
    CancellationToken,
    JoinHandle<Result<(), SchedulerError>>,
) {
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").to_string()
    };
    config.scheduler.http = Some(addr.clone());
    config.validate().expect("valid test config");
    let backends = jobfleet_connect::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{HOW_TO_START}"));
    let shutdown = CancellationToken::new();
    let scheduler = tokio::spawn(jobfleet_scheduler::run(
        Arc::new(config),
        backends,
        shutdown.clone(),
    ));
    (addr, shutdown, scheduler)
}

#[test]
fn a_volatile_redis_is_refused_for_writes_and_shown_with_a_warning_to_readers() {
    let ns = namespace();
    // A server of the test's own: the shared test Redis may keep an append-only file.
    let server = RedisServer::volatile();
    let on_volatile = |accept_volatile: bool, args: &[&str]| {
        command(&ns, accept_volatile, args)
            .env("JOBFLEET_STORE", server.url())
            .output()
            .expect("run jobfleet")
    };
    // A command that writes is refused, naming the key and both fixes.
    let refused = on_volatile(
        false,
        &[
            "enqueue",
            "--queue",
            "default",
            "--kind",
            "noop",
            "--payload",
            "{}",
        ],
    );
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "stderr:\n{stderr}");
    for needle in [
        "config key `redis.require_persistence`",
        "appendonly yes",
        "redis.require_persistence = false",
    ] {
        assert!(stderr.contains(needle), "{needle:?} in:\n{stderr}");
    }
    // `queues`, where the docs send operators during an incident, answers, leading with
    // the warning, and says what the store keeps.
    let queues = on_volatile(false, &["queues"]);
    let (stdout, stderr) = (text(&queues.stdout), text(&queues.stderr));
    assert!(
        queues.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("WARNING: THE STORE IS NOT PERSISTING: it has no AOF"),
        "{stdout}"
    );
    assert!(first.contains("loses everything"), "{stdout}");
    assert!(stdout.contains("live workers: 0"), "{stdout}");
    assert!(stdout.contains("store keeps: no AOF"), "{stdout}");
    assert_eq!(stderr, "", "nothing but the answer");
    let json = on_volatile(false, &["queues", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON report");
    assert_eq!(report["store_durability"]["persisting"], false, "{report}");
    // The other read-only commands answer too, the warning on stderr ahead of the
    // answer, so their stdout stays what scripts parse.
    for args in [
        &["workers"][..],
        &["workers", "--json"],
        &["dlq", "list"],
        &["status", "01890a5d-ac96-774b-bcce-b302099a8057"],
    ] {
        let out = on_volatile(false, args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let answered = if args[0] == "status" {
            // No such job: the answer is "not found", after the warning.
            stderr.contains("no record of job")
        } else {
            out.status.success()
        };
        assert!(answered, "{args:?}: stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(
            stderr.starts_with("WARNING: THE STORE IS NOT PERSISTING"),
            "{args:?}: {stderr}"
        );
        assert!(!stdout.contains("WARNING"), "{args:?}: {stdout}");
    }
    // With the volatility accepted: no warning, the summary says it was accepted.
    let accepted = on_volatile(true, &["queues"]);
    let (stdout, stderr) = (text(&accepted.stdout), text(&accepted.stderr));
    assert!(
        accepted.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stdout.contains("WARNING"), "{stdout}");
    assert!(
        stdout.contains("(accepted by redis.require_persistence = false)"),
        "{stdout}"
    );
    let workers = on_volatile(true, &["workers"]);
    assert_eq!(text(&workers.stderr), "", "accepted: nothing to warn about");
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(cleanup(&ns));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_warns_when_its_store_stops_persisting() {
    // A server of the test's own, persisting at first, whose AOF the test turns off.
    let server = RedisServer::start(&["--save", "", "--appendonly", "yes"]);
    let mut config = shared_config("stoppedpersisting");
    let ns = config.namespace.clone();
    config.store = server.url().parse().expect("a redis:// URL");
    config.redis.require_persistence = true;
    let (addr, shutdown, scheduler) = start_scheduler(config).await;
    let ready = |addr: String| async move { http_get(&addr, "/readyz").await };
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(addr.clone()).await.0 != 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready(addr.clone()).await, (200, "ready".to_string()));
    let (_, metrics) = http_get(&addr, "/metrics").await;
    assert!(
        metrics.lines().any(|l| l == "jobfleet_store_persisting 1"),
        "{metrics}"
    );

    let client = redis::Client::open(server.url()).expect("URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendonly")
        .arg("no")
        .query_async(&mut conn)
        .await
        .expect("CONFIG SET appendonly no");
    // Still ready (nothing is lost yet), with the warning.
    let (code, body) = ready(addr.clone()).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with("ready; WARNING: THE STORE IS NOT PERSISTING: it has no AOF"),
        "{body}"
    );
    assert!(body.contains("CONFIG SET appendonly yes"), "{body}");
    let (_, metrics) = http_get(&addr, "/metrics").await;
    assert!(
        metrics.lines().any(|l| l == "jobfleet_store_persisting 0"),
        "{metrics}"
    );

    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), scheduler).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "the scheduler stops: {stopped:?}"
    );
    cleanup_amqp(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_sentinel_is_detected_reported_and_cleared() {
    let config = shared_config("dataloss");
    let ns = config.namespace.clone();
    let (addr, shutdown, scheduler) = start_scheduler(config).await;
    let mut conn = redis().await;
    let (sentinel, incident) = (keys::sentinel(&ns), keys::data_loss_incident(&ns));
    let before: Option<String> = conn.get(&sentinel).await.expect("GET");
    assert!(before.is_some(), "connecting armed the sentinel");
    assert_eq!(http_get(&addr, "/readyz").await, (200, "ready".to_string()));

    // What a restart without persistence or a FLUSHDB does to the namespace.
    let _: () = conn.del(&sentinel).await.expect("DEL");
    let json = recorded_incident(&mut conn, &incident, "the scheduler").await;
    assert!(json["detected_at_ms"].as_i64().is_some(), "{json}");
    assert!(
        json["detected_by"]
            .as_str()
            .is_some_and(|s| s.starts_with("scheduler")),
        "{json}"
    );
    assert!(
        json["lost"]
            .as_str()
            .is_some_and(|s| s.contains("vanished")),
        "{json}"
    );
    let ttl: i64 = conn.ttl(&incident).await.expect("TTL");
    assert_eq!(ttl, -1, "the incident never expires");
    let after: Option<String> = conn.get(&sentinel).await.expect("GET");
    assert!(
        after.is_some() && after != before,
        "a fresh sentinel was armed"
    );

    let (code, body) = http_get(&addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("lost data") && !body.contains('\n'),
        "{body:?}"
    );
    let (_, metrics) = http_get(&addr, "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "jobfleet_store_data_lost_total 1"),
        "counted once:\n{metrics}"
    );

    let out = jobfleet(&ns, true, &["queues"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("WARNING: THE STORE LOST DATA"),
        "{stdout}"
    );
    assert!(first.contains("--ack-data-loss"), "{stdout}");
    let out = jobfleet(&ns, true, &["queues", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(
        report["data_loss"], json,
        "the JSON report carries the incident"
    );

    let out = jobfleet(&ns, true, &["queues", "--ack-data-loss"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.starts_with("cleared the data-loss incident"),
        "{stdout}"
    );
    let gone: Option<String> = conn.get(&incident).await.expect("GET");
    assert_eq!(gone, None);
    assert_eq!(http_get(&addr, "/readyz").await, (200, "ready".to_string()));
    let out = jobfleet(&ns, true, &["queues"]);
    assert!(
        !text(&out.stdout).contains("WARNING"),
        "{}",
        text(&out.stdout)
    );
    let out = jobfleet(&ns, true, &["queues", "--ack-data-loss"]);
    assert_eq!(text(&out.stdout).trim(), "no data-loss incident was open");
    // Nothing is detected again: the scheduler adopted the fresh sentinel.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let again: Option<String> = conn.get(&incident).await.expect("GET");
    assert_eq!(again, None, "one loss, one incident");

    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), scheduler).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "the scheduler stops: {stopped:?}"
    );
    cleanup(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_detects_a_lost_sentinel_with_its_heartbeat() {
    let mut config = shared_config("dataloss");
    let ns = config.namespace.clone();
    config.worker.heartbeat = Duration::from_millis(100);
    config.validate().expect("valid test config");
    let backends = jobfleet_connect::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{HOW_TO_START}"));
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(jobfleet_worker::run(
        Arc::new(config),
        backends,
        Arc::new(jobfleet_worker::Registry::with_builtins()),
        shutdown.clone(),
    ));
    let mut conn = redis().await;
    let (sentinel, incident) = (keys::sentinel(&ns), keys::data_loss_incident(&ns));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _: () = conn.del(&sentinel).await.expect("DEL");
    let json = recorded_incident(&mut conn, &incident, "the worker").await;
    assert!(
        json["detected_by"]
            .as_str()
            .is_some_and(|s| s.starts_with("worker ")),
        "{json}"
    );
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), worker).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "the worker stops: {stopped:?}"
    );
    cleanup(&ns).await;
}

/// The incident record at `key` once a role (`who`) has written it, within 10 s.
async fn recorded_incident(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    who: &str,
) -> serde_json::Value {
    let started = Instant::now();
    let mut record: Option<String> = None;
    while record.is_none() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        record = conn.get(key).await.expect("GET");
    }
    let record = record.unwrap_or_else(|| panic!("{who} recorded no incident within 10s"));
    serde_json::from_str(&record).expect("the incident is JSON")
}
