//! The execution lease that keeps a job from running twice at once.

use std::time::Duration;

use jobfleet_common::store::{Admission, JobRecord, JobState, LeaseRequest};
use jobfleet_common::{Job, JobId, Store};
use tokio::time::sleep;

use super::Checked;

/// The execution lease: one live holder at a time, renewed and released only by it; a
/// lease that expired unreleased counts as a crash, once, up to the job's limit; a
/// completed or cancel-requested job is not admitted, and a busy admission writes nothing.
pub async fn execution_leases_admit_one_holder_and_count_crashes(store: &dyn Store) -> Checked {
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
    sleep(Duration::from_millis(400)).await;
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
    sleep(Duration::from_millis(400)).await;
    let refused = store.admit(id, None, &req("d")).await?;
    assert_eq!(refused, Admission::Crashed { crashes: 2 });
    let again = store.admit(id, None, &req("e")).await?;
    assert_eq!(
        again,
        Admission::Crashed { crashes: 2 },
        "a crash is counted once"
    );

    let job = Job::new("q", "k", "{}");
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

    let job = Job::new("q", "k", "{}");
    store.request_cancel(job.id).await?;
    let running = JobRecord::of(&job, JobState::Running, 5);
    let cancelled = store.admit(job.id, Some(&running), &req("a")).await?;
    assert_eq!(cancelled, Admission::CancelRequested);
    assert_eq!(
        store.record(job.id).await?,
        None,
        "a cancelled job is not marked running"
    );

    let job = Job::new("q", "k", "{}");
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
