//! `jobfleet dev` called as a library function, the way other tests can start a whole
//! fleet: small workloads, an interrupted run, and flags that make no sense.

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
