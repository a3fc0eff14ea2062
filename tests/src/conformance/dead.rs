//! Failure paths: retries with backoff, death after the last attempt, bad messages on the
//! dead route, timeouts and panics, and replay from the dead-letter store.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jobfleet_common::broker::Message;
use jobfleet_common::codec::{self, Format};
use jobfleet_common::job::Backoff;
use jobfleet_common::limits::ENVELOPE_ALLOWANCE;
use jobfleet_common::store::{DeadFilter, JobState};
use jobfleet_common::{ErrorKind, Job, Priority, Route};
use jobfleet_worker::{JobContext, JobError, Registry};

use super::WITHIN;
use jobfleet_testkit::{wait_for, Ctx, Factory, Probe};

fn recording(kind: &str, probe: &Probe<(u32, i64)>, fail_while_attempt_le: u32) -> Registry {
    let mut registry = Registry::new();
    let p = probe.clone();
    registry.register_fn(kind.to_string(), move |ctx: JobContext| {
        let p = p.clone();
        async move {
            p.push((ctx.attempt(), jobfleet_common::clock::system_now_ms()));
            if ctx.attempt() <= fail_while_attempt_le {
                return Err(JobError::retryable(format!(
                    "attempt {} fails",
                    ctx.attempt()
                )));
            }
            Ok(())
        }
    });
    registry
}

/// A failing job is retried, later each time within its backoff, until it succeeds.
pub async fn retry_with_backoff_until_success(factory: &Factory) {
    let mut cx = Ctx::new(factory, |_| {}).await;
    let runs = Probe::default();
    cx.start_scheduler();
    cx.start_worker(recording("flaky", &runs, 2));
    let mut job = Job::new(&cx.queue, "flaky", "{}").with_max_attempts(5);
    job.backoff = Some(Backoff {
        base_ms: 100,
        cap_ms: 150,
    });
    let id = cx.producer.enqueue(job).await.expect("enqueued").id;

    let record = cx.wait_state(id, JobState::Completed, WITHIN).await;
    assert_eq!(record.attempt, 3, "completed on the third attempt");
    let runs = runs.items();
    assert_eq!(runs.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3]);
    for pair in runs.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        // Full jitter draws the delay from [0, ceiling]; ceiling(1) = 100ms, ceiling(2) =
        // 150ms (capped). Allow generous slack for scheduling on a loaded machine.
        assert!(
            (0..150 + 2_000).contains(&gap),
            "retry gap {gap}ms outside backoff bounds"
        );
    }
    cx.stop().await;
}

/// After exactly `max_attempts` failures the job is a dead letter with every error.
pub async fn dead_after_exactly_max_attempts_with_history(factory: &Factory) {
    let mut cx = Ctx::new(factory, |_| {}).await;
    let runs = Probe::default();
    cx.start_scheduler();
    cx.start_worker(recording("doomed", &runs, u32::MAX));
    let id = cx
        .producer
        .enqueue(Job::new(&cx.queue, "doomed", "{}").with_max_attempts(3))
        .await
        .expect("enqueued")
        .id;

    cx.wait_state(id, JobState::Dead, WITHIN).await;
    let letter = cx
        .backends
        .store
        .dead_get(id)
        .await
        .expect("store")
        .expect("dead letter");
    assert_eq!(letter.queue.as_deref(), Some(cx.queue.as_str()));
    assert_eq!(
        letter.errors.iter().map(|e| e.attempt).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(letter.errors.iter().all(|e| e.kind == ErrorKind::Failed));
    assert_eq!(letter.errors[2].message, "attempt 3 fails");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(runs.len(), 3, "ran exactly max_attempts times");
    cx.stop().await;
}

/// Undecodable, oversized, invalid and unknown-kind messages go to the dead route with
/// their reason, and the worker keeps going.
pub async fn undecodable_oversized_and_unknown_go_dead(factory: &Factory) {
    let mut cx = Ctx::new(factory, |c| c.limits.max_payload_bytes = 1024).await;
    let runs = Probe::default();
    cx.start_scheduler();
    cx.start_worker(recording("ok", &runs, 0));
    let ready = |body: Bytes, ct: Option<&str>| Message {
        content_type: ct.map(str::to_string),
        ..Message::new(Route::Ready(cx.queue.clone()), Priority::NORMAL, body, "")
    };
    let unknown = Job::new(&cx.queue, "no-such-kind", "{}");
    let invalid = format!(
        r#"{{"v":1,"id":"{}","queue":"{}","kind":"ok","priority":42}}"#,
        jobfleet_common::JobId::new(),
        cx.queue
    );
    cx.backends
        .broker
        .declare(std::slice::from_ref(&cx.queue))
        .await
        .expect("declare");
    cx.backends
        .broker
        .publish(vec![
            ready(Bytes::from_static(b"\x00\x01 not a job"), None),
            ready(Bytes::from(vec![b'x'; 1024 + ENVELOPE_ALLOWANCE + 1]), None),
            ready(
                codec::encode(&unknown, Format::Binary),
                Some(codec::POSTCARD_CONTENT_TYPE),
            ),
            ready(Bytes::from(invalid), Some(codec::JSON_CONTENT_TYPE)),
        ])
        .await
        .expect("published");
    let ok = cx
        .producer
        .enqueue(Job::new(&cx.queue, "ok", "{}"))
        .await
        .expect("enqueued")
        .id;
    cx.wait_state(ok, JobState::Completed, WITHIN).await;

    let store = cx.backends.store.clone();
    let all = DeadFilter::default();
    let four = wait_for(WITHIN, || async {
        store.dead_list(&all, 10).await.expect("list").len() == 4
    });
    assert!(four.await, "four dead letters");
    let letters = store.dead_list(&all, 10).await.expect("list");
    let kinds: BTreeSet<ErrorKind> = letters.iter().map(|l| l.error_kind).collect();
    let want = [
        ErrorKind::Undecodable,
        ErrorKind::Oversized,
        ErrorKind::UnknownKind,
        ErrorKind::Invalid,
    ];
    let seen: Vec<(ErrorKind, &str)> = letters
        .iter()
        .map(|l| (l.error_kind, l.reason.as_str()))
        .collect();
    assert_eq!(kinds, want.into_iter().collect(), "{seen:?}");
    let unknown_letter = letters
        .iter()
        .find(|l| l.error_kind == ErrorKind::UnknownKind)
        .expect("one");
    assert_eq!(unknown_letter.id, unknown.id);
    // Listings carry the body's size; the letter read alone carries the body.
    for listed in &letters {
        let whole = store
            .dead_get(listed.id)
            .await
            .expect("get")
            .expect("listed, so stored");
        assert_eq!(listed.body_bytes, whole.body.len() as u64, "{}", listed.id);
        assert!(!whole.body.is_empty(), "{} kept its body", listed.id);
    }
    assert!(
        unknown_letter.reason.contains("no-such-kind"),
        "{}",
        unknown_letter.reason
    );
    let invalid_letter = letters
        .iter()
        .find(|l| l.error_kind == ErrorKind::Invalid)
        .expect("one");
    assert!(
        invalid_letter.reason.contains("priority"),
        "{}",
        invalid_letter.reason
    );
    cx.stop().await;
}

/// A timeout and a panic are failed attempts of their own kinds; the worker survives both.
pub async fn timeout_and_panic_are_failed_attempts(factory: &Factory) {
    let mut cx = Ctx::new(factory, |_| {}).await;
    let mut registry = Registry::new();
    registry.register_fn("slow", |_ctx: JobContext| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(())
    });
    registry.register_fn("boom", |ctx: JobContext| async move {
        if ctx.attempt() > 0 {
            panic!("handler bug");
        }
        Ok(())
    });
    registry.register_fn("ok", |_ctx: JobContext| async move { Ok(()) });
    cx.start_scheduler();
    cx.start_worker(registry);
    let slow = Job::new(&cx.queue, "slow", "{}")
        .with_timeout_ms(100)
        .with_max_attempts(1);
    let boom = Job::new(&cx.queue, "boom", "{}").with_max_attempts(1);
    let ids: Vec<_> = cx
        .producer
        .enqueue_many(vec![slow, boom])
        .await
        .expect("enqueued");
    for (enq, kind) in ids.iter().zip([ErrorKind::Timeout, ErrorKind::Panic]) {
        cx.wait_state(enq.id, JobState::Dead, WITHIN).await;
        let letter = cx
            .backends
            .store
            .dead_get(enq.id)
            .await
            .expect("store")
            .expect("letter");
        assert_eq!(
            letter.errors.last().map(|e| e.kind),
            Some(kind),
            "{letter:?}"
        );
    }
    let ok = cx
        .producer
        .enqueue(Job::new(&cx.queue, "ok", "{}"))
        .await
        .expect("enqueued")
        .id;
    cx.wait_state(ok, JobState::Completed, WITHIN).await;
    cx.stop().await;
}

/// A dead job replayed from the dead-letter store runs again from attempt 1.
pub async fn dlq_replay_runs_the_job_again(factory: &Factory) {
    let mut cx = Ctx::new(factory, |_| {}).await;
    let broken = Arc::new(AtomicBool::new(true));
    let mut registry = Registry::new();
    let b = broken.clone();
    registry.register_fn("gate", move |_ctx: JobContext| {
        let b = b.clone();
        async move {
            if b.load(Ordering::SeqCst) {
                return Err(JobError::retryable("downstream is down"));
            }
            Ok(())
        }
    });
    cx.start_scheduler();
    cx.start_worker(registry);
    let job = Job::new(&cx.queue, "gate", "{}").with_max_attempts(2);
    let id = cx.producer.enqueue(job).await.expect("enqueued").id;
    cx.wait_state(id, JobState::Dead, WITHIN).await;

    broken.store(false, Ordering::SeqCst);
    let filter = DeadFilter {
        queue: Some(cx.queue.clone()),
        ..DeadFilter::default()
    };
    jobfleet_scheduler::ops::dlq_replay(
        &*cx.backends.store,
        &*cx.backends.broker,
        &*cx.backends.clock,
        &cx.config.limits,
        &filter,
        &[id],
        10,
    )
    .await
    .expect("replayed");
    let record = cx.wait_state(id, JobState::Completed, WITHIN).await;
    assert_eq!(record.attempt, 1, "replay resets attempts");
    assert!(
        cx.backends
            .store
            .dead_get(id)
            .await
            .expect("store")
            .is_none(),
        "letter removed"
    );
    cx.stop().await;
}
