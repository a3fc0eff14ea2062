//! The Redis delayed set: a ZSET of waiting jobs by due time, a ZSET of claimed jobs by
//! lease expiry, and hashes for bodies, queues, due times and per-queue counts.
//!
//! Every change goes through a script that updates the sets, the hashes and the counts
//! together, so counts never drift from the sets and two schedulers claiming at once
//! never get the same job.

use crate::IntoStore as _;
use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use redis::AsyncCommands;

use super::scripts::{CLAIM_DUE, RELEASE_DONE, SCHEDULE, SCHEDULE_LUA, UNSCHEDULE};
use super::{parse_id, RedisStore};
use jobfleet_common::job::JobId;
use jobfleet_common::store::{DelayedSet, ScheduledJob, StoreError, StoreResult};

/// Jobs per schedule script run: bounds how long one run holds the server.
const SCHEDULE_CHUNK: usize = 500;

/// One claimed job as the claim script returns it: id, body, queue, due.
type ClaimedRow = (String, Option<Vec<u8>>, Option<String>, Option<i64>);

impl RedisStore {
    /// The delayed-set keys, in the order the scripts take them: waiting, releasing, body,
    /// queue, due, counts.
    pub(super) fn delayed_keys(&self) -> [String; 6] {
        ["waiting", "releasing", "body", "queue", "due", "counts"]
            .map(|part| self.keys.key(&format!("delayed:{part}")))
    }
}

/// ARGV for the schedule script: id, queue, due, body per job.
fn schedule_args(jobs: &[ScheduledJob]) -> Vec<Vec<u8>> {
    let mut args = Vec::with_capacity(jobs.len() * 4);
    for job in jobs {
        args.push(job.id.to_string().into_bytes());
        args.push(job.queue.clone().into_bytes());
        args.push(job.due_ms.to_string().into_bytes());
        args.push(job.body.to_vec());
    }
    args
}

fn claimed_job((id, body, queue, due): ClaimedRow) -> StoreResult<ScheduledJob> {
    let missing = |what: &str| StoreError::Corrupt(format!("delayed job {id}: no {what}"));
    Ok(ScheduledJob {
        id: parse_id(&id)?,
        queue: queue.ok_or_else(|| missing("queue"))?,
        due_ms: due.ok_or_else(|| missing("due time"))?,
        body: Bytes::from(body.ok_or_else(|| missing("body"))?),
    })
}

#[async_trait]
impl DelayedSet for RedisStore {
    async fn schedule(&self, jobs: Vec<ScheduledJob>) -> StoreResult<()> {
        let keys = self.delayed_keys();
        let mut conn = self.conn();
        if jobs.len() <= SCHEDULE_CHUNK {
            if jobs.is_empty() {
                return Ok(());
            }
            let mut call = SCHEDULE.prepare_invoke();
            call.key(&keys[..]).arg(schedule_args(&jobs));
            return call.invoke_async(&mut conn).await.store();
        }
        // Many jobs: one pipeline of script runs, each atomic on its own. Loading the
        // script first in the same pipeline makes every EVALSHA find it.
        let mut pipe = redis::pipe();
        pipe.cmd("SCRIPT").arg("LOAD").arg(SCHEDULE_LUA).ignore();
        for chunk in jobs.chunks(SCHEDULE_CHUNK) {
            pipe.cmd("EVALSHA")
                .arg(SCHEDULE.get_hash())
                .arg(keys.len())
                .arg(&keys[..])
                .arg(schedule_args(chunk))
                .ignore();
        }
        pipe.query_async(&mut conn).await.store()
    }

    async fn claim_due(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: u64,
    ) -> StoreResult<Vec<ScheduledJob>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let keys = self.delayed_keys();
        let until = now_ms.saturating_add(i64::try_from(lease_ms).unwrap_or(i64::MAX));
        let rows: Vec<ClaimedRow> = CLAIM_DUE
            .key(&keys[..5])
            .arg(now_ms)
            .arg(limit)
            .arg(until)
            .invoke_async(&mut self.conn())
            .await
            .store()?;
        rows.into_iter().map(claimed_job).collect()
    }

    async fn release_done(&self, ids: &[JobId]) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let keys = self.delayed_keys();
        let ids: Vec<String> = ids.iter().map(JobId::to_string).collect();
        Ok(RELEASE_DONE
            .key(&keys[1..])
            .arg(ids)
            .invoke_async(&mut self.conn())
            .await
            .store()?)
    }

    async fn unschedule(&self, id: JobId) -> StoreResult<Option<Bytes>> {
        let keys = self.delayed_keys();
        let body: Option<Vec<u8>> = UNSCHEDULE
            .key(&keys[..])
            .arg(id.to_string())
            .invoke_async(&mut self.conn())
            .await
            .store()?;
        Ok(body.map(Bytes::from))
    }

    async fn next_due_ms(&self) -> StoreResult<Option<i64>> {
        let [waiting, ..] = self.delayed_keys();
        let first: Vec<(String, f64)> =
            self.conn().zrange_withscores(waiting, 0, 0).await.store()?;
        // Scores are integral ms, exact in an f64 for any plausible date.
        Ok(first.first().map(|(_, due)| *due as i64))
    }

    async fn delayed_counts(&self) -> StoreResult<BTreeMap<String, u64>> {
        let [.., counts] = self.delayed_keys();
        self.queue_counts(counts).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::*;
    use crate::testkit::TestStore;
    use jobfleet_common::store::fixtures::scheduled as job;

    fn ids(jobs: &[ScheduledJob]) -> Vec<JobId> {
        jobs.iter().map(|j| j.id).collect()
    }

    #[tokio::test]
    async fn claims_due_jobs_in_order_and_counts_until_released() -> StoreResult<()> {
        let t = TestStore::new().await;
        let (a, b, c, later) = (job("q", 30), job("q", 10), job("r", 20), job("q", 500));
        t.schedule(vec![a.clone(), b.clone(), c.clone(), later.clone()])
            .await?;
        assert_eq!(t.next_due_ms().await?, Some(10));
        assert_eq!(t.claim_due(100, 2, 1_000).await?, [b.clone(), c.clone()]);
        assert_eq!(ids(&t.claim_due(100, 10, 1_000).await?), [a.id]);
        assert!(
            t.claim_due(100, 10, 1_000).await?.is_empty(),
            "claimed jobs stay claimed"
        );
        assert_eq!(t.next_due_ms().await?, Some(500));
        let counts = BTreeMap::from([("q".to_string(), 3), ("r".to_string(), 1)]);
        assert_eq!(
            t.delayed_counts().await?,
            counts,
            "claimed jobs count until released"
        );
        t.release_done(&[a.id, b.id, c.id]).await?;
        assert_eq!(
            t.delayed_counts().await?,
            BTreeMap::from([("q".to_string(), 1)])
        );
        t.cleanup().await;
        Ok(())
    }

    #[tokio::test]
    async fn an_expired_lease_returns_its_jobs() -> StoreResult<()> {
        let t = TestStore::new().await;
        let a = job("q", 10);
        t.schedule(vec![a.clone()]).await?;
        assert_eq!(t.claim_due(100, 10, 50).await?, std::slice::from_ref(&a));
        assert!(
            t.claim_due(149, 10, 50).await?.is_empty(),
            "lease still holds"
        );
        assert_eq!(
            t.claim_due(150, 10, 50).await?,
            std::slice::from_ref(&a),
            "due time kept"
        );
        t.release_done(&[a.id]).await?;
        assert!(t.claim_due(1_000, 10, 50).await?.is_empty());
        assert!(t.delayed_counts().await?.is_empty());
        t.cleanup().await;
        Ok(())
    }

    #[tokio::test]
    async fn rescheduling_moves_a_job_without_double_counting() -> StoreResult<()> {
        let t = TestStore::new().await;
        let mut a = job("q", 10);
        t.schedule(vec![a.clone()]).await?;
        a.due_ms = 300;
        t.schedule(vec![a.clone()]).await?;
        assert!(t.claim_due(100, 10, 50).await?.is_empty());
        assert_eq!(
            t.delayed_counts().await?,
            BTreeMap::from([("q".to_string(), 1)])
        );

        // A claimed job scheduled again starts a new wait: the old release must not drop it.
        assert_eq!(ids(&t.claim_due(300, 10, 50).await?), [a.id]);
        a.due_ms = 1_000;
        a.queue = "r".into();
        t.schedule(vec![a.clone()]).await?;
        t.release_done(&[a.id]).await?;
        assert_eq!(
            t.delayed_counts().await?,
            BTreeMap::from([("r".to_string(), 1)])
        );
        assert_eq!(t.claim_due(1_000, 10, 50).await?, [a]);
        t.cleanup().await;
        Ok(())
    }

    #[tokio::test]
    async fn unschedule_removes_waiting_and_claimed_jobs() -> StoreResult<()> {
        let t = TestStore::new().await;
        let (a, b) = (job("q", 10), job("q", 20));
        t.schedule(vec![a.clone(), b.clone()]).await?;
        assert_eq!(t.unschedule(a.id).await?, Some(a.body.clone()), "its body");
        assert!(t.unschedule(a.id).await?.is_none(), "already gone");
        assert_eq!(ids(&t.claim_due(100, 10, 1_000).await?), [b.id]);
        assert!(
            t.unschedule(b.id).await?.is_none(),
            "claimed, maybe published: not waiting"
        );
        assert!(t.delayed_counts().await?.is_empty());
        assert_eq!(t.next_due_ms().await?, None);
        t.cleanup().await;
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_claimers_never_share_a_job() -> StoreResult<()> {
        let t = Arc::new(TestStore::new().await);
        let jobs: Vec<ScheduledJob> = (0..1_000).map(|i| job("q", i % 50)).collect();
        t.schedule(jobs.clone()).await?;
        assert_eq!(
            t.delayed_counts().await?,
            BTreeMap::from([("q".to_string(), 1_000)])
        );
        let start = Arc::new(tokio::sync::Barrier::new(2));
        let claimers: Vec<_> = (0..2)
            .map(|_| {
                let (t, start) = (t.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    let mut got = Vec::new();
                    loop {
                        let batch = t.claim_due(1_000, 7, 60_000).await.expect("claim");
                        if batch.is_empty() {
                            return got;
                        }
                        got.extend(batch.into_iter().map(|j| j.id));
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for claimer in claimers {
            let got = claimer.await.expect("claimer finished");
            assert!(!got.is_empty(), "both claimers got work");
            all.extend(got);
        }
        let distinct: HashSet<JobId> = all.iter().copied().collect();
        assert_eq!((all.len(), distinct.len()), (1_000, 1_000));
        assert_eq!(distinct, jobs.iter().map(|j| j.id).collect());
        t.cleanup().await;
        Ok(())
    }
}
