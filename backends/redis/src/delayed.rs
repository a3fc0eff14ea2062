//! The Redis delayed set: a ZSET of waiting jobs by due time, a ZSET of claimed jobs by
//! lease expiry, a hash of each job's queue and body, the due times of claimed jobs, and
//! per-queue counts.
//!
//! Every change goes through a script that updates the sets, the hashes and the counts
//! together, so counts never drift from the sets and two schedulers claiming at once
//! never get the same job.
//!
//! What a waiting job costs the server is what a user with a million of them pays, so
//! the layout keeps one sorted-set member and one hash field per job: the queue rides in
//! the job's entry (`queue\nbody`), the due time is the sorted-set score (copied to
//! `due` only while the job is claimed), and a state record that says only `scheduled`
//! is not kept beside it (see `scripts::SCHEDULE`). Stores written before this layout
//! (bodies and queues in hashes of their own, and a due time for every job) are read
//! as they are: their jobs drain through the same scripts.

use crate::IntoStore as _;
use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use redis::AsyncCommands;

use super::scripts::{CLAIM_DUE, RELEASE_DONE, SCHEDULE, SCHEDULE_LUA, UNSCHEDULE};
use super::{keys, RedisStore};
use jobfleet_common::job::JobId;
use jobfleet_common::store::{DelayedSet, ScheduledJob, StoreError, StoreResult};

/// Jobs per schedule script run: bounds how long one run holds the server.
const SCHEDULE_CHUNK: usize = 500;

/// One claimed job as the claim script returns it: id, body, queue, due.
type ClaimedRow = (Vec<u8>, Option<Vec<u8>>, Option<String>, Option<i64>);

/// A delayed-set member back to its id (see [`keys::delayed_member_id`]).
fn parse_member(m: &[u8]) -> StoreResult<JobId> {
    keys::delayed_member_id(m).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "delayed set member {:?}: not a job id",
            String::from_utf8_lossy(m)
        ))
    })
}

impl RedisStore {
    /// The delayed-set keys, in the order the scripts take them: waiting, releasing, jobs,
    /// due, counts, then the legacy body and queue hashes (read while they hold entries).
    pub(super) fn delayed_keys(&self) -> [String; 7] {
        [
            "waiting",
            "releasing",
            "jobs",
            "due",
            "counts",
            "body",
            "queue",
        ]
        .map(|part| self.keys.key(&format!("delayed:{part}")))
    }
}

/// ARGV for the schedule script: id, queue, due, body per job.
fn schedule_args(jobs: &[ScheduledJob]) -> StoreResult<Vec<Vec<u8>>> {
    let mut args = Vec::with_capacity(jobs.len() * 4);
    for job in jobs {
        // The scripts split an entry at its first newline; valid queue names have none.
        if job.queue.contains('\n') {
            return Err(StoreError::Invalid(format!(
                "job {}: queue {:?} has a newline",
                job.id, job.queue
            )));
        }
        args.push(keys::delayed_member(&job.id).to_vec());
        args.push(job.queue.clone().into_bytes());
        args.push(job.due_ms.to_string().into_bytes());
        args.push(job.body.to_vec());
    }
    Ok(args)
}

fn claimed_job((id, body, queue, due): ClaimedRow) -> StoreResult<ScheduledJob> {
    let id = parse_member(&id)?;
    let missing = |what: &str| StoreError::Corrupt(format!("delayed job {id}: no {what}"));
    Ok(ScheduledJob {
        id,
        queue: queue.ok_or_else(|| missing("queue"))?,
        due_ms: due.ok_or_else(|| missing("due time"))?,
        body: Bytes::from(body.ok_or_else(|| missing("body"))?),
    })
}

#[async_trait]
impl DelayedSet for RedisStore {
    async fn schedule(&self, jobs: Vec<ScheduledJob>) -> StoreResult<()> {
        let keys = self.delayed_keys();
        let records = |chunk: &[ScheduledJob]| -> Vec<String> {
            chunk
                .iter()
                .map(|j| self.keys.of_job("job", j.id))
                .collect()
        };
        let mut conn = self.conn();
        if jobs.len() <= SCHEDULE_CHUNK {
            if jobs.is_empty() {
                return Ok(());
            }
            let mut call = SCHEDULE.prepare_invoke();
            call.key(&keys[..])
                .key(records(&jobs))
                .arg(schedule_args(&jobs)?);
            return call.invoke_async(&mut conn).await.store();
        }
        // Many jobs: one pipeline of script runs, each atomic on its own. Loading the
        // script first in the same pipeline makes every EVALSHA find it.
        let mut pipe = redis::pipe();
        pipe.cmd("SCRIPT").arg("LOAD").arg(SCHEDULE_LUA).ignore();
        for chunk in jobs.chunks(SCHEDULE_CHUNK) {
            pipe.cmd("EVALSHA")
                .arg(SCHEDULE.get_hash())
                .arg(keys.len() + chunk.len())
                .arg(&keys[..])
                .arg(records(chunk))
                .arg(schedule_args(chunk)?)
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
            .key(&keys[..])
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
        let ids: Vec<&[u8]> = ids.iter().map(keys::delayed_member).collect();
        Ok(RELEASE_DONE
            .key(&keys[..])
            .arg(ids)
            .invoke_async(&mut self.conn())
            .await
            .store()?)
    }

    async fn unschedule(&self, id: JobId) -> StoreResult<Option<Bytes>> {
        let keys = self.delayed_keys();
        let body: Option<Vec<u8>> = UNSCHEDULE
            .key(&keys[..])
            .arg(keys::delayed_member(&id))
            .invoke_async(&mut self.conn())
            .await
            .store()?;
        Ok(body.map(Bytes::from))
    }

    async fn next_due_ms(&self) -> StoreResult<Option<i64>> {
        let [waiting, ..] = self.delayed_keys();
        let first: Vec<(Vec<u8>, f64)> =
            self.conn().zrange_withscores(waiting, 0, 0).await.store()?;
        // Scores are integral ms, exact in an f64 for any plausible date.
        Ok(first.first().map(|(_, due)| *due as i64))
    }

    async fn delayed_counts(&self) -> StoreResult<BTreeMap<String, u64>> {
        let [_, _, _, _, counts, ..] = self.delayed_keys();
        self.queue_counts(counts).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::*;
    use crate::test_store::TestStore;
    use jobfleet_testkit::fixtures::scheduled as job;

    fn ids(jobs: &[ScheduledJob]) -> Vec<JobId> {
        jobs.iter().map(|j| j.id).collect()
    }

    #[tokio::test]
    async fn a_queue_name_with_a_newline_is_refused_and_nothing_is_written() -> StoreResult<()> {
        let t = TestStore::new().await;
        let bad = job("q\nx", 10);
        let refused = t.schedule(vec![job("q", 10), bad]).await;
        assert!(
            matches!(refused, Err(StoreError::Invalid(ref m)) if m.contains("newline")),
            "{refused:?}"
        );
        assert_eq!(t.next_due_ms().await?, None);
        assert!(t.delayed_counts().await?.is_empty());
        t.cleanup().await;
        Ok(())
    }

    /// The namespace's delayed-set keys and job records, with type and size (hash fields,
    /// set members, string bytes).
    async fn layout(t: &TestStore) -> BTreeMap<String, (String, usize)> {
        let mut conn = t.conn();
        let keys: Vec<String> = conn
            .keys(format!("{}*", t.keys.prefix))
            .await
            .expect("KEYS");
        let mut out = BTreeMap::new();
        for key in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("TYPE");
            let size: usize = match kind.as_str() {
                "hash" => conn.hlen(&key).await.expect("HLEN"),
                "zset" => conn.zcard(&key).await.expect("ZCARD"),
                _ => conn.strlen(&key).await.expect("STRLEN"),
            };
            let name = key.trim_start_matches(&t.keys.prefix).to_string();
            if name.starts_with("delayed:") || name.starts_with("job:") {
                out.insert(name, (kind, size));
            }
        }
        out
    }

    #[tokio::test]
    async fn a_waiting_job_is_one_sorted_set_member_and_one_hash_field() -> StoreResult<()> {
        use jobfleet_common::codec::{self, Format};
        use jobfleet_common::store::{JobRecord, JobState, JobStates as _};
        let t = TestStore::new().await;
        let job = jobfleet_common::Job::new("q", "k", "{}").with_run_at_ms(5_000);
        t.put_records(&[JobRecord::of(&job, JobState::Scheduled, 1)])
            .await?;
        let entry = ScheduledJob {
            id: job.id,
            queue: "q".into(),
            due_ms: 5_000,
            body: codec::encode(&job, Format::Binary),
        };
        t.schedule(vec![entry]).await?;
        let hash = |n| ("hash".to_string(), n);
        let zset = |n| ("zset".to_string(), n);
        let expected = BTreeMap::from([
            ("delayed:waiting".to_string(), zset(1)),
            ("delayed:jobs".to_string(), hash(1)),
            ("delayed:counts".to_string(), hash(1)),
        ]);
        assert_eq!(
            layout(&t).await,
            expected,
            "no record, queue or due beside the job"
        );

        // Claimed: its due time is kept, for a lease that runs out.
        assert_eq!(ids(&t.claim_due(6_000, 10, 50).await?), [job.id]);
        let claimed = BTreeMap::from([
            ("delayed:releasing".to_string(), zset(1)),
            ("delayed:jobs".to_string(), hash(1)),
            ("delayed:due".to_string(), hash(1)),
            ("delayed:counts".to_string(), hash(1)),
        ]);
        assert_eq!(layout(&t).await, claimed);
        assert_eq!(
            ids(&t.claim_due(7_000, 10, 50).await?),
            [job.id],
            "lease ran out"
        );
        t.release_done(&[job.id]).await?;
        assert!(layout(&t).await.is_empty(), "{:?}", layout(&t).await);
        t.cleanup().await;
        Ok(())
    }

    #[tokio::test]
    async fn jobs_in_the_legacy_layout_are_claimed_moved_and_removed() -> StoreResult<()> {
        let t = TestStore::new().await;
        // Three jobs as an earlier jobfleet wrote them: body, queue and due in hashes of
        // their own, and counted.
        let (a, b, c) = (job("q", 10), job("q", 20), job("r", 30));
        let mut conn = t.conn();
        for j in [&a, &b, &c] {
            let id = j.id.to_string();
            let _: () = redis::pipe()
                .zadd(t.keys.key("delayed:waiting"), &id, j.due_ms)
                .hset(t.keys.key("delayed:body"), &id, j.body.as_ref())
                .hset(t.keys.key("delayed:queue"), &id, &j.queue)
                .hset(t.keys.key("delayed:due"), &id, j.due_ms)
                .hincr(t.keys.key("delayed:counts"), &j.queue, 1)
                .query_async(&mut conn)
                .await
                .store()?;
        }
        // b is moved: it joins the new layout, counted once, under its new queue.
        let mut moved = b.clone();
        moved.due_ms = 500;
        moved.queue = "r".into();
        t.schedule(vec![moved.clone()]).await?;
        assert_eq!(
            t.delayed_counts().await?,
            BTreeMap::from([("q".to_string(), 1), ("r".to_string(), 2)])
        );
        assert_eq!(t.unschedule(c.id).await?, Some(c.body.clone()));
        assert_eq!(
            t.claim_due(100, 10, 1_000).await?,
            std::slice::from_ref(&a),
            "legacy a"
        );
        t.release_done(&[a.id]).await?;
        assert_eq!(
            t.claim_due(1_000, 10, 1_000).await?,
            [moved.clone()],
            "moved b"
        );
        t.release_done(&[moved.id]).await?;
        assert!(t.delayed_counts().await?.is_empty());
        assert!(layout(&t).await.is_empty(), "{:?}", layout(&t).await);
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
