//! `jobfleet dev` called as a library function, the way other tests can start a whole
//! fleet: small workloads, an interrupted run, and flags that make no sense.

use jobfleet_testkit::{free_addr, http_get};
use std::time::Duration;

use jobfleet::commands::dev::{self, DevOptions};
use jobfleet::progress::Mode;
use jobfleet::Error;
use jobfleet_common::Config;
use tokio_util::sync::CancellationToken;

fn options(jobs: usize) -> DevOptions {
    DevOptions {
        config: Config::default(),
        workers: 2,
        concurrency: 4,
        jobs,
        until_idle: true,
        timeout: Duration::from_secs(60),
        progress: Mode::Hidden,
        http: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_workload_runs_to_idle() {
    let summary = dev::run(options(31), CancellationToken::new())
        .await
        .expect("idle");
    assert_eq!(summary.total, 31);
    // Jobs 0 and 30 are `fail` jobs.
    assert_eq!(summary.dead, 2, "{summary:?}");
    assert_eq!(
        summary.completed + summary.dead + summary.cancelled,
        31,
        "{summary:?}"
    );
    assert_eq!(summary.unfinished, 0);
    // The delayed sample jobs keep the run going past a second: the sample schedule
    // (every second) fires during it.
    assert!(summary.schedule_fires >= 1, "{summary:?}");
    assert_eq!(summary.pipeline, "completed", "{summary:?}");
    // The data demo: sample game logs through ingest, train and predict.
    assert!(
        summary.data.starts_with("completed: model dev-win v1 on "),
        "{summary:?}"
    );
    assert_eq!(summary.dashboard, "off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_serves_the_dashboard_api_and_metrics_of_its_fleet() {
    let addr = free_addr();
    let token = CancellationToken::new();
    let run = tokio::spawn(dev::run(
        DevOptions {
            until_idle: false,
            http: Some(addr.clone()),
            ..options(20)
        },
        token.clone(),
    ));
    // Both workers heartbeat within a second (dev's heartbeat); wait for them.
    let mut overview = serde_json::Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            continue;
        }
        let (code, body) = http_get(&addr, "/api/overview").await;
        assert_eq!(code, 200, "{body}");
        overview = serde_json::from_str(&body).expect("overview is JSON");
        if overview["workers"].as_array().is_some_and(|w| w.len() == 2) {
            break;
        }
    }
    assert_eq!(
        overview["workers"].as_array().map(Vec::len),
        Some(2),
        "{overview}"
    );
    let queues = overview["queues"].as_array().expect("queues");
    assert!(queues.iter().any(|q| q["queue"] == "default"), "{overview}");
    let (code, page) = http_get(&addr, "/").await;
    assert_eq!(code, 200);
    assert!(page.contains("/assets/dashboard.js"), "{page}");
    // Attempts are counted as jobs finish: wait for the first.
    let mut metrics = String::new();
    for _ in 0..100 {
        let (code, text) = http_get(&addr, "/metrics").await;
        assert_eq!(code, 200, "{text}");
        metrics = text;
        if metrics.contains("jobfleet_attempts_total") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metrics.contains("jobfleet_live_workers 2"), "{metrics}");
    assert!(metrics.contains("jobfleet_attempts_total"), "{metrics}");
    let (code, ready) = http_get(&addr, "/readyz").await;
    assert_eq!((code, ready.as_str()), (200, "ready"));
    token.cancel();
    let summary = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("stopped in time")
        .expect("no panic")
        .expect("summary");
    assert_eq!(summary.dashboard, format!("http://{addr}/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_token_stops_a_run_that_never_idles() {
    let token = CancellationToken::new();
    let stopper = token.clone();
    let run = tokio::spawn(dev::run(
        DevOptions {
            until_idle: false,
            ..options(10)
        },
        token,
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stopper.cancel();
    let summary = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("stopped in time")
        .expect("no panic")
        .expect("summary");
    assert_eq!(summary.total, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_before_idle_is_an_error_with_the_summary() {
    // Delayed jobs wait at least 1 s; a 300 ms timeout cannot see them finish.
    let e = dev::run(
        DevOptions {
            timeout: Duration::from_millis(300),
            ..options(30)
        },
        CancellationToken::new(),
    )
    .await
    .expect_err("not idle");
    match e {
        Error::NotIdle { summary, .. } => {
            assert_eq!(summary.total, 30);
            assert!(summary.unfinished > 0, "{summary:?}");
        }
        other => panic!("expected NotIdle, got {other}"),
    }
}

#[tokio::test]
async fn zero_workers_is_a_usage_error() {
    let e = dev::run(
        DevOptions {
            workers: 0,
            ..options(1)
        },
        CancellationToken::new(),
    )
    .await
    .expect_err("refused");
    assert_eq!(e.exit_code(), 2);
}
