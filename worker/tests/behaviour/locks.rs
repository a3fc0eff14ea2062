//! Jobs with locks: fencing, conflicts (requeue and skip), and a lock lost mid-run.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use jobfleet_common::broker::Route;
use jobfleet_common::job::ConflictPolicy;
use jobfleet_common::store::{JobState, LockRequest};
use jobfleet_common::{ErrorKind, LockMode, LockSpec, Store};
use tokio_util::sync::CancellationToken;

use super::Harness;
use jobfleet_worker::{JobError, Registry};

fn spec(key: &str, on_conflict: ConflictPolicy) -> LockSpec {
    LockSpec {
        key: key.into(),
        mode: LockMode::Exclusive,
        on_conflict,
    }
}

/// Takes `key` for someone other than the worker.
async fn hold(store: &Arc<dyn Store>, key: &str) -> LockRequest {
    let request = LockRequest {
        key: key.into(),
        mode: LockMode::Exclusive,
        holder: "someone-else".into(),
        ttl_ms: 3_600_000,
    };
    assert!(store
        .lock_acquire(&request)
        .await
        .expect("acquire")
        .is_some());
    request
}

#[tokio::test(start_paused = true)]
async fn a_locked_job_writes_fenced_and_releases_its_lock() {
    let mut registry = Registry::new();
    registry.register_fn("write", |ctx| async move {
        assert!(ctx.fence().is_some());
        let written = ctx
            .fenced_write("report", Bytes::from_static(b"v1"))
            .await?;
        written
            .then_some(())
            .ok_or_else(|| JobError::retryable("fenced out"))
    });
    registry.register_fn("unlocked", |ctx| async move {
        let e = ctx
            .fenced_write("report", Bytes::new())
            .await
            .expect_err("no lock, no write");
        assert!(e.is_permanent());
        Ok(())
    });
    let h = Harness::start(registry, |_| {}).await;
    let job = h
        .job("write", "")
        .with_lock(spec("res", ConflictPolicy::Requeue));
    h.publish(&job).await;
    h.wait_for(job.id, JobState::Completed).await;
    let (_, value) = h
        .backends
        .store
        .fenced_read("report")
        .await
        .expect("read")
        .expect("written");
    assert_eq!(value, "v1");
    h.wait_settled().await;
    hold(&h.backends.store, "res").await;
    let plain = h.job("unlocked", "");
    h.publish(&plain).await;
    h.wait_for(plain.id, JobState::Completed).await;
    h.stop().await.2.expect("clean stop");
}

#[tokio::test(start_paused = true)]
async fn a_lock_conflict_requeues_through_the_delayed_route() {
    let h = Harness::start(Registry::with_builtins(), |_| {}).await;
    hold(&h.backends.store, "busy").await;
    let job = h
        .job("echo", "")
        .with_lock(spec("busy", ConflictPolicy::Requeue));
    let before = h.backends.clock.now_ms();
    h.publish(&job).await;
    let delayed = h.next_job_on(Route::Delayed).await;
    let after = h.backends.clock.now_ms();
    assert_eq!(
        (delayed.id, delayed.attempt),
        (job.id, 1),
        "no attempt counted"
    );
    assert!(delayed.errors.is_empty());
    let run_at = delayed.run_at_ms.expect("a run time");
    assert!(
        (before + 1_000..=after + 1_000).contains(&run_at),
        "{run_at} vs {before}..{after}"
    );
    h.wait_settled().await;
    h.stop().await.2.expect("clean stop");
}

#[tokio::test(start_paused = true)]
async fn a_lock_conflict_with_skip_ends_cancelled() {
    let h = Harness::start(Registry::with_builtins(), |_| {}).await;
    hold(&h.backends.store, "busy").await;
    let job = h
        .job("echo", "")
        .with_lock(spec("busy", ConflictPolicy::Skip));
    h.publish(&job).await;
    let record = h.wait_for(job.id, JobState::Cancelled).await;
    assert_eq!(record.note.as_deref(), Some("skipped: lock busy held"));
    h.wait_settled().await;
    assert_eq!(h.depth(Route::Delayed).await.ready, 0);
    h.stop().await.2.expect("clean stop");
}

#[tokio::test(start_paused = true)]
async fn a_lost_lock_cancels_the_handler_and_fails_the_attempt() {
    let token = Arc::new(OnceLock::<CancellationToken>::new());
    let store = Arc::new(OnceLock::<Arc<dyn Store>>::new());
    let mut registry = Registry::new();
    let (token_seen, store_seen) = (token.clone(), store.clone());
    registry.register_fn("greedy", move |ctx| {
        let (token, store) = (token_seen.clone(), store_seen.clone());
        async move {
            let _ = token.set(ctx.cancelled().clone());
            // The lock expiring under the worker, simulated: its hold vanishes.
            let lock = ctx.job().lock.clone().expect("a lock");
            let mine = LockRequest {
                key: lock.key,
                mode: lock.mode,
                holder: format!("{}:{}", ctx.worker_id(), ctx.job().id),
                ttl_ms: 1,
            };
            store
                .get()
                .expect("set")
                .lock_release(&mine)
                .await
                .expect("release");
            ctx.cancelled().cancelled().await;
            Ok(())
        }
    });
    let h = Harness::start(registry, |_| {}).await;
    assert!(store.set(h.backends.store.clone()).is_ok());
    let job = h
        .job("greedy", "")
        .with_lock(spec("lease", ConflictPolicy::Requeue));
    h.publish(&job).await;
    let failed = h.next_job_on(Route::Failed).await;
    let last = failed.last_error().expect("an error");
    assert_eq!(last.kind, ErrorKind::LockLost);
    assert!(last.message.contains("lease"), "{last:?}");
    assert!(token.get().expect("the handler ran").is_cancelled());
    h.wait_settled().await;
    hold(&h.backends.store, "lease").await;
    h.stop().await.2.expect("clean stop");
}
