//! Redis job states: JSON state records, completion markers and cancel requests as
//! expiring strings, and uniqueness keys claimed with `SET NX PX`.

use crate::IntoStore as _;
use async_trait::async_trait;
use redis::AsyncCommands;

use std::collections::BTreeMap;

use super::scripts::{
    COMPARE_AND_DELETE, COMPLETE, FORGET_UNPUBLISHED, OLDEST_PENDING, PUT_RECORDS, PUT_RECORDS_LUA,
    RECORD, UNIQUE_CLAIM,
};
use super::{decode_json, encode_json, parse_id, px, RedisStore};
use jobfleet_common::codec;
use jobfleet_common::job::JobId;
use jobfleet_common::store::{JobRecord, JobState, JobStates, StoreError, StoreResult};

impl RedisStore {
    /// How long state records, completion markers, cancel requests and execution leases
    /// live after their last write (`redis.retention`, 7 days by default): long enough to
    /// outlast any retry schedule and for operators to ask about a job days later, short
    /// enough that a busy fleet's history does not fill the server.
    pub(super) fn record_ttl_ms(&self) -> u64 {
        u64::try_from(self.settings.retention.as_millis()).unwrap_or(u64::MAX)
    }

    /// `ns:waiting:{queue}`: the queue's jobs whose record says `pending`.
    fn waiting_key(&self, queue: &str) -> String {
        self.keys.key(&format!("waiting:{queue}"))
    }
}

/// `ns:completed`: a hash of jobs completed per queue, kept by the completion script.
const COMPLETED: &str = "completed";

#[async_trait]
impl JobStates for RedisStore {
    async fn queues_add(&self, queues: &[String]) -> StoreResult<()> {
        if queues.is_empty() {
            return Ok(());
        }
        redis::AsyncCommands::sadd(&mut self.conn(), self.keys.key("queues"), queues)
            .await
            .store()
    }

    async fn queues_known(&self) -> StoreResult<Vec<String>> {
        let mut queues: Vec<String> =
            redis::AsyncCommands::smembers(&mut self.conn(), self.keys.key("queues"))
                .await
                .store()?;
        queues.sort();
        Ok(queues)
    }

    async fn oldest_pending(&self, queues: &[String]) -> StoreResult<BTreeMap<String, i64>> {
        if queues.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut script = OLDEST_PENDING.prepare_invoke();
        for queue in queues {
            script.key(self.waiting_key(queue));
        }
        let heads: Vec<Option<String>> = script
            .arg(self.keys.key("job:"))
            .invoke_async(&mut self.conn())
            .await
            .store()?;
        Ok(queues
            .iter()
            .zip(heads)
            .filter_map(|(q, head)| Some((q.clone(), head?.parse::<f64>().ok()? as i64)))
            .collect())
    }

    async fn put_records(&self, records: &[JobRecord]) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        // Loading first in the same pipeline makes every EVALSHA after it find the script.
        pipe.cmd("SCRIPT").arg("LOAD").arg(PUT_RECORDS_LUA).ignore();
        // 100 records a call: each call blocks the server for well under a millisecond.
        for chunk in records.chunks(100) {
            let eval = pipe.cmd("EVALSHA");
            eval.arg(PUT_RECORDS.get_hash()).arg(chunk.len() * 3);
            for record in chunk {
                eval.arg(self.keys.of_job("job", record.id))
                    .arg(self.keys.of_job("done", record.id))
                    .arg(self.waiting_key(&record.queue));
            }
            eval.arg(self.record_ttl_ms());
            for record in chunk {
                let pending = record.state == JobState::Pending;
                eval.arg(encode_json("job record", record)?)
                    .arg(if pending { "1" } else { "0" })
                    .arg(record.updated_at_ms)
                    .arg(record.id.to_string());
            }
            eval.ignore();
        }
        pipe.query_async(&mut self.conn()).await.store()
    }

    async fn forget_unpublished(&self, ids: &[JobId]) -> StoreResult<u64> {
        let mut removed = 0;
        let mut conn = self.conn();
        for id in ids {
            let n: u64 = FORGET_UNPUBLISHED
                .key(self.keys.of_job("job", *id))
                .invoke_async(&mut conn)
                .await
                .store()?;
            removed += n;
        }
        Ok(removed)
    }

    async fn record(&self, id: JobId) -> StoreResult<Option<JobRecord>> {
        let reply: Vec<Vec<u8>> = RECORD
            .key(self.keys.of_job("job", id))
            .key(&self.delayed_keys()[..])
            .arg(super::keys::delayed_member(&id))
            .invoke_async(&mut self.conn())
            .await
            .store()?;
        match reply.as_slice() {
            [] => Ok(None),
            [tag, json] if tag == b"record" => {
                decode_json(&format!("job record {id}"), json).map(Some)
            }
            [tag, body, due] if tag == b"waiting" => waiting_record(id, body, due).map(Some),
            _ => Err(StoreError::Corrupt(format!(
                "job record {id}: unexpected reply of {} parts",
                reply.len()
            ))),
        }
    }

    async fn complete(&self, record: &JobRecord) -> StoreResult<()> {
        COMPLETE
            .key(self.keys.of_job("job", record.id))
            .key(self.keys.of_job("done", record.id))
            .key(self.waiting_key(&record.queue))
            .key(self.keys.of_job("lease", record.id))
            .key(self.keys.key(COMPLETED))
            .arg(encode_json("job record", record)?)
            .arg(self.record_ttl_ms())
            .arg(record.id.to_string())
            .arg(&record.queue)
            .invoke_async::<()>(&mut self.conn())
            .await
            .store()
    }

    async fn completed_counts(&self) -> StoreResult<BTreeMap<String, u64>> {
        self.queue_counts(self.keys.key(COMPLETED)).await
    }

    async fn is_completed(&self, id: JobId) -> StoreResult<bool> {
        self.conn()
            .exists(self.keys.of_job("done", id))
            .await
            .store()
    }

    async fn request_cancel(&self, id: JobId) -> StoreResult<()> {
        Ok(self
            .conn()
            .pset_ex(self.keys.of_job("cancel", id), 1, self.record_ttl_ms())
            .await
            .store()?)
    }

    async fn cancel_requested(&self, ids: &[JobId]) -> StoreResult<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.exists(self.keys.of_job("cancel", *id));
        }
        pipe.query_async(&mut self.conn()).await.store()
    }

    async fn unique_claim(&self, key: &str, id: JobId, ttl_ms: u64) -> StoreResult<Option<JobId>> {
        let holder: Option<String> = UNIQUE_CLAIM
            .key(self.keys.key(&format!("unique:{key}")))
            .arg(id.to_string())
            .arg(px(ttl_ms))
            .invoke_async(&mut self.conn())
            .await
            .store()?;
        holder.as_deref().map(parse_id).transpose()
    }

    async fn unique_release(&self, key: &str, id: JobId) -> StoreResult<()> {
        let _: i64 = COMPARE_AND_DELETE
            .key(self.keys.key(&format!("unique:{key}")))
            .arg(id.to_string())
            .invoke_async(&mut self.conn())
            .await
            .store()?;
        Ok(())
    }
}

/// The `scheduled` record of a job waiting in the delayed set without a record of its
/// own (the schedule script drops one that says nothing more): what the job says, due at
/// its score, last changed when it was enqueued.
fn waiting_record(id: JobId, body: &[u8], due: &[u8]) -> StoreResult<JobRecord> {
    let corrupt = |what: String| StoreError::Corrupt(format!("delayed job {id}: {what}"));
    let job = codec::decode(body, None).map_err(|e| corrupt(e.to_string()))?;
    let due = std::str::from_utf8(due)
        .ok()
        .and_then(|due| due.parse::<f64>().ok());
    let mut record = JobRecord::of(&job, JobState::Scheduled, job.enqueued_at_ms);
    // Scores are integral ms, exact in an f64 for any plausible date.
    record.run_at_ms = due.map(|due| due as i64).or(job.run_at_ms);
    Ok(record)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::test_store::TestStore;
    use jobfleet_common::store::{JobState, StoreError};

    fn record(id: JobId, state: JobState) -> JobRecord {
        JobRecord {
            id,
            queue: "q".into(),
            kind: "email".into(),
            state,
            attempt: 1,
            max_attempts: 3,
            enqueued_at_ms: 1,
            updated_at_ms: 2,
            started_at_ms: Some(2),
            finished_at_ms: None,
            run_at_ms: None,
            progress: Some(0.5),
            worker: Some("w1".into()),
            last_error: None,
            note: None,
            progress_note: None,
            result: None,
        }
    }

    #[tokio::test]
    async fn completions_are_counted_per_queue_once_per_job() -> StoreResult<()> {
        let t = TestStore::new().await;
        assert!(t.completed_counts().await?.is_empty());
        let done = |id, queue: &str| JobRecord {
            queue: queue.into(),
            ..record(id, JobState::Completed)
        };
        let (a, b, c) = (JobId::new(), JobId::new(), JobId::new());
        t.complete(&done(a, "q")).await?;
        t.complete(&done(a, "q")).await?;
        t.complete(&done(b, "q")).await?;
        t.complete(&done(c, "other")).await?;
        let counts = t.completed_counts().await?;
        assert_eq!(counts.get("q"), Some(&2), "{counts:?}");
        assert_eq!(counts.get("other"), Some(&1), "{counts:?}");
        t.cleanup().await;
        Ok(())
    }

    #[tokio::test]
    async fn known_queues_are_a_sorted_set_of_names() -> StoreResult<()> {
        let t = TestStore::new().await;
        assert!(t.queues_known().await?.is_empty());
        t.queues_add(&["b".into(), "a".into()]).await?;
        t.queues_add(&["a".into()]).await?;
        t.queues_add(&[]).await?;
        assert_eq!(t.queues_known().await?, ["a", "b"]);
        t.cleanup().await;
        Ok(())
    }

    #[tokio::test]
    async fn the_oldest_pending_job_of_each_queue_is_tracked_through_its_states() -> StoreResult<()>
    {
        let t = TestStore::new().await;
        let at = |id, state, ms| JobRecord {
            updated_at_ms: ms,
            ..record(id, state)
        };
        let q = vec!["q".to_string(), "other".to_string()];
        assert!(t.oldest_pending(&q).await?.is_empty());
        let (a, b, c) = (JobId::new(), JobId::new(), JobId::new());
        t.put_records(&[at(a, JobState::Pending, 100), at(b, JobState::Pending, 50)])
            .await?;
        assert_eq!(
            t.oldest_pending(&q).await?,
            BTreeMap::from([("q".into(), 50)])
        );
        // Written `pending` again (a re-release), it keeps its first time.
        t.put_records(&[at(b, JobState::Pending, 400)]).await?;
        assert_eq!(t.oldest_pending(&q).await?["q"], 50);
        // b starts: a is the oldest waiting.
        t.put_records(&[at(b, JobState::Running, 500)]).await?;
        assert_eq!(t.oldest_pending(&q).await?["q"], 100);
        // a completes: nothing waits.
        t.complete(&at(a, JobState::Completed, 600)).await?;
        assert!(t.oldest_pending(&q).await?.is_empty());
        // A record that vanished (expired, forgotten) is skipped and dropped.
        t.put_records(&[at(c, JobState::Pending, 700)]).await?;
        t.forget_unpublished(&[c]).await?;
        assert!(t.oldest_pending(&q).await?.is_empty());
        t.cleanup().await;
        Ok(())
    }

    #[tokio::test]
    async fn records_are_replaced_and_complete_writes_the_marker() -> StoreResult<()> {
        let t = TestStore::new().await;
        let (a, b) = (JobId::new(), JobId::new());
        assert_eq!(t.record(a).await?, None);
        t.put_records(&[record(a, JobState::Pending), record(b, JobState::Running)])
            .await?;
        assert_eq!(t.record(b).await?, Some(record(b, JobState::Running)));
        t.put_records(&[record(a, JobState::Running)]).await?;
        assert_eq!(t.record(a).await?, Some(record(a, JobState::Running)));

        assert!(!t.is_completed(a).await?);
        let done = JobRecord {
            finished_at_ms: Some(9),
            result: Some(serde_json::json!({"rows": 3, "path": "s3://b/k"})),
            ..record(a, JobState::Completed)
        };
        t.complete(&done).await?;
        assert!(t.is_completed(a).await?);
        assert!(!t.is_completed(b).await?);
        assert_eq!(t.record(a).await?, Some(done.clone()));
        t.put_records(&[record(a, JobState::Pending)]).await?;
        assert_eq!(
            t.record(a).await?,
            Some(done),
            "a completed job's record stays"
        );

        let ttl: i64 = t.conn().pttl(t.keys.of_job("done", a)).await.store()?;
        let week = t.record_ttl_ms() as i64;
        assert!(ttl > week - 60_000 && ttl <= week, "marker ttl {ttl}");
        t.cleanup().await;
        Ok(())
    }

    #[tokio::test]
    async fn records_markers_cancels_and_leases_live_for_the_configured_retention(
    ) -> StoreResult<()> {
        let hours = |h: u64| Duration::from_secs(h * 3600);
        let t = TestStore::with(jobfleet_common::config::RedisConfig {
            retention: hours(2),
            ..super::super::test_store::volatile()
        })
        .await;
        let (a, b, c) = (JobId::new(), JobId::new(), JobId::new());
        t.put_records(&[record(a, JobState::Pending)]).await?;
        t.request_cancel(a).await?;
        t.complete(&record(b, JobState::Completed)).await?;
        let lease = jobfleet_common::store::LeaseRequest {
            holder: "h".into(),
            ttl_ms: 1_000,
            max_crashes: 1,
        };
        jobfleet_common::store::Executions::admit(&*t, c, None, &lease).await?;
        for key in [
            t.keys.of_job("job", a),
            t.keys.of_job("cancel", a),
            t.keys.of_job("lease", c),
            t.keys.of_job("job", b),
            t.keys.of_job("done", b),
        ] {
            let ttl: i64 = t.conn().pttl(&key).await.store()?;
            let two_hours = hours(2).as_millis() as i64;
            assert!(ttl > two_hours - 60_000 && ttl <= two_hours, "{key}: {ttl}");
        }
        t.cleanup().await;
        Ok(())
    }

    #[tokio::test]
    async fn an_unreadable_record_is_corrupt() -> StoreResult<()> {
        let t = TestStore::new().await;
        let id = JobId::new();
        let _: () = t
            .conn()
            .set(t.keys.of_job("job", id), "not json")
            .await
            .store()?;
        assert!(matches!(t.record(id).await, Err(StoreError::Corrupt(_))));
        t.cleanup().await;
        Ok(())
    }

    #[tokio::test]
    async fn cancel_flags_answer_in_order() -> StoreResult<()> {
        let t = TestStore::new().await;
        let (a, b) = (JobId::new(), JobId::new());
        t.request_cancel(b).await?;
        assert_eq!(t.cancel_requested(&[a, b, a]).await?, [false, true, false]);
        assert!(t.cancel_requested(&[]).await?.is_empty());
        t.cleanup().await;
        Ok(())
    }

    #[tokio::test]
    async fn uniqueness_keys_hold_until_released_or_expired() -> StoreResult<()> {
        let t = TestStore::new().await;
        let (a, b) = (JobId::new(), JobId::new());
        assert_eq!(t.unique_claim("k", a, 10_000).await?, None);
        assert_eq!(
            t.unique_claim("k", a, 10_000).await?,
            None,
            "the holder may claim again"
        );
        assert_eq!(t.unique_claim("k", b, 10_000).await?, Some(a));
        t.unique_release("k", b).await?;
        assert_eq!(
            t.unique_claim("k", b, 10_000).await?,
            Some(a),
            "only the holder releases"
        );
        t.unique_release("k", a).await?;
        assert_eq!(t.unique_claim("k", b, 100).await?, None);
        assert_eq!(t.unique_claim("k", a, 100).await?, Some(b));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            t.unique_claim("k", a, 100).await?,
            None,
            "b's claim expired"
        );
        t.cleanup().await;
        Ok(())
    }
}
