//! Pipelines in the store: each pipeline's declaration, and its steps' results, gathered
//! one child at a time until the step is complete (see [`crate::pipeline`]).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use serde_json::Value;

use super::{DelayedSet, JobRecord, JobState, JobStates, ScheduledJob, StoreResult};
use crate::codec::{self, Format};
use crate::job::JobId;
use crate::pipeline::PipelineSpec;

/// A pipeline as the store holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredPipeline {
    /// Its id.
    pub id: JobId,
    /// Its steps.
    pub spec: PipelineSpec,
    /// When it was submitted, Unix ms.
    pub created_at_ms: i64,
}

/// Pipelines and their steps' results; both live as long as job state records.
#[async_trait]
pub trait Pipelines: Send + Sync {
    /// Stores a pipeline (replacing one with the same id).
    async fn pipeline_put(&self, pipeline: &StoredPipeline) -> StoreResult<()>;
    /// One pipeline.
    async fn pipeline_get(&self, id: JobId) -> StoreResult<Option<StoredPipeline>>;
    /// Records `result` (JSON text) as child `child`'s of step `step` of pipeline `id`,
    /// a step of `of` children, atomically. Once every child has a result, returns them
    /// all in child order: to the call that completes the step and to every call after
    /// it (a redelivered child), so the caller can enqueue the next step, whose job ids
    /// are the same whoever enqueues it. A child's second result replaces its first.
    async fn pipeline_child_done(
        &self,
        id: JobId,
        step: usize,
        child: usize,
        of: usize,
        result: &str,
    ) -> StoreResult<Option<Vec<String>>>;
}

/// Enqueues step `step` of pipeline `id` (given the previous step's result): its jobs'
/// `scheduled` records, then the jobs into the delayed set due at `now_ms`, for a
/// scheduler to release. Enqueueing a step again enqueues the same job ids. Takes the
/// two capabilities it writes, so the worker (a step's follow-up) and the operator
/// commands (a submit) call it with their own bundles.
pub async fn enqueue_step<S>(
    store: &S,
    id: JobId,
    spec: &PipelineSpec,
    step: usize,
    previous: Option<Value>,
    now_ms: i64,
) -> StoreResult<usize>
where
    S: JobStates + DelayedSet + ?Sized,
{
    let jobs = spec.jobs(id, step, previous, now_ms);
    let name = spec.steps.get(step).map_or("", |s| s.name.as_str());
    let records: Vec<JobRecord> = jobs
        .iter()
        .map(|job| {
            let mut record = JobRecord::of(job, JobState::Scheduled, now_ms);
            record.note = Some(format!("pipeline {id} step {step} ({name})"));
            record
        })
        .collect();
    store.put_records(&records).await?;
    let scheduled = jobs
        .iter()
        .map(|job| ScheduledJob {
            id: job.id,
            queue: job.queue.clone(),
            due_ms: now_ms,
            body: codec::encode(job, Format::Binary),
        })
        .collect();
    store.schedule(scheduled).await?;
    Ok(jobs.len())
}
