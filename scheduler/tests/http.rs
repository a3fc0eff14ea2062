//! The optional HTTP endpoint: health, readiness, queue depths as JSON, Prometheus
//! metrics, and a refusal to start on an address that is taken.

mod support;

use jobfleet_testkit::{free_addr, http_get};
use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::store::JobState;
use jobfleet_common::{Backends, Config, Job, Route};
use jobfleet_scheduler::SchedulerError;
use support::{queue, Fleet};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn serves_health_readiness_queue_depths_and_metrics() {
    let addr = free_addr();
    let q = queue();
    let mut config = Config::default();
    config.scheduler.http = Some(addr.clone());
    config.worker.queues = vec![q.clone()];
    let mut fleet = Fleet::with_config(config);
    fleet.start_scheduler();
    let job = Job::new(&q, "work", "{}").with_run_at_ms(fleet.now() + 600_000);
    fleet.publish(Route::Delayed, &job).await;
    fleet
        .wait_for_state(job.id, JobState::Scheduled, Duration::from_secs(5))
        .await;

    let (status, body) = http_get(&addr, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "ok");

    // The embedded store answers and cannot lose data behind the process's back.
    let (status, body) = http_get(&addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "ready");

    let (status, body) = http_get(&addr, "/api/queues").await;
    assert_eq!(status, 200, "{body}");
    let depths: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let row = depths
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["queue"] == q.as_str()))
        .expect("a row for the queue");
    assert_eq!(row["delayed"], 1);
    assert_eq!(row["dead"], 0);

    let (status, body) = http_get(&addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let gauge = format!("jobfleet_queue_depth{{queue=\"{q}\",state=\"delayed\"}} 1");
    assert!(body.contains(&gauge), "no {gauge} in:\n{body}");
    fleet.stop().await;
}

#[tokio::test]
async fn refuses_to_start_on_a_taken_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut config = Config::default();
    config.scheduler.http = Some(taken.local_addr().expect("addr").to_string());
    let backends = Backends::embedded();
    let result = jobfleet_scheduler::run(Arc::new(config), backends, CancellationToken::new());
    let result = tokio::time::timeout(Duration::from_secs(5), result)
        .await
        .expect("returns");
    assert!(
        matches!(result, Err(SchedulerError::Http { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn cron_metrics_count_fires_lateness_and_leadership() {
    let addr = free_addr();
    let q = queue();
    let mut config = Config::default();
    config.scheduler.http = Some(addr.clone());
    config.schedules.insert(
        "every-second".into(),
        jobfleet_common::cron::ScheduleSpec::new("* * * * * *", &q, "work"),
    );
    let mut fleet = Fleet::with_config(config);
    fleet.start_scheduler();
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let (status, body) = http_get(&addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let fires = body
        .lines()
        .find_map(|l| l.strip_prefix("jobfleet_cron_fires_total{schedule=\"every-second\"} "))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no fires counter in:\n{body}"));
    assert!(fires >= 2.0, "{fires} fires in 2.2 s");
    for needle in [
        "jobfleet_scheduler_is_leader 1",
        "jobfleet_scheduler_leader_changes_total{change=\"acquired\"} 1",
        "jobfleet_cron_fire_lateness_seconds",
    ] {
        assert!(body.contains(needle), "no {needle} in:\n{body}");
    }
    fleet.stop().await;
}
