//! Records for the store backends' own tests, so every backend tests the same data.

use bytes::Bytes;

use super::{DeadLetter, ScheduledJob, WorkerInfo};
use crate::job::{ErrorKind, JobId};

/// A dead letter of kind `email` in `queue`, died at `died_at_ms`, with a binary body.
pub fn letter(queue: Option<&str>, kind: ErrorKind, died_at_ms: i64) -> DeadLetter {
    DeadLetter {
        id: JobId::new(),
        queue: queue.map(str::to_string),
        kind: Some("email".into()),
        reason: format!("gave up: {kind}"),
        error_kind: kind,
        errors: Vec::new(),
        died_at_ms,
        body: Bytes::from_static(b"\x00binary\xff"),
        content_type: None,
    }
}

/// A worker named `id` on queue `q`.
pub fn worker(id: &str) -> WorkerInfo {
    WorkerInfo {
        id: id.into(),
        host: "h".into(),
        pid: 1,
        queues: vec!["q".into()],
        concurrency: 4,
        running: 0,
        started_at_ms: 0,
        last_seen_ms: 0,
    }
}

/// A job of `queue` due at `due_ms`, its body naming both so bodies tell jobs apart.
pub fn scheduled(queue: &str, due_ms: i64) -> ScheduledJob {
    ScheduledJob {
        id: JobId::new(),
        queue: queue.into(),
        due_ms,
        body: Bytes::from(format!("body of {queue}@{due_ms}")),
    }
}

/// The execution-lease behaviour every store must show, on `store`; `sleep(ms)` lets
/// that much of the store's time pass (real time on Redis, paused time when embedded).
pub async fn executions<S, F, Fut>(store: &S, sleep: F) -> super::StoreResult<()>
where
    S: super::Executions + super::JobStates + ?Sized,
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use super::{Admission, JobRecord, JobState, LeaseRequest};
    let req = |holder: &str| LeaseRequest {
        holder: holder.into(),
        ttl_ms: 300,
        max_crashes: 2,
    };
    let id = JobId::new();
    let first = store.admit(id, None, &req("a")).await?;
    assert_eq!(
        first,
        Admission::Clear {
            token: 1,
            crashes: 0
        }
    );
    match store.admit(id, None, &req("b")).await? {
        Admission::Busy { remaining_ms } => assert!(
            (1..=300).contains(&remaining_ms),
            "remaining {remaining_ms}"
        ),
        other => panic!("a live lease refuses others: {other:?}"),
    }
    assert!(store.lease_renew(id, "a", 300).await?, "the holder renews");
    assert!(!store.lease_renew(id, "b", 300).await?, "others do not");
    store.lease_release(id, "b").await?;
    let still = store.admit(id, None, &req("b")).await?;
    assert!(
        matches!(still, Admission::Busy { .. }),
        "only the holder releases: {still:?}"
    );

    store.lease_release(id, "a").await?;
    let second = store.admit(id, None, &req("b")).await?;
    assert_eq!(
        second,
        Admission::Clear {
            token: 2,
            crashes: 0
        },
        "a released lease is no crash"
    );
    sleep(400).await;
    let third = store.admit(id, None, &req("c")).await?;
    assert_eq!(
        third,
        Admission::Clear {
            token: 3,
            crashes: 1
        },
        "b's lease expired unreleased"
    );
    assert!(
        !store.lease_renew(id, "b", 300).await?,
        "b's lease is c's now"
    );
    sleep(400).await;
    let refused = store.admit(id, None, &req("d")).await?;
    assert_eq!(refused, Admission::Crashed { crashes: 2 });
    let again = store.admit(id, None, &req("e")).await?;
    assert_eq!(
        again,
        Admission::Crashed { crashes: 2 },
        "a crash is counted once"
    );

    let job = crate::job::Job::new("q", "k", "{}");
    let running = JobRecord::of(&job, JobState::Running, 5);
    store
        .complete(&JobRecord::of(&job, JobState::Completed, 4))
        .await?;
    let done = store.admit(job.id, Some(&running), &req("a")).await?;
    assert_eq!(done, Admission::Completed);
    assert_eq!(
        store.record(job.id).await?.map(|r| r.state),
        Some(JobState::Completed)
    );

    let job = crate::job::Job::new("q", "k", "{}");
    store.request_cancel(job.id).await?;
    let running = JobRecord::of(&job, JobState::Running, 5);
    let cancelled = store.admit(job.id, Some(&running), &req("a")).await?;
    assert_eq!(cancelled, Admission::CancelRequested);
    assert_eq!(
        store.record(job.id).await?,
        None,
        "a cancelled job is not marked running"
    );

    let job = crate::job::Job::new("q", "k", "{}");
    let busy_id = job.id;
    store.admit(busy_id, None, &req("a")).await?;
    let running = JobRecord::of(&job, JobState::Running, 5);
    let busy = store.admit(busy_id, Some(&running), &req("b")).await?;
    assert!(matches!(busy, Admission::Busy { .. }), "{busy:?}");
    assert_eq!(
        store.record(busy_id).await?,
        None,
        "a busy admission writes nothing"
    );
    Ok(())
}
