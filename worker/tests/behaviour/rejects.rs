//! Deliveries that never reach a handler: dead-lettered with a reason, duplicates, and
//! jobs cancelled before they started.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use jobfleet_common::broker::Route;
use jobfleet_common::dead::KEPT_HEAD_BYTES;
use jobfleet_common::limits::ENVELOPE_ALLOWANCE;
use jobfleet_common::store::{JobRecord, JobState};
use jobfleet_common::Job;

use super::Harness;
use jobfleet_worker::Registry;

/// A registry whose `count` kind counts its runs.
fn counting() -> (Registry, Arc<AtomicU32>) {
    let runs = Arc::new(AtomicU32::new(0));
    let mut registry = Registry::with_builtins();
    let r = runs.clone();
    registry.register_fn("count", move |_ctx| {
        r.fetch_add(1, Ordering::SeqCst);
        async { Ok(()) }
    });
    (registry, runs)
}

/// Publishes `body` and returns the reason it was dead-lettered with, checking that the
/// body went to the dead route as received.
async fn dead_reason(h: &Harness, body: Bytes, content_type: Option<&str>) -> String {
    h.publish_raw(body.clone(), content_type).await;
    let got = h.next_on(Route::Dead).await;
    assert_eq!(got.body, body, "the dead route gets the body as received");
    assert_eq!(got.content_type.as_deref(), content_type);
    h.wait_settled().await;
    got.reason.expect("a reason header")
}

#[tokio::test(start_paused = true)]
async fn undecodable_messages_go_dead() {
    let h = Harness::start(Registry::with_builtins(), |_| {}).await;
    let reason = dead_reason(&h, Bytes::from_static(b"\x00garbage"), None).await;
    assert!(reason.starts_with("undecodable: "), "{reason}");
    let reason = dead_reason(
        &h,
        Bytes::from_static(b"JF\x01\xff"),
        Some("application/x-jobfleet+postcard; v=1"),
    )
    .await;
    assert!(reason.starts_with("undecodable: "), "{reason}");
    h.stop().await.2.expect("clean stop");
}

#[tokio::test(start_paused = true)]
async fn oversized_messages_and_payloads_go_dead() {
    let h = Harness::start(Registry::with_builtins(), |c| {
        c.limits.max_payload_bytes = 16
    })
    .await;
    let huge = Bytes::from(vec![b'x'; 16 + ENVELOPE_ALLOWANCE + 1]);
    h.publish_raw(huge.clone(), None).await;
    let got = h.next_on(Route::Dead).await;
    h.wait_settled().await;
    // The dead route gets the head of a body over the message limit, and says so.
    assert_eq!(got.body, huge.slice(..KEPT_HEAD_BYTES));
    let reason = got.reason.expect("a reason header");
    assert!(reason.starts_with("oversized: "), "{reason}");
    assert!(
        reason.contains(&format!("cut to its first {KEPT_HEAD_BYTES} bytes")),
        "{reason}"
    );
    let job = h.job("echo", "[1,2,3,4,5,6,7,8,9,10]");
    let body = jobfleet_common::codec::encode(&job, jobfleet_common::codec::Format::Json);
    let reason = dead_reason(&h, body, Some("application/json")).await;
    assert!(reason.starts_with("oversized: payload: "), "{reason}");
    h.stop().await.2.expect("clean stop");
}

#[tokio::test(start_paused = true)]
async fn invalid_jobs_and_unknown_kinds_go_dead() {
    let h = Harness::start(Registry::with_builtins(), |_| {}).await;
    let job = Job {
        max_attempts: 0,
        ..h.job("echo", "")
    };
    let body = jobfleet_common::codec::encode(&job, jobfleet_common::codec::Format::Binary);
    let reason = dead_reason(&h, body, None).await;
    assert!(reason.starts_with("invalid: max_attempts: "), "{reason}");

    let job = h.job("no-such-kind", "");
    let body = jobfleet_common::codec::encode(&job, jobfleet_common::codec::Format::Binary);
    let reason = dead_reason(&h, body, None).await;
    assert!(reason.starts_with("unknown_kind: "), "{reason}");
    assert!(reason.contains("no-such-kind"), "{reason}");
    h.stop().await.2.expect("clean stop");
}

#[tokio::test(start_paused = true)]
async fn a_duplicate_of_a_completed_job_is_acked_without_running() {
    let (registry, runs) = counting();
    let h = Harness::start(registry, |c| c.worker.concurrency = 1).await;
    let done = h.job("count", "");
    let mut record = JobRecord::of(&done, JobState::Completed, 5);
    record.note = Some("ran elsewhere".into());
    h.backends.store.complete(&record).await.expect("complete");
    h.publish(&done).await;
    let fresh = h.job("count", "");
    h.publish(&fresh).await;
    h.wait_for(fresh.id, JobState::Completed).await;
    h.wait_settled().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "only the fresh job ran");
    let kept = h
        .backends
        .store
        .record(done.id)
        .await
        .expect("record")
        .expect("kept");
    assert_eq!(
        kept.note.as_deref(),
        Some("ran elsewhere"),
        "the duplicate wrote nothing"
    );
    h.stop().await.2.expect("clean stop");
}

#[tokio::test(start_paused = true)]
async fn a_job_cancelled_before_it_starts_never_runs() {
    let (registry, runs) = counting();
    let h = Harness::start(registry, |_| {}).await;
    let job = h.job("count", "");
    h.backends
        .store
        .request_cancel(job.id)
        .await
        .expect("cancel");
    h.publish(&job).await;
    let record = h.wait_for(job.id, JobState::Cancelled).await;
    assert!(
        record
            .note
            .as_deref()
            .is_some_and(|n| n.contains("before it started")),
        "{record:?}"
    );
    h.wait_settled().await;
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    h.stop().await.2.expect("clean stop");
}

#[tokio::test(start_paused = true)]
async fn a_job_ahead_of_its_run_at_goes_to_the_delayed_route_without_running() {
    let (registry, runs) = counting();
    let h = Harness::start(registry, |_| {}).await;
    // Published straight to the ready route with a run time 60 s ahead, as a producer in
    // another language can do.
    let due = h.backends.clock.now_ms() + 60_000;
    let job = h.job("count", "{}").with_run_at_ms(due);
    h.publish(&job).await;
    let deferred = h.next_job_on(Route::Delayed).await;
    assert_eq!((deferred.id, deferred.run_at_ms), (job.id, Some(due)));
    h.wait_settled().await;
    assert_eq!(runs.load(Ordering::SeqCst), 0, "never started early");
    // Due now: it runs.
    let ready = h
        .job("count", "{}")
        .with_run_at_ms(h.backends.clock.now_ms());
    h.publish(&ready).await;
    h.wait_for(ready.id, JobState::Completed).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    h.stop().await.2.expect("clean stop");
}
