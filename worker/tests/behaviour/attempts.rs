//! Attempts and their outcomes: completed, failed, timed out, panicked, permanent,
//! cancelled while running; and the built-in kinds.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::broker::Route;
use jobfleet_common::store::JobState;
use jobfleet_common::{dead, ErrorKind, JobId};

use super::Harness;
use jobfleet_worker::{JobError, Registry};

#[tokio::test(start_paused = true)]
async fn a_job_completes_and_its_record_says_so() {
    let h = Harness::start(Registry::with_builtins(), |_| {}).await;
    let job = h.job("echo", r#"{"hello":1}"#);
    h.publish(&job).await;
    let record = h.wait_for(job.id, JobState::Completed).await;
    assert_eq!(record.progress, Some(1.0));
    assert!(
        record.started_at_ms.is_some() && record.finished_at_ms.is_some(),
        "{record:?}"
    );
    assert!(
        record.worker.as_deref().is_some_and(|w| !w.is_empty()),
        "{record:?}"
    );
    assert!(h.backends.store.is_completed(job.id).await.expect("marker"));
    h.wait_settled().await;
    assert_eq!(h.depth(Route::Failed).await.ready, 0);
    h.stop().await.2.expect("clean stop");
}

#[tokio::test(start_paused = true)]
async fn a_failing_job_goes_to_the_failed_route_with_its_error_appended() {
    let h = Harness::start(Registry::with_builtins(), |_| {}).await;
    let mut job = h.job("fail", "");
    job.attempt = 2;
    job.errors.push(jobfleet_common::ErrorRecord {
        attempt: 1,
        at_ms: 1,
        kind: ErrorKind::Failed,
        message: "earlier".into(),
    });
    h.publish(&job).await;
    let failed = h.next_job_on(Route::Failed).await;
    assert_eq!(
        (failed.id, failed.attempt),
        (job.id, 2),
        "the scheduler counts attempts"
    );
    assert_eq!(failed.errors.len(), 2);
    let last = failed.last_error().expect("an error");
    assert_eq!((last.attempt, last.kind), (2, ErrorKind::Failed));
    assert!(last.message.contains("always fails"), "{last:?}");
    h.wait_settled().await;
    let record = h
        .backends
        .store
        .record(job.id)
        .await
        .expect("record")
        .expect("written");
    assert_eq!(
        record.state,
        JobState::Running,
        "the scheduler writes what comes next"
    );
    h.stop().await.2.expect("clean stop");
}

#[tokio::test(start_paused = true)]
async fn a_timeout_is_a_failed_attempt_of_kind_timeout() {
    let mut registry = Registry::new();
    registry.register_fn("stuck", |_ctx| async {
        // Ignores its token: the worker must cut it off anyway.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    });
    let h = Harness::start(registry, |_| {}).await;
    let job = h.job("stuck", "").with_timeout_ms(250);
    h.publish(&job).await;
    let failed = h.next_job_on(Route::Failed).await;
    let last = failed.last_error().expect("an error");
    assert_eq!(last.kind, ErrorKind::Timeout);
    assert!(last.message.contains("250 ms"), "{last:?}");
    h.stop().await.2.expect("clean stop");
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_recorded_and_the_worker_keeps_running() {
    let mut registry = Registry::with_builtins();
    registry.register_fn("boom", |_ctx| async { panic!("kaboom") });
    let h = Harness::start(registry, |c| c.worker.concurrency = 1).await;
    let boom = h.job("boom", "");
    h.publish(&boom).await;
    let failed = h.next_job_on(Route::Failed).await;
    let last = failed.last_error().expect("an error");
    assert_eq!((failed.id, last.kind), (boom.id, ErrorKind::Panic));
    assert!(last.message.contains("kaboom"), "{last:?}");
    let echo = h.job("echo", "");
    h.publish(&echo).await;
    h.wait_for(echo.id, JobState::Completed).await;
    h.stop().await.2.expect("clean stop");
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_goes_dead_and_frees_the_unique_key() {
    let mut registry = Registry::new();
    registry.register_fn("strict", |ctx| async move {
        let n: u32 = ctx.payload_json()?;
        Err(JobError::retryable(format!("{n} is a fine number")))
    });
    let h = Harness::start(registry, |_| {}).await;
    let job = h.job("strict", "not json").with_unique_key("only-one");
    let store = &h.backends.store;
    assert_eq!(
        store
            .unique_claim("only-one", job.id, 60_000)
            .await
            .expect("claim"),
        None
    );
    h.publish(&job).await;
    let got = h.next_on(Route::Dead).await;
    let (kind, text) = dead::parse_reason(got.reason.as_deref());
    assert_eq!(kind, ErrorKind::Permanent);
    assert!(text.contains("expected JSON"), "{text}");
    let letter = dead::letter_from_message(got.body, got.content_type, got.reason.as_deref(), 0);
    assert_eq!(
        (letter.id, letter.errors.len()),
        (job.id, 1),
        "one error, not a doubled one"
    );
    h.wait_settled().await;
    let other = JobId::new();
    assert_eq!(
        store
            .unique_claim("only-one", other, 60_000)
            .await
            .expect("claim"),
        None
    );
    h.stop().await.2.expect("clean stop");
}

#[tokio::test(start_paused = true)]
async fn a_cancel_request_stops_a_running_handler() {
    let mut registry = Registry::with_builtins();
    registry.register_fn("report", |ctx| async move {
        ctx.progress(0.5).await;
        ctx.cancelled().cancelled().await;
        // Returning Ok after a stop must not count as done.
        Ok(())
    });
    let h = Harness::start(registry, |_| {}).await;
    let job = h.job("report", "").with_unique_key("report-once");
    let store = &h.backends.store;
    assert_eq!(
        store
            .unique_claim("report-once", job.id, 60_000)
            .await
            .expect("claim"),
        None
    );
    h.publish(&job).await;
    let running = h.wait_for(job.id, JobState::Running).await;
    assert_eq!(running.progress, Some(0.5));
    store.request_cancel(job.id).await.expect("cancel");
    let record = h.wait_for(job.id, JobState::Cancelled).await;
    assert_eq!(record.note.as_deref(), Some("cancelled while running"));
    h.wait_settled().await;
    assert_eq!(
        h.depth(Route::Failed).await.ready,
        0,
        "a cancel is not a failure"
    );
    assert!(!store.is_completed(job.id).await.expect("marker"));
    assert_eq!(
        store
            .unique_claim("report-once", JobId::new(), 1)
            .await
            .expect("claim"),
        None
    );
    h.stop().await.2.expect("clean stop");
}

#[tokio::test(start_paused = true)]
async fn builtins_flaky_and_sleep_behave_as_documented() {
    let h = Harness::start(Registry::with_builtins(), |_| {}).await;
    let first = h.job("flaky", r#"{"fail_times": 1}"#);
    h.publish(&first).await;
    let failed = h.next_job_on(Route::Failed).await;
    assert!(failed
        .last_error()
        .expect("an error")
        .message
        .contains("flaky"));
    let second = jobfleet_common::Job {
        attempt: 2,
        ..failed
    };
    h.publish(&second).await;
    h.wait_for(second.id, JobState::Completed).await;

    let started = tokio::time::Instant::now();
    let nap = h.job("sleep", r#"{"ms": 1500}"#);
    h.publish(&nap).await;
    h.wait_for(nap.id, JobState::Completed).await;
    assert!(started.elapsed() >= Duration::from_millis(1500));
    h.stop().await.2.expect("clean stop");
}

#[tokio::test(start_paused = true)]
async fn jobs_run_concurrently_up_to_the_limit() {
    let now = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let mut registry = Registry::new();
    let (n, p) = (now.clone(), peak.clone());
    registry.register_fn("count", move |_ctx| {
        let (now, peak) = (n.clone(), p.clone());
        async move {
            let running = now.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(running, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            now.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let h = Harness::start(registry, |c| c.worker.concurrency = 3).await;
    let jobs: Vec<_> = (0..10).map(|_| h.job("count", "")).collect();
    for job in &jobs {
        h.publish(job).await;
    }
    for job in &jobs {
        h.wait_for(job.id, JobState::Completed).await;
    }
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    h.stop().await.2.expect("clean stop");
}
