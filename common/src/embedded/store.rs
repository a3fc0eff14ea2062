//! The embedded [`Store`]: every store capability in process memory, on an injected clock.
//!
//! Each capability is a plain table behind its own mutex (never held across an await);
//! this file only reads the clock and forwards. Reading "now" from the injected clock,
//! never the system's, is what lets tests with paused tokio time expire locks, leases
//! and heartbeats instantly.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use super::dead::DeadTable;
use super::delayed::DelayedTable;
use super::heartbeats::HeartbeatTable;
use super::lock;
use super::locks::LockTable;
use super::pipelines::PipelineTable;
use super::schedules::ScheduleTable;
use super::states::StateTable;
use crate::clock::SharedClock;
use crate::cron::ScheduleSpec;
use crate::job::JobId;
use crate::store::{
    Admission, CronAction, CronOutcome, CronStep, DeadFilter, DeadLetter, DeadLetters, DeadSummary,
    DelayedSet, Executions, Heartbeats, Integrity, JobRecord, JobStates, LeaseRequest, LockRequest,
    Locks, Pipelines, ScheduleSource, ScheduledJob, Schedules, Store, StoreResult, StoreTime,
    StoredPipeline, StoredSchedule, WorkerInfo, LEADER_LOCK,
};

/// An in-process store; share it behind an `Arc`.
pub struct EmbeddedStore {
    clock: SharedClock,
    delayed: Mutex<DelayedTable>,
    locks: Mutex<LockTable>,
    states: Mutex<StateTable>,
    dead: Mutex<DeadTable>,
    heartbeats: Mutex<HeartbeatTable>,
    schedules: Mutex<ScheduleTable>,
    pipelines: Mutex<PipelineTable>,
}

impl EmbeddedStore {
    /// An empty store whose expiries follow `clock`.
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            delayed: Mutex::default(),
            locks: Mutex::default(),
            states: Mutex::default(),
            dead: Mutex::default(),
            heartbeats: Mutex::default(),
            schedules: Mutex::default(),
            pipelines: Mutex::default(),
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// The embedded store lives and dies with its process: nothing to check.
impl Integrity for EmbeddedStore {}

#[async_trait]
impl Store for EmbeddedStore {
    fn name(&self) -> &'static str {
        "embedded"
    }

    /// Empties every table; counts the tables (seven), not their entries.
    async fn purge(&self) -> StoreResult<u64> {
        *lock(&self.delayed) = DelayedTable::default();
        *lock(&self.locks) = LockTable::default();
        *lock(&self.states) = StateTable::default();
        *lock(&self.dead) = DeadTable::default();
        *lock(&self.heartbeats) = HeartbeatTable::default();
        *lock(&self.schedules) = ScheduleTable::default();
        *lock(&self.pipelines) = PipelineTable::default();
        Ok(7)
    }
}

#[async_trait]
impl DelayedSet for EmbeddedStore {
    async fn schedule(&self, jobs: Vec<ScheduledJob>) -> StoreResult<()> {
        let mut delayed = lock(&self.delayed);
        jobs.into_iter().for_each(|job| delayed.schedule(job));
        Ok(())
    }

    async fn claim_due(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: u64,
    ) -> StoreResult<Vec<ScheduledJob>> {
        Ok(lock(&self.delayed).claim_due(now_ms, limit, lease_ms))
    }

    async fn release_done(&self, ids: &[JobId]) -> StoreResult<()> {
        lock(&self.delayed).release_done(ids);
        Ok(())
    }

    async fn unschedule(&self, id: JobId) -> StoreResult<Option<Bytes>> {
        Ok(lock(&self.delayed).unschedule(id))
    }

    async fn next_due_ms(&self) -> StoreResult<Option<i64>> {
        Ok(lock(&self.delayed).next_due_ms())
    }

    async fn delayed_counts(&self) -> StoreResult<BTreeMap<String, u64>> {
        Ok(lock(&self.delayed).counts())
    }
}

#[async_trait]
impl Locks for EmbeddedStore {
    async fn lock_acquire(&self, req: &LockRequest) -> StoreResult<Option<u64>> {
        let now_ms = self.now_ms();
        Ok(lock(&self.locks).acquire(req, now_ms))
    }

    async fn lock_renew(&self, req: &LockRequest) -> StoreResult<bool> {
        let now_ms = self.now_ms();
        Ok(lock(&self.locks).renew(req, now_ms))
    }

    async fn lock_release(&self, req: &LockRequest) -> StoreResult<()> {
        lock(&self.locks).release(req);
        Ok(())
    }

    async fn fenced_write(&self, resource: &str, token: u64, value: Bytes) -> StoreResult<bool> {
        Ok(lock(&self.locks).fenced_write(resource, token, value))
    }

    async fn fenced_read(&self, resource: &str) -> StoreResult<Option<(u64, Bytes)>> {
        Ok(lock(&self.locks).fenced_read(resource))
    }
}

#[async_trait]
impl JobStates for EmbeddedStore {
    async fn queues_add(&self, queues: &[String]) -> StoreResult<()> {
        lock(&self.states).queues.extend(queues.iter().cloned());
        Ok(())
    }

    async fn queues_known(&self) -> StoreResult<Vec<String>> {
        Ok(lock(&self.states).queues.iter().cloned().collect())
    }

    async fn oldest_pending(&self, queues: &[String]) -> StoreResult<BTreeMap<String, i64>> {
        Ok(lock(&self.states).oldest_pending(queues))
    }

    async fn put_records(&self, records: &[JobRecord]) -> StoreResult<()> {
        let mut states = lock(&self.states);
        records.iter().for_each(|r| states.put(r.clone()));
        Ok(())
    }

    async fn record(&self, id: JobId) -> StoreResult<Option<JobRecord>> {
        Ok(lock(&self.states).record(id))
    }

    async fn forget_unpublished(&self, ids: &[JobId]) -> StoreResult<u64> {
        Ok(lock(&self.states).forget_unpublished(ids))
    }

    async fn complete(&self, record: &JobRecord) -> StoreResult<()> {
        lock(&self.states).complete(record.clone());
        Ok(())
    }

    async fn completed_counts(&self) -> StoreResult<BTreeMap<String, u64>> {
        Ok(lock(&self.states).completed_counts.clone())
    }

    async fn is_completed(&self, id: JobId) -> StoreResult<bool> {
        Ok(lock(&self.states).is_completed(id))
    }

    async fn request_cancel(&self, id: JobId) -> StoreResult<()> {
        lock(&self.states).request_cancel(id);
        Ok(())
    }

    async fn cancel_requested(&self, ids: &[JobId]) -> StoreResult<Vec<bool>> {
        Ok(lock(&self.states).cancel_requested(ids))
    }

    async fn unique_claim(&self, key: &str, id: JobId, ttl_ms: u64) -> StoreResult<Option<JobId>> {
        let now_ms = self.now_ms();
        Ok(lock(&self.states).unique_claim(key, id, ttl_ms, now_ms))
    }

    async fn unique_release(&self, key: &str, id: JobId) -> StoreResult<()> {
        lock(&self.states).unique_release(key, id);
        Ok(())
    }
}

#[async_trait]
impl Executions for EmbeddedStore {
    async fn admit(
        &self,
        id: JobId,
        running: Option<&JobRecord>,
        lease: &LeaseRequest,
    ) -> StoreResult<Admission> {
        let now_ms = self.now_ms();
        Ok(lock(&self.states).admit(id, running, lease, now_ms))
    }

    async fn lease_renew(&self, id: JobId, holder: &str, ttl_ms: u64) -> StoreResult<bool> {
        let now_ms = self.now_ms();
        Ok(lock(&self.states).lease_renew(id, holder, ttl_ms, now_ms))
    }

    async fn lease_release(&self, id: JobId, holder: &str) -> StoreResult<()> {
        lock(&self.states).lease_release(id, holder);
        Ok(())
    }
}

#[async_trait]
impl DeadLetters for EmbeddedStore {
    async fn dead_put(&self, letter: DeadLetter) -> StoreResult<()> {
        lock(&self.dead).put(letter);
        Ok(())
    }

    async fn dead_list(&self, filter: &DeadFilter, limit: usize) -> StoreResult<Vec<DeadSummary>> {
        Ok(lock(&self.dead).list(filter, limit))
    }

    async fn dead_get(&self, id: JobId) -> StoreResult<Option<DeadLetter>> {
        Ok(lock(&self.dead).get(id))
    }

    async fn dead_remove(&self, ids: &[JobId]) -> StoreResult<u64> {
        Ok(lock(&self.dead).remove(ids))
    }

    async fn dead_counts(&self) -> StoreResult<BTreeMap<String, u64>> {
        Ok(lock(&self.dead).counts())
    }
}

#[async_trait]
impl Heartbeats for EmbeddedStore {
    async fn heartbeat(&self, info: &WorkerInfo, ttl_ms: u64) -> StoreResult<()> {
        let now_ms = self.now_ms();
        lock(&self.heartbeats).beat(info, ttl_ms, now_ms);
        Ok(())
    }

    async fn worker_gone(&self, worker_id: &str) -> StoreResult<()> {
        lock(&self.heartbeats).gone(worker_id);
        Ok(())
    }

    async fn workers(&self) -> StoreResult<Vec<WorkerInfo>> {
        let now_ms = self.now_ms();
        Ok(lock(&self.heartbeats).live(now_ms))
    }
}

#[async_trait]
impl Pipelines for EmbeddedStore {
    async fn pipeline_put(&self, pipeline: &StoredPipeline) -> StoreResult<()> {
        lock(&self.pipelines).put(pipeline);
        Ok(())
    }

    async fn pipeline_get(&self, id: JobId) -> StoreResult<Option<StoredPipeline>> {
        Ok(lock(&self.pipelines).get(id))
    }

    async fn pipeline_child_done(
        &self,
        id: JobId,
        step: usize,
        child: usize,
        of: usize,
        result: &str,
    ) -> StoreResult<Option<Vec<String>>> {
        Ok(lock(&self.pipelines).child_done(id, step, child, of, result))
    }
}

#[async_trait]
impl Schedules for EmbeddedStore {
    async fn schedule_put(
        &self,
        name: &str,
        spec: &ScheduleSpec,
        source: ScheduleSource,
    ) -> StoreResult<bool> {
        let now_ms = self.now_ms();
        Ok(lock(&self.schedules).put(name, spec, source, now_ms))
    }

    async fn schedule_list(&self) -> StoreResult<Vec<StoredSchedule>> {
        Ok(lock(&self.schedules).list())
    }

    async fn schedule_get(&self, name: &str) -> StoreResult<Option<StoredSchedule>> {
        Ok(lock(&self.schedules).get(name))
    }

    async fn schedule_remove(&self, name: &str) -> StoreResult<bool> {
        Ok(lock(&self.schedules).remove(name))
    }

    async fn schedule_pause(&self, name: &str, paused: bool) -> StoreResult<bool> {
        let now_ms = self.now_ms();
        Ok(lock(&self.schedules).pause(name, paused, now_ms))
    }

    /// Holds the lock, schedule, state and delayed tables together (in that order, the
    /// only place more than one is held), so the step is atomic as the Redis script is.
    async fn cron_step(&self, step: &CronStep) -> StoreResult<CronOutcome> {
        let now_ms = self.now_ms();
        let locks = lock(&self.locks);
        let leader = &step.leader;
        if !locks.holds(LEADER_LOCK, &leader.holder, leader.token, now_ms) {
            return Ok(CronOutcome::NotLeader);
        }
        let mut schedules = lock(&self.schedules);
        if let Err(outcome) = schedules.check(step) {
            return Ok(outcome);
        }
        if let CronAction::Fire(fire) = &step.action {
            let mut states = lock(&self.states);
            let id = fire.job.id;
            if let Some(holder) = states.unique_holder(&fire.unique_key, now_ms) {
                return Ok(CronOutcome::Taken(holder));
            }
            states.unique_claim(&fire.unique_key, id, fire.unique_ttl_ms, now_ms);
            states.put(fire.record.clone());
            lock(&self.delayed).schedule(fire.job.clone());
        }
        schedules.apply(step, now_ms);
        Ok(CronOutcome::Applied)
    }
}

#[async_trait]
impl StoreTime for EmbeddedStore {
    /// The injected clock: the one the store itself stamps and expires by.
    async fn store_time_ms(&self) -> StoreResult<i64> {
        Ok(self.now_ms())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::time::sleep;

    use super::*;
    use crate::clock::TokioClock;
    use crate::job::LockMode;
    use crate::store::JobState;

    fn store() -> Arc<EmbeddedStore> {
        Arc::new(EmbeddedStore::new(Arc::new(TokioClock::new())))
    }

    fn exclusive(holder: &str, ttl_ms: u64) -> LockRequest {
        LockRequest {
            key: "k".into(),
            mode: LockMode::Exclusive,
            holder: holder.into(),
            ttl_ms,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn locks_expire_with_paused_time_and_fence_the_stale_holder() -> StoreResult<()> {
        let s = store();
        let a = exclusive("a", 1_000);
        let token_a = s.lock_acquire(&a).await?.expect("granted");
        assert_eq!(s.lock_acquire(&exclusive("b", 1_000)).await?, None);

        sleep(Duration::from_millis(1_000)).await;
        let token_b = s
            .lock_acquire(&exclusive("b", 1_000))
            .await?
            .expect("granted");
        assert!(token_b > token_a);
        assert!(!s.lock_renew(&a).await?, "a's lock expired");

        assert!(
            s.fenced_write("r", token_b, Bytes::from_static(b"b"))
                .await?
        );
        assert!(
            !s.fenced_write("r", token_a, Bytes::from_static(b"a"))
                .await?
        );
        assert_eq!(
            s.fenced_read("r").await?,
            Some((token_b, Bytes::from_static(b"b")))
        );
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_claimers_never_share_a_job() -> StoreResult<()> {
        let s = store();
        let job = |due_ms| ScheduledJob {
            id: JobId::new(),
            queue: "q".into(),
            due_ms,
            body: Bytes::new(),
        };
        s.schedule((0..200).map(job).collect()).await?;
        let claimers: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    loop {
                        let batch = s
                            .claim_due(1_000, 3, 60_000)
                            .await
                            .expect("in-process call");
                        if batch.is_empty() {
                            return got;
                        }
                        got.extend(batch.into_iter().map(|j| j.id));
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for c in claimers {
            all.extend(c.await.expect("claimer finished"));
        }
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!((all.len(), distinct.len()), (200, 200));
        assert_eq!(
            s.delayed_counts().await?,
            BTreeMap::from([("q".into(), 200)])
        );
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn complete_writes_record_and_marker_and_heartbeats_expire() -> StoreResult<()> {
        let s = store();
        let id = JobId::new();
        let record = JobRecord {
            id,
            queue: "q".into(),
            kind: "k".into(),
            state: JobState::Completed,
            attempt: 1,
            max_attempts: 3,
            enqueued_at_ms: 0,
            updated_at_ms: 0,
            started_at_ms: None,
            finished_at_ms: Some(0),
            run_at_ms: None,
            progress: None,
            worker: None,
            last_error: None,
            note: None,
            progress_note: None,
            result: Some(serde_json::json!({"ok": true})),
        };
        assert!(!s.is_completed(id).await?);
        s.complete(&record).await?;
        assert!(s.is_completed(id).await?);
        assert_eq!(s.record(id).await?, Some(record.clone()));
        // Counted per queue, once per job however often it is completed.
        s.complete(&record).await?;
        assert_eq!(
            s.completed_counts().await?,
            BTreeMap::from([("q".into(), 1)])
        );

        let info = WorkerInfo {
            id: "w".into(),
            host: "h".into(),
            pid: 1,
            queues: Vec::new(),
            concurrency: 1,
            running: 0,
            started_at_ms: 0,
            last_seen_ms: 0,
            running_jobs: Vec::new(),
            completed: 0,
            failed: 0,
            by_queue: Default::default(),
        };
        s.queues_add(&["b".into(), "a".into(), "b".into()]).await?;
        assert_eq!(s.queues_known().await?, ["a", "b"]);
        s.heartbeat(&info, 5_000).await?;
        sleep(Duration::from_millis(4_999)).await;
        assert_eq!(s.workers().await?, [info]);
        sleep(Duration::from_millis(1)).await;
        assert!(s.workers().await?.is_empty());
        assert_eq!(s.name(), "embedded");
        Ok(())
    }
}
