//! Fault injection for any store backend: a wrapper that forwards every call to the real
//! store except the faults a check switches on (lost locks, lost execution leases). Not a mock: the real backend still does
//! all the work; the wrapper only makes one call fail the way a network or a pause would.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use jobfleet_common::cron::ScheduleSpec;
use jobfleet_common::store::{
    Admission, CronOutcome, CronStep, DataLossIncident, DeadFilter, DeadLetter, DeadLetters,
    DeadSummary, DelayedSet, Executions, Heartbeats, Integrity, IntegrityCheck, JobRecord,
    JobStates, LeaseRequest, LockRequest, Locks, ScheduleSource, ScheduledJob, Schedules, Store,
    StoreResult, StoreTime, StoredSchedule, WorkerInfo,
};
use jobfleet_common::store::{Pipelines, StoredPipeline};
use jobfleet_common::JobId;

/// A store whose lock renewals can be made to report "no longer held".
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    /// When set, every `lock_renew` answers false, as if the TTL had passed.
    pub lose_locks: AtomicBool,
    /// When set, every `lease_renew` answers false, as if another execution had taken
    /// the job's lease.
    pub lose_leases: AtomicBool,
}

impl FaultyStore {
    /// Wraps `inner` with every fault off.
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            lose_locks: AtomicBool::new(false),
            lose_leases: AtomicBool::new(false),
        })
    }
}

#[async_trait]
impl DelayedSet for FaultyStore {
    async fn schedule(&self, jobs: Vec<ScheduledJob>) -> StoreResult<()> {
        self.inner.schedule(jobs).await
    }
    async fn claim_due(
        &self,
        now: i64,
        limit: usize,
        lease: u64,
    ) -> StoreResult<Vec<ScheduledJob>> {
        self.inner.claim_due(now, limit, lease).await
    }
    async fn release_done(&self, ids: &[JobId]) -> StoreResult<()> {
        self.inner.release_done(ids).await
    }
    async fn unschedule(&self, id: JobId) -> StoreResult<Option<Bytes>> {
        self.inner.unschedule(id).await
    }
    async fn next_due_ms(&self) -> StoreResult<Option<i64>> {
        self.inner.next_due_ms().await
    }
    async fn delayed_counts(&self) -> StoreResult<BTreeMap<String, u64>> {
        self.inner.delayed_counts().await
    }
}

#[async_trait]
impl Locks for FaultyStore {
    async fn lock_acquire(&self, req: &LockRequest) -> StoreResult<Option<u64>> {
        self.inner.lock_acquire(req).await
    }
    async fn lock_renew(&self, req: &LockRequest) -> StoreResult<bool> {
        if self.lose_locks.load(Ordering::SeqCst) {
            return Ok(false);
        }
        self.inner.lock_renew(req).await
    }
    async fn lock_release(&self, req: &LockRequest) -> StoreResult<()> {
        self.inner.lock_release(req).await
    }
    async fn fenced_write(&self, resource: &str, token: u64, value: Bytes) -> StoreResult<bool> {
        self.inner.fenced_write(resource, token, value).await
    }
    async fn fenced_read(&self, resource: &str) -> StoreResult<Option<(u64, Bytes)>> {
        self.inner.fenced_read(resource).await
    }
}

#[async_trait]
impl JobStates for FaultyStore {
    async fn queues_add(&self, queues: &[String]) -> StoreResult<()> {
        self.inner.queues_add(queues).await
    }
    async fn queues_known(&self) -> StoreResult<Vec<String>> {
        self.inner.queues_known().await
    }
    async fn oldest_pending(
        &self,
        queues: &[String],
    ) -> StoreResult<std::collections::BTreeMap<String, i64>> {
        self.inner.oldest_pending(queues).await
    }
    async fn put_records(&self, records: &[JobRecord]) -> StoreResult<()> {
        self.inner.put_records(records).await
    }
    async fn record(&self, id: JobId) -> StoreResult<Option<JobRecord>> {
        self.inner.record(id).await
    }
    async fn complete(&self, record: &JobRecord) -> StoreResult<()> {
        self.inner.complete(record).await
    }
    async fn is_completed(&self, id: JobId) -> StoreResult<bool> {
        self.inner.is_completed(id).await
    }
    async fn completed_counts(&self) -> StoreResult<BTreeMap<String, u64>> {
        self.inner.completed_counts().await
    }
    async fn request_cancel(&self, id: JobId) -> StoreResult<()> {
        self.inner.request_cancel(id).await
    }
    async fn cancel_requested(&self, ids: &[JobId]) -> StoreResult<Vec<bool>> {
        self.inner.cancel_requested(ids).await
    }
    async fn unique_claim(&self, key: &str, id: JobId, ttl_ms: u64) -> StoreResult<Option<JobId>> {
        self.inner.unique_claim(key, id, ttl_ms).await
    }
    async fn unique_release(&self, key: &str, id: JobId) -> StoreResult<()> {
        self.inner.unique_release(key, id).await
    }
    async fn forget_unpublished(&self, ids: &[JobId]) -> StoreResult<u64> {
        self.inner.forget_unpublished(ids).await
    }
}

#[async_trait]
impl Executions for FaultyStore {
    async fn admit(
        &self,
        id: JobId,
        running: Option<&JobRecord>,
        lease: &LeaseRequest,
    ) -> StoreResult<Admission> {
        self.inner.admit(id, running, lease).await
    }
    async fn lease_renew(&self, id: JobId, holder: &str, ttl_ms: u64) -> StoreResult<bool> {
        if self.lose_leases.load(Ordering::SeqCst) {
            return Ok(false);
        }
        self.inner.lease_renew(id, holder, ttl_ms).await
    }
    async fn lease_release(&self, id: JobId, holder: &str) -> StoreResult<()> {
        self.inner.lease_release(id, holder).await
    }
}

#[async_trait]
impl DeadLetters for FaultyStore {
    async fn dead_put(&self, letter: DeadLetter) -> StoreResult<()> {
        self.inner.dead_put(letter).await
    }
    async fn dead_list(&self, filter: &DeadFilter, limit: usize) -> StoreResult<Vec<DeadSummary>> {
        self.inner.dead_list(filter, limit).await
    }
    async fn dead_get(&self, id: JobId) -> StoreResult<Option<DeadLetter>> {
        self.inner.dead_get(id).await
    }
    async fn dead_remove(&self, ids: &[JobId]) -> StoreResult<u64> {
        self.inner.dead_remove(ids).await
    }
    async fn dead_counts(&self) -> StoreResult<BTreeMap<String, u64>> {
        self.inner.dead_counts().await
    }
}

#[async_trait]
impl Heartbeats for FaultyStore {
    async fn heartbeat(&self, info: &WorkerInfo, ttl_ms: u64) -> StoreResult<()> {
        self.inner.heartbeat(info, ttl_ms).await
    }
    async fn worker_gone(&self, worker_id: &str) -> StoreResult<()> {
        self.inner.worker_gone(worker_id).await
    }
    async fn workers(&self) -> StoreResult<Vec<WorkerInfo>> {
        self.inner.workers().await
    }
}

#[async_trait]
impl Pipelines for FaultyStore {
    async fn pipeline_put(&self, pipeline: &StoredPipeline) -> StoreResult<()> {
        self.inner.pipeline_put(pipeline).await
    }
    async fn pipeline_get(&self, id: JobId) -> StoreResult<Option<StoredPipeline>> {
        self.inner.pipeline_get(id).await
    }
    async fn pipeline_child_done(
        &self,
        id: JobId,
        step: usize,
        child: usize,
        of: usize,
        result: &str,
    ) -> StoreResult<Option<Vec<String>>> {
        self.inner
            .pipeline_child_done(id, step, child, of, result)
            .await
    }
}

#[async_trait]
impl Schedules for FaultyStore {
    async fn schedule_put(
        &self,
        name: &str,
        spec: &ScheduleSpec,
        source: ScheduleSource,
    ) -> StoreResult<bool> {
        self.inner.schedule_put(name, spec, source).await
    }
    async fn schedule_list(&self) -> StoreResult<Vec<StoredSchedule>> {
        self.inner.schedule_list().await
    }
    async fn schedule_get(&self, name: &str) -> StoreResult<Option<StoredSchedule>> {
        self.inner.schedule_get(name).await
    }
    async fn schedule_remove(&self, name: &str) -> StoreResult<bool> {
        self.inner.schedule_remove(name).await
    }
    async fn schedule_pause(&self, name: &str, paused: bool) -> StoreResult<bool> {
        self.inner.schedule_pause(name, paused).await
    }
    async fn cron_step(&self, step: &CronStep) -> StoreResult<CronOutcome> {
        self.inner.cron_step(step).await
    }
}

#[async_trait]
impl StoreTime for FaultyStore {
    async fn store_time_ms(&self) -> StoreResult<i64> {
        self.inner.store_time_ms().await
    }
}

#[async_trait]
impl Integrity for FaultyStore {
    async fn check_integrity(&self, detected_by: &str) -> StoreResult<IntegrityCheck> {
        self.inner.check_integrity(detected_by).await
    }
    async fn data_loss_incident(&self) -> StoreResult<Option<DataLossIncident>> {
        self.inner.data_loss_incident().await
    }
    async fn clear_data_loss(&self) -> StoreResult<Option<DataLossIncident>> {
        self.inner.clear_data_loss().await
    }
}

impl Store for FaultyStore {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
}
