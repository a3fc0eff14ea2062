//! A parallel prediction's fan-out: the parent enqueues one child per other shard, with
//! everything it resolved, then predicts shard 0 itself.

use jobfleet_common::Job;
use jobfleet_worker::{JobContext, JobError};

use super::pass::Run;
use super::spec::{PredictSpec, Resolved, Shard};

/// Enqueues the children of shards 1 to `parallelism - 1` and predicts shard 0: the
/// chunks it computed.
pub(super) async fn fan_out(
    ctx: &JobContext,
    run: &Run<'_>,
    spec: &PredictSpec,
    resolved: &Resolved,
) -> Result<u64, JobError> {
    let count = resolved.parallelism;
    let children = (1..count)
        .map(|index| child(ctx.job(), &shard_payload(run, spec, resolved, index)))
        .collect();
    ctx.spawn(children).await?;
    Ok(run.pass(Some(Shard { index: 0, count })).await?.computed)
}

/// A child's payload: the parent's, with the model and input versions resolved and the
/// child's shard.
fn shard_payload(
    run: &Run<'_>,
    spec: &PredictSpec,
    resolved: &Resolved,
    index: usize,
) -> serde_json::Value {
    serde_json::json!({
        "model": resolved.model,
        "model_version": resolved.model_version,
        "input": spec.input_path.is_none().then(|| run.input.dataset.clone()),
        "input_version": resolved.input_version,
        "input_path": spec.input_path,
        "output": spec.output,
        "id_column": spec.id_column,
        "chunk_rows": resolved.chunk_rows,
        "max_error_fraction": spec.max_error_fraction,
        "shard": Shard { index, count: resolved.parallelism },
    })
}

/// A child job of `parent` with `payload`, on the parent's queue with its kind, priority,
/// attempts and timeout.
fn child(parent: &Job, payload: &serde_json::Value) -> Job {
    Job::new(&parent.queue, &parent.kind, payload.to_string())
        .with_priority(parent.priority)
        .with_max_attempts(parent.max_attempts)
        .with_timeout_ms(parent.timeout_ms)
}
