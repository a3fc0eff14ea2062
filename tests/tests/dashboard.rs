//! The dashboard end to end (issue 14): a scheduler serving it with an access token and a
//! worker, in this process, on RabbitMQ + Redis; headless Chromium signs in, reads queue
//! depths that must match the broker's, and replays a dead letter from the page, after
//! which that job runs again and completes. Requests without the token are refused, and
//! no response carries the token or the broker's password.
//!
//! With `JOBFLEET_UPDATE_SCREENSHOT=1` the screenshot it takes replaces
//! `docs/dashboard.png` (the README shows it); otherwise it goes to the target directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::config::AccessToken;
use jobfleet_common::store::JobState;
use jobfleet_common::{Config, Job};
use jobfleet_producer::Producer;
use jobfleet_scheduler::ops;
use jobfleet_testkit::{delete_routes, purge_store, Fleet, HOW_TO_START};
use jobfleet_testkit::{shared_config, wait_state};
use jobfleet_tests::browser::{http, Browser};
use jobfleet_worker::{JobError, Registry};

const TOKEN: &str = "dashboard-canary-token-7f3a9c";
const WAIT: Duration = Duration::from_secs(30);

/// Removes the test's routes and keys however the test ends.
struct Cleanup(Config, Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (config, queues) = (self.0.clone(), self.1.clone());
        // A fresh runtime: the test's own may be gone by now.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async {
                delete_routes(&config, &queues).await;
                purge_store(&config).await;
            });
        })
        .join();
    }
}

/// `GET path` with `headers` (each `Name: value`): the status and the body.
async fn get(addr: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
    let (status, body) = http(addr, request.as_bytes()).await;
    (status, String::from_utf8_lossy(&body).to_string())
}

/// `POST path` with a JSON `body` and `headers`.
async fn post(addr: &str, path: &str, body: &str, headers: &[&str]) -> (u16, String) {
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, body) = http(addr, request.as_bytes()).await;
    (status, String::from_utf8_lossy(&body).to_string())
}

fn screenshot_path() -> PathBuf {
    if std::env::var_os("JOBFLEET_UPDATE_SCREENSHOT").is_some() {
        return PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png");
    }
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_brokers_depths_and_replays_a_dead_letter() {
    let mut config = shared_config("dash");
    let work = format!("{}-work", config.namespace);
    let idle = format!("{}-idle", config.namespace);
    config.worker.queues = vec![work.clone()];
    config.worker.heartbeat = Duration::from_millis(500);
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").to_string()
    };
    config.scheduler.http = Some(addr.clone());
    config.scheduler.http_token = Some(AccessToken::new(TOKEN));
    config.validate().expect("a valid config");
    let _cleanup = Cleanup(config.clone(), vec![work.clone(), idle.clone()]);
    let backends = match jobfleet_connect::connect(&config).await {
        Ok(b) => b,
        Err(e) => panic!("{e}\nThe dashboard test needs RabbitMQ and Redis: {HOW_TO_START}"),
    };

    // `flip` fails for good until `healed` is set, so its job dies, and runs once replayed.
    let healed = Arc::new(AtomicBool::new(false));
    let mut registry = Registry::with_builtins();
    let flag = healed.clone();
    registry.register_fn("flip", move |_ctx| {
        let healed = flag.load(Ordering::SeqCst);
        async move {
            if healed {
                Ok(())
            } else {
                Err(JobError::permanent("flip: not healed yet"))
            }
        }
    });
    let mut fleet = Fleet::new(config.clone(), backends.clone());
    fleet.start_scheduler();
    fleet.start_worker(registry);

    let producer = Producer::new(&backends, &config);
    let waiting: Vec<Job> = (0..7)
        .map(|i| Job::new(&idle, "echo", format!("{i}")))
        .collect();
    producer.enqueue_many(waiting).await.expect("enqueued");
    let doomed = Job::new(&work, "flip", "").with_max_attempts(1);
    let doomed_id = doomed.id;
    producer.enqueue(doomed).await.expect("enqueued");
    wait_state(
        &*backends.store,
        doomed_id,
        JobState::Dead,
        WAIT,
        "flip dies",
    )
    .await;

    // Without the token: the API says 401, the page shows the sign-in form with 401.
    let (status, body) = get(&addr, "/api/overview", &[]).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = get(
        &addr,
        "/api/overview",
        &["Authorization: Bearer wrong-token-123456"],
    )
    .await;
    assert_eq!(status, 401);
    let (status, page) = get(&addr, "/", &[]).await;
    assert_eq!(status, 401);
    assert!(page.contains("action=\"/login\""), "{page}");
    // With it, but from another origin: a replay is refused, the letter stays.
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let replay = format!("{{\"ids\":[\"{doomed_id}\"]}}");
    let (status, body) = post(
        &addr,
        "/api/dead/replay",
        &replay,
        &[&bearer, "Origin: http://evil.example"],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(backends
        .store
        .dead_get(doomed_id)
        .await
        .expect("store")
        .is_some());
    // The probes need no token.
    let (status, ready) = get(&addr, "/readyz", &[]).await;
    assert_eq!((status, ready.as_str()), (200, "ready"));

    let browser = Browser::start().await;
    let url = format!("http://{addr}/");
    browser.goto(&url).await;
    assert_eq!(browser.title().await, "jobfleet: sign in");
    let field = browser.wait_for("#token", WAIT).await;
    browser.type_into(&field, TOKEN).await;
    browser
        .click(&browser.wait_for("#sign-in", WAIT).await)
        .await;
    browser.wait_text("h1", WAIT, |t| t == "jobfleet").await;
    assert_eq!(browser.title().await, "jobfleet");

    // The depth the page shows is the broker's.
    let ready_cell = format!("#queues tr[data-queue=\"{idle}\"] td.ready");
    let shown = browser.wait_text(&ready_cell, WAIT, |t| t == "7").await;
    let depths = ops::queue_depths(
        &*backends.store,
        &*backends.broker,
        &*backends.clock,
        std::slice::from_ref(&idle),
    )
    .await
    .expect("depths");
    assert_eq!(depths[0].ready.map(|d| d.to_string()), Some(shown));
    browser
        .wait_text("#total-workers", WAIT, |t| t == "1")
        .await;
    // Seven jobs wait with no worker on their queue: the page shows their age.
    let oldest = format!("#queues tr[data-queue=\"{idle}\"] td.oldest");
    browser
        .wait_text(&oldest, WAIT, |t| t.ends_with('s') && t != "–")
        .await;
    let (_, metrics) = get(&addr, "/metrics", &[]).await;
    let gauge = format!("jobfleet_queue_oldest_waiting_seconds{{queue=\"{idle}\"}}");
    let age: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&gauge))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {gauge} in:\n{metrics}"));
    assert!(age > 0.0, "{age}");

    // Replay the dead letter from the page: the job runs again and completes.
    let row = format!("#dead tr[data-id=\"{doomed_id}\"]");
    browser.wait_for(&row, WAIT).await;
    healed.store(true, Ordering::SeqCst);
    let button = browser
        .wait_for(&format!("{row} button.replay"), WAIT)
        .await;
    browser.click(&button).await;
    let record = wait_state(
        &*backends.store,
        doomed_id,
        JobState::Completed,
        WAIT,
        "the replayed job completes",
    )
    .await;
    assert_eq!(
        record.attempt, 1,
        "replayed as a new first attempt: {record:?}"
    );
    browser.wait_gone(&row, WAIT).await;
    assert!(backends
        .store
        .dead_get(doomed_id)
        .await
        .expect("store")
        .is_none());

    // Per queue, from the worker's heartbeats: the failed first run and the replay that
    // completed; the page turns them into rates between its polls.
    let deadline = tokio::time::Instant::now() + WAIT;
    let counted = loop {
        let (_, body) = get(&addr, "/api/queues", &[&bearer]).await;
        let queues: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let row = queues
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["queue"] == work.as_str()))
            .cloned()
            .unwrap_or_default();
        if (row["completed"] == 1 && row["failed"] == 1) || tokio::time::Instant::now() > deadline {
            break row;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (&counted["completed"], &counted["failed"]),
        (&1.into(), &1.into()),
        "{counted}"
    );
    let rate = format!("#queues tr[data-queue=\"{work}\"] td.done-rate");
    browser
        .wait_text(&rate, WAIT, |t| t.parse::<f64>().is_ok())
        .await;

    // Its detail, error history kept in the record's story.
    let id_field = browser.wait_for("#job-id", WAIT).await;
    browser.type_into(&id_field, &doomed_id.to_string()).await;
    browser
        .click(&browser.wait_for("#job-show", WAIT).await)
        .await;
    browser
        .wait_text("#job-detail dd.state", WAIT, |t| t == "completed")
        .await;
    let path = screenshot_path();
    browser.screenshot(&path).await;
    assert!(std::fs::metadata(&path).expect("screenshot").len() > 10_000);

    // No response carries the token or the broker's password.
    // amqp://user:password@host/...: the password part, if the URL has one.
    let url = config.broker.url();
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password.to_string());
    for route in [
        "/api/overview",
        "/api/workers",
        "/api/dead",
        "/api/schedules",
        "/metrics",
        "/",
    ] {
        let (status, body) = get(&addr, route, &[&bearer]).await;
        assert_eq!(status, 200, "{route}: {body}");
        assert!(!body.contains(TOKEN), "{route} shows the token");
        assert!(!body.contains(url), "{route} shows the broker URL");
        if let Some(password) = &password {
            assert!(
                !body.contains(&format!(":{password}@")),
                "{route} shows a password"
            );
        }
    }

    drop(browser);
    // Fails the test if the scheduler or the worker does not stop cleanly within 20 s.
    fleet.stop_roles().await;
    let closed = tokio::time::timeout(WAIT, backends.broker.close()).await;
    assert!(
        closed.is_ok(),
        "the broker connection did not close within {WAIT:?}"
    );
}
