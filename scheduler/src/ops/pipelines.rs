//! Pipelines for operators: `jobfleet pipeline submit FILE` and `jobfleet pipeline status
//! ID`. A pipeline's state is read off its jobs' state records (their ids are fixed by
//! the pipeline), so nothing but the jobs themselves moves it.

use futures::stream::{self, StreamExt};
use jobfleet_common::clock::Clock;
use jobfleet_common::limits::Limits;
use jobfleet_common::pipeline::{step_job_id, PipelineSpec};
use jobfleet_common::store::enqueue_step;
use jobfleet_common::store::{JobRecord, JobState, OperatorStore, StoredPipeline};
use jobfleet_common::JobId;
use serde::Serialize;

use crate::error::OpsError;

/// State records read at once for a status.
const READS: usize = 64;

/// Checks `spec` and submits it: its first step's jobs go into the delayed set due at
/// once (a running scheduler releases them), stamped by `clock`. Returns the
/// pipeline's id.
pub async fn pipeline_submit(
    store: &dyn OperatorStore,
    clock: &dyn Clock,
    limits: &Limits,
    spec: PipelineSpec,
) -> Result<JobId, OpsError> {
    spec.check(limits)
        .map_err(|e| OpsError::Invalid(format!("pipeline: {e}")))?;
    let id = JobId::new();
    let now = clock.now_ms();
    let pipeline = StoredPipeline {
        id,
        spec,
        created_at_ms: now,
    };
    store.pipeline_put(&pipeline).await?;
    enqueue_step(store, id, &pipeline.spec, 0, None, now).await?;
    Ok(id)
}

/// A pipeline's state, step by step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PipelineView {
    /// Its id.
    pub id: JobId,
    /// Its name.
    pub name: String,
    /// When it was submitted, Unix ms.
    pub created_at_ms: i64,
    /// `running`, `completed` or `failed`.
    pub state: &'static str,
    /// The step that failed and why.
    pub failure: Option<String>,
    /// The last step's result (an array if it fanned out), once completed.
    pub result: Option<serde_json::Value>,
    /// Each step.
    pub steps: Vec<StepView>,
}

/// One step's state.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepView {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// `waiting` (not enqueued yet), `running` (enqueued, not all finished),
    /// `completed` or `failed`.
    pub state: &'static str,
    /// Its jobs.
    pub jobs: usize,
    /// Of which completed.
    pub completed: usize,
    /// The first failed job's id and error.
    pub failure: Option<String>,
}

/// A pipeline's state; `None` if the store has no such pipeline (or it expired).
pub async fn pipeline_status(
    store: &dyn OperatorStore,
    id: JobId,
) -> Result<Option<PipelineView>, OpsError> {
    let Some(pipeline) = store.pipeline_get(id).await? else {
        return Ok(None);
    };
    let spec = &pipeline.spec;
    let mut steps = Vec::with_capacity(spec.steps.len());
    let mut last_records = Vec::new();
    for (i, step) in spec.steps.iter().enumerate() {
        let ids: Vec<JobId> = (0..spec.width(i)).map(|c| step_job_id(id, i, c)).collect();
        let records: Vec<Option<JobRecord>> = stream::iter(ids)
            .map(|job| async move { store.record(job).await })
            .buffered(READS)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let completed = records
            .iter()
            .flatten()
            .filter(|r| r.state == JobState::Completed)
            .count();
        let failed = records
            .iter()
            .flatten()
            .find(|r| matches!(r.state, JobState::Dead | JobState::Cancelled));
        let failure = failed.map(|r| {
            let why = r
                .last_error
                .as_ref()
                .map(|e| format!("{}: {}", e.kind, e.message))
                .or_else(|| r.note.clone())
                .unwrap_or_default();
            format!("job {} {}: {why}", r.id, r.state)
        });
        let state = if failure.is_some() {
            "failed"
        } else if completed == records.len() {
            "completed"
        } else if records.iter().all(Option::is_none) {
            "waiting"
        } else {
            "running"
        };
        steps.push(StepView {
            name: step.name.clone(),
            kind: step.kind.clone(),
            state,
            jobs: records.len(),
            completed,
            failure,
        });
        last_records = records;
    }
    let failed = steps.iter().find(|s| s.state == "failed");
    let failure =
        failed.map(|s| format!("step {}: {}", s.name, s.failure.clone().unwrap_or_default()));
    let done = steps.last().is_some_and(|s| s.state == "completed");
    let result = done.then(|| {
        let results = last_records
            .iter()
            .flatten()
            .map(|r| r.result.clone().unwrap_or(serde_json::Value::Null))
            .collect();
        spec.previous(spec.steps.len() - 1, results)
    });
    let state = match (&failure, done) {
        (Some(_), _) => "failed",
        (None, true) => "completed",
        (None, false) => "running",
    };
    Ok(Some(PipelineView {
        id,
        name: spec.name.clone(),
        created_at_ms: pipeline.created_at_ms,
        state,
        failure,
        result,
        steps,
    }))
}
