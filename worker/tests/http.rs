//! `worker.http`: a worker serves `/healthz`, `/readyz` and `/metrics` (its attempts
//! counted there), and refuses to start on an address that is taken, naming the key.

use jobfleet_testkit::{free_addr, http_get};
use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::{Backends, Config, Job, Route};
use jobfleet_testkit::publish_job;
use jobfleet_worker::{Registry, WorkerError};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_serves_its_probes_and_metrics() {
    let addr = free_addr();
    let mut config = Config::default();
    config.worker.queues = vec!["http-q".into()];
    config.worker.http = Some(addr.clone());
    let backends = Backends::embedded();
    let token = CancellationToken::new();
    let worker = tokio::spawn(jobfleet_worker::run(
        Arc::new(config),
        backends.clone(),
        Arc::new(Registry::with_builtins()),
        token.clone(),
    ));
    publish_job(
        &*backends.broker,
        Route::Ready("http-q".into()),
        &Job::new("http-q", "echo", "{}"),
    )
    .await;
    let counted = "jobfleet_attempts_total{queue=\"http-q\",kind=\"echo\",outcome=\"completed\"} 1";
    let mut metrics = String::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            continue;
        }
        metrics = http_get(&addr, "/metrics").await.1;
        if metrics.contains(counted) {
            break;
        }
    }
    assert!(metrics.contains(counted), "no {counted} in:\n{metrics}");
    assert_eq!(http_get(&addr, "/healthz").await, (200, "ok".to_string()));
    assert_eq!(http_get(&addr, "/readyz").await, (200, "ready".to_string()));

    // A second worker on the same address does not start.
    let mut taken = Config::default();
    taken.worker.http = Some(addr.clone());
    let e = jobfleet_worker::run(
        Arc::new(taken),
        Backends::embedded(),
        Arc::new(Registry::with_builtins()),
        CancellationToken::new(),
    )
    .await
    .expect_err("address taken");
    assert!(matches!(e, WorkerError::Http(_)), "{e:?}");
    assert!(e.to_string().contains("worker.http"), "{e}");
    assert!(!e.is_retryable());

    token.cancel();
    worker.await.expect("no panic").expect("clean stop");
}
