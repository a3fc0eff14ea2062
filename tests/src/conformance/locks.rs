//! Locks: exclusive jobs never overlap and see increasing fencing tokens, shared jobs run
//! together but never beside an exclusive one, `skip` drops a conflicting job, and a lost
//! lock cancels its handler.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobfleet_common::job::{ConflictPolicy, LockMode, LockSpec};
use jobfleet_common::store::{JobState, LockRequest};
use jobfleet_common::{ErrorKind, Job, JobId};
use jobfleet_worker::{JobContext, Registry};

use super::WITHIN;
use crate::faults::FaultyStore;
use jobfleet_testkit::{wait_for, Ctx, Factory, Probe};

fn lock(key: &str, mode: LockMode, on_conflict: ConflictPolicy) -> LockSpec {
    LockSpec {
        key: key.to_string(),
        mode,
        on_conflict,
    }
}

async fn wait_all(cx: &Ctx, ids: &[JobId], state: JobState) {
    for &id in ids {
        cx.wait_state(id, state, WITHIN).await;
    }
}

/// Jobs sharing an exclusive lock never run at once, and each run's fencing token is
/// greater than the one before it.
pub async fn exclusive_lock_serialises_with_increasing_fences(factory: &Factory) {
    let mut cx = Ctx::new(factory, |_| {}).await;
    let key = jobfleet_testkit::unique("lock");
    let active = Arc::new(Mutex::new((0u32, 0u32)));
    let fences: Probe<u64> = Probe::default();
    cx.start_scheduler();
    for _ in 0..2 {
        cx.start_worker(exclusive_probe(&active, &fences));
    }
    let jobs: Vec<Job> = (0..12)
        .map(|_| {
            let spec = lock(&key, LockMode::Exclusive, ConflictPolicy::Requeue);
            Job::new(&cx.queue, "locked", "{}").with_lock(spec)
        })
        .collect();
    let ids: Vec<JobId> = cx
        .producer
        .enqueue_many(jobs)
        .await
        .expect("enqueued")
        .iter()
        .map(|e| e.id)
        .collect();
    wait_all(&cx, &ids, JobState::Completed).await;
    assert_eq!(
        active.lock().expect("lock").1,
        1,
        "never two holders at once"
    );
    let fences = fences.items();
    assert_eq!(fences.len(), 12, "each job ran once");
    assert!(
        fences.windows(2).all(|w| w[0] < w[1]),
        "fences strictly increase: {fences:?}"
    );
    cx.stop().await;
}

/// A registry whose `locked` handler counts holders at once (now, most) and records
/// fencing tokens in start order.
fn exclusive_probe(active: &Arc<Mutex<(u32, u32)>>, fences: &Probe<u64>) -> Registry {
    let mut registry = Registry::new();
    let (a, f) = (active.clone(), fences.clone());
    registry.register_fn("locked", move |ctx: JobContext| {
        let (a, f) = (a.clone(), f.clone());
        async move {
            {
                let mut g = a.lock().expect("lock");
                g.0 += 1;
                g.1 = g.1.max(g.0);
                f.push(ctx.fence().expect("locked jobs carry a fence"));
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
            a.lock().expect("lock").0 -= 1;
            Ok(())
        }
    });
    registry
}

/// Shared holders overlap; an exclusive holder never overlaps any other holder.
pub async fn shared_locks_run_together_but_not_beside_exclusive(factory: &Factory) {
    let mut cx = Ctx::new(factory, |c| c.worker.concurrency = 6).await;
    let key = jobfleet_testkit::unique("rw");
    // (shared running, exclusive running, most shared at once, violations)
    let state = Arc::new(Mutex::new((0u32, 0u32, 0u32, 0u32)));
    let mut registry = Registry::new();
    let s = state.clone();
    registry.register_fn("rw", move |ctx: JobContext| {
        let s = s.clone();
        async move {
            let exclusive = ctx
                .job()
                .lock
                .as_ref()
                .is_some_and(|l| l.mode == LockMode::Exclusive);
            {
                let mut g = s.lock().expect("lock");
                let clash = if exclusive {
                    g.0 > 0 || g.1 > 0
                } else {
                    g.1 > 0
                };
                g.3 += u32::from(clash);
                if exclusive {
                    g.1 += 1
                } else {
                    g.0 += 1
                }
                g.2 = g.2.max(g.0);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut g = s.lock().expect("lock");
            if exclusive {
                g.1 -= 1
            } else {
                g.0 -= 1
            }
            Ok(())
        }
    });
    cx.start_scheduler();
    cx.start_worker(registry);
    let mut jobs: Vec<Job> = (0..4)
        .map(|_| {
            Job::new(&cx.queue, "rw", "{}").with_lock(lock(
                &key,
                LockMode::Shared,
                ConflictPolicy::Requeue,
            ))
        })
        .collect();
    jobs.insert(
        2,
        Job::new(&cx.queue, "rw", "{}").with_lock(lock(
            &key,
            LockMode::Exclusive,
            ConflictPolicy::Requeue,
        )),
    );
    let ids: Vec<JobId> = cx
        .producer
        .enqueue_many(jobs)
        .await
        .expect("enqueued")
        .iter()
        .map(|e| e.id)
        .collect();
    wait_all(&cx, &ids, JobState::Completed).await;
    let (_, _, most_shared, violations) = *state.lock().expect("lock");
    assert_eq!(
        violations, 0,
        "an exclusive holder overlapped another holder"
    );
    assert!(
        most_shared >= 2,
        "shared holders never overlapped (most at once: {most_shared})"
    );
    cx.stop().await;
}

/// With policy `skip`, a job whose lock is held ends cancelled without running.
pub async fn lock_conflict_skip_ends_cancelled(factory: &Factory) {
    let mut cx = Ctx::new(factory, |_| {}).await;
    let key = jobfleet_testkit::unique("held");
    let holder = LockRequest {
        key: key.clone(),
        mode: LockMode::Exclusive,
        holder: "test".into(),
        ttl_ms: 30_000,
    };
    assert!(cx
        .backends
        .store
        .lock_acquire(&holder)
        .await
        .expect("store")
        .is_some());
    let ran: Probe<()> = Probe::default();
    let mut registry = Registry::new();
    let p = ran.clone();
    registry.register_fn("skipme", move |_ctx: JobContext| {
        let p = p.clone();
        async move {
            p.push(());
            Ok(())
        }
    });
    cx.start_worker(registry);
    let job = Job::new(&cx.queue, "skipme", "{}").with_lock(lock(
        &key,
        LockMode::Exclusive,
        ConflictPolicy::Skip,
    ));
    let id = cx.producer.enqueue(job).await.expect("enqueued").id;
    let record = cx.wait_state(id, JobState::Cancelled, WITHIN).await;
    assert!(
        record
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("skipped"),
        "{record:?}"
    );
    assert!(ran.is_empty(), "a skipped job never runs");
    cx.backends
        .store
        .lock_release(&holder)
        .await
        .expect("release");
    cx.stop().await;
}

/// When lock renewal fails mid-run the handler is cancelled and the attempt fails as
/// `lock_lost`.
pub async fn lock_loss_cancels_the_handler(factory: &Factory) {
    let mut cx = Ctx::new(factory, |c| c.worker.lock_ttl = Duration::from_millis(300)).await;
    let faulty = FaultyStore::new(cx.backends.store.clone());
    faulty.lose_locks.store(true, Ordering::SeqCst);
    cx.backends.store = faulty;
    let events: Probe<&'static str> = Probe::default();
    let mut registry = Registry::new();
    let p = events.clone();
    registry.register_fn("long", move |_ctx: JobContext| {
        let p = p.clone();
        async move {
            p.push("started");
            tokio::time::sleep(Duration::from_secs(8)).await;
            p.push("finished");
            Ok(())
        }
    });
    cx.start_scheduler();
    cx.start_worker(registry);
    let key = jobfleet_testkit::unique("lost");
    let job = Job::new(&cx.queue, "long", "{}")
        .with_lock(lock(&key, LockMode::Exclusive, ConflictPolicy::Requeue))
        .with_max_attempts(1);
    let id = cx.producer.enqueue(job).await.expect("enqueued").id;
    let dead = cx
        .wait_state(id, JobState::Dead, Duration::from_secs(5))
        .await;
    assert_eq!(dead.last_error.map(|e| e.kind), Some(ErrorKind::LockLost));
    assert!(wait_for(WITHIN, || async { !events.is_empty() }).await);
    assert_eq!(
        events.items(),
        ["started"],
        "the handler was stopped, not left to finish"
    );
    cx.stop().await;
}
