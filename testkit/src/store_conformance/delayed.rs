//! The delayed set: due jobs claimed in due order under a lease and counted until
//! released, an expired lease handing its jobs back, rescheduling and removal.

use std::collections::BTreeMap;

use jobfleet_common::store::ScheduledJob;
use jobfleet_common::{JobId, Store};

use super::fixtures::scheduled as job;
use super::Checked;

fn ids(jobs: &[ScheduledJob]) -> Vec<JobId> {
    jobs.iter().map(|j| j.id).collect()
}

/// Claims take due jobs earliest first, up to the limit, and never twice; claimed jobs
/// count (per queue) until released.
pub async fn claims_due_jobs_in_order_and_counts_until_released(store: &dyn Store) -> Checked {
    let (a, b, c, later) = (job("q", 30), job("q", 10), job("r", 20), job("q", 500));
    store
        .schedule(vec![a.clone(), b.clone(), c.clone(), later.clone()])
        .await?;
    assert_eq!(store.next_due_ms().await?, Some(10));
    assert_eq!(
        store.claim_due(100, 2, 1_000).await?,
        [b.clone(), c.clone()]
    );
    assert_eq!(ids(&store.claim_due(100, 10, 1_000).await?), [a.id]);
    assert!(
        store.claim_due(100, 10, 1_000).await?.is_empty(),
        "claimed jobs stay claimed"
    );
    assert_eq!(store.next_due_ms().await?, Some(500));
    let counts = BTreeMap::from([("q".to_string(), 3), ("r".to_string(), 1)]);
    assert_eq!(
        store.delayed_counts().await?,
        counts,
        "claimed jobs count until released"
    );
    store.release_done(&[a.id, b.id, c.id]).await?;
    assert_eq!(
        store.delayed_counts().await?,
        BTreeMap::from([("q".to_string(), 1)])
    );
    Ok(())
}

/// A claim whose lease ran out unreleased is claimed again, with its due time kept.
pub async fn an_expired_lease_returns_its_jobs(store: &dyn Store) -> Checked {
    let a = job("q", 10);
    store.schedule(vec![a.clone()]).await?;
    assert_eq!(
        store.claim_due(100, 10, 50).await?,
        std::slice::from_ref(&a)
    );
    assert!(
        store.claim_due(149, 10, 50).await?.is_empty(),
        "lease still holds"
    );
    assert_eq!(
        store.claim_due(150, 10, 50).await?,
        std::slice::from_ref(&a),
        "due time kept"
    );
    store.release_done(&[a.id]).await?;
    assert!(store.claim_due(1_000, 10, 50).await?.is_empty());
    assert!(store.delayed_counts().await?.is_empty());
    Ok(())
}

/// Scheduling an id again moves it, counted once; a claimed job scheduled again starts a
/// new wait, which the old claim's release must not drop.
pub async fn rescheduling_moves_a_job_without_double_counting(store: &dyn Store) -> Checked {
    let mut a = job("q", 10);
    store.schedule(vec![a.clone()]).await?;
    a.due_ms = 300;
    store.schedule(vec![a.clone()]).await?;
    assert!(store.claim_due(100, 10, 50).await?.is_empty());
    assert_eq!(
        store.delayed_counts().await?,
        BTreeMap::from([("q".to_string(), 1)])
    );

    assert_eq!(ids(&store.claim_due(300, 10, 50).await?), [a.id]);
    a.due_ms = 1_000;
    a.queue = "r".into();
    store.schedule(vec![a.clone()]).await?;
    store.release_done(&[a.id]).await?;
    assert_eq!(
        store.delayed_counts().await?,
        BTreeMap::from([("r".to_string(), 1)])
    );
    assert_eq!(store.claim_due(1_000, 10, 50).await?, [a]);
    Ok(())
}

/// Unscheduling removes a waiting job and hands its body back; a claimed job (perhaps
/// published already) is removed without counting as waiting.
pub async fn unschedule_removes_waiting_and_claimed_jobs(store: &dyn Store) -> Checked {
    let (a, b) = (job("q", 10), job("q", 20));
    store.schedule(vec![a.clone(), b.clone()]).await?;
    assert_eq!(
        store.unschedule(a.id).await?,
        Some(a.body.clone()),
        "its body"
    );
    assert!(store.unschedule(a.id).await?.is_none(), "already gone");
    assert_eq!(ids(&store.claim_due(100, 10, 1_000).await?), [b.id]);
    assert!(
        store.unschedule(b.id).await?.is_none(),
        "claimed, maybe published: not waiting"
    );
    assert!(store.delayed_counts().await?.is_empty());
    assert_eq!(store.next_due_ms().await?, None);
    Ok(())
}
