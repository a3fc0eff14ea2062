//! The next step of a pipeline, enqueued by the worker that completes a step's last job
//! (see `jobfleet_common::pipeline`).
//!
//! It runs before the completed job's completion is recorded: a worker that dies between
//! the two leaves the job to run again, which enqueues the same next-step jobs (their ids
//! are fixed by the pipeline, step and child), so a step is never lost and never runs
//! twice. The next step's jobs go into the delayed set due at once, and a scheduler
//! releases them to their queues like any delayed job.

use jobfleet_common::pipeline::Member;
use jobfleet_common::store::enqueue_step;
use jobfleet_common::store::StoreError;
use serde_json::Value;

use crate::state::WorkerState;

/// Records `result` as `member`'s and, if that completes its step, enqueues the next.
pub(crate) async fn advance(
    worker: &WorkerState,
    member: Member,
    result: Option<&Value>,
) -> Result<(), StoreError> {
    let store = &worker.store;
    let Some(pipeline) = store.pipeline_get(member.pipeline).await? else {
        tracing::warn!(pipeline = %member.pipeline, "pipeline not found (expired?): no next step");
        return Ok(());
    };
    let spec = &pipeline.spec;
    let text = result.map_or_else(|| "null".to_string(), Value::to_string);
    let width = spec.width(member.step);
    let done = store
        .pipeline_child_done(member.pipeline, member.step, member.child, width, &text)
        .await?;
    let (Some(results), next) = (done, member.step + 1) else {
        return Ok(());
    };
    if next >= spec.steps.len() {
        tracing::info!(pipeline = %member.pipeline, "pipeline completed");
        return Ok(());
    }
    let values = results
        .iter()
        .map(|r| serde_json::from_str(r).unwrap_or(Value::Null))
        .collect();
    let previous = spec.previous(member.step, values);
    let now = worker.clock.now_ms();
    let jobs = enqueue_step(&**store, member.pipeline, spec, next, Some(previous), now).await?;
    tracing::info!(
        pipeline = %member.pipeline,
        step = next,
        name = %spec.steps[next].name,
        jobs,
        "pipeline step enqueued"
    );
    Ok(())
}
