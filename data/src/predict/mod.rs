//! `predict`: a model over a dataset version (or a Parquet file), a chunk at a time,
//! resumable.
//!
//! The input is read `chunk_rows` rows at a time (so memory does not grow with the
//! input), and each chunk's predictions are written as their own Parquet part under
//! `{output}.parts/{job id}/`, followed by a small record of the chunk's counts: that
//! record is the checkpoint. A redelivered job (its worker killed) skips every chunk with
//! a checkpoint. When all chunks are done the parts are merged, in order, into `output`
//! with the same writer settings, so the output's bytes are those of an uninterrupted
//! run, and the parts are deleted.
//!
//! Output columns: the input's id column; `prediction` (the class, as text, for a
//! classification model; the number for regression); `probability` (of the positive
//! class, classification only); `error` (why a row has no prediction: a non-finite
//! number). Rows with an error are counted; past `max_error_fraction` the job fails.
//!
//! # Layout
//!
//! - this file: the kind's run (model, input, the passes, the error check, the result).
//! - `spec`: the payload ([`PredictSpec`], [`Shard`]) and the lock it names.
//! - `input`: the dataset version or Parquet file read.
//! - `pass`: a pass over the chunks, checkpointed; the run's key.
//! - `chunk`: one chunk's predictions into a Parquet part, and its checkpoint record.
//! - `fan_out`: a parallel prediction's children.
//! - `merge`: the parts into the output, published, then deleted.

mod chunk;
mod fan_out;
mod input;
mod merge;
mod pass;
mod spec;

use jobfleet_worker::{JobContext, JobError};

use crate::catalog::{self, Kind};
use crate::env::Env;
use crate::error::DataError;
use crate::fencing;
use crate::manifest::ModelManifest;
use crate::storage::Storage;
use chunk::ChunkDone;
use pass::{run_key, Pass, Run};
use spec::{check_chunk_rows, Resolved};

pub(crate) use spec::{lock_key, output_key};
pub use spec::{PredictSpec, Shard, MAX_CHUNK_ROWS, MAX_PARALLELISM};

/// The `predict` kind.
pub(crate) async fn run(ctx: JobContext, env: &Env) -> Result<(), JobError> {
    let spec = PredictSpec::parse(&ctx.job().payload)?;
    let storage = &env.storage;
    let (model_name, model_version) = spec.model()?;
    let chunk_rows = spec.chunk_rows.unwrap_or(env.config.chunk_rows);
    check_chunk_rows(chunk_rows)?;
    fencing::lock_token(&ctx, &spec.lock())?;
    let (model_version, model) = load_model(storage, &spec, &model_name, model_version).await?;
    let (input, input_version) = input::resolve(storage, &spec, &model).await?;
    input.check_id_column(&spec.id_column)?;
    let key = run_key(
        &model_name,
        model_version,
        &input.name,
        chunk_rows,
        &spec.id_column,
    );
    let run = Run::new(&ctx, storage, &spec, model, input, chunk_rows, key);
    if let Some(done) = run.finished().await? {
        // Merged already: by an earlier attempt of this job, or this shard is late.
        return ctx.set_result(done);
    }
    if let Some(shard) = spec.shard {
        let pass = run.pass(Some(shard)).await?;
        return ctx.set_result(serde_json::json!({
            "shard": shard.index,
            "of": shard.count,
            "computed": pass.computed,
            "rows": pass.done.rows,
            "errors": pass.done.errors,
        }));
    }
    let resolved = Resolved {
        model: model_name,
        model_version,
        input_version,
        chunk_rows,
        parallelism: spec.parallelism.unwrap_or(1),
    };
    let result = predict_all(&ctx, &run, &spec, &resolved).await?;
    ctx.set_result(result)
}

/// The model version the payload names (latest when it names none); an error names the
/// field that chose it.
async fn load_model(
    storage: &Storage,
    spec: &PredictSpec,
    name: &str,
    version: Option<u64>,
) -> Result<(u64, ModelManifest), DataError> {
    let field = if spec.model_version.is_some() {
        "model_version"
    } else {
        "model"
    };
    catalog::load(storage, Kind::Model, field, name, version).await
}

/// The parent's work: the fan-out if parallel, every chunk still missing, the error
/// check and the merge; the job's result.
async fn predict_all(
    ctx: &JobContext,
    run: &Run<'_>,
    spec: &PredictSpec,
    resolved: &Resolved,
) -> Result<serde_json::Value, JobError> {
    let mut computed = 0;
    if resolved.parallelism > 1 {
        computed += fan_out::fan_out(ctx, run, spec, resolved).await?;
    }
    // Every chunk: those of the shards not done yet (a slow or lost child's) are done here.
    let pass = run.pass(None).await?;
    computed += pass.computed;
    check_errors(&pass.done, spec, &run.parts)?;
    let result = result(spec, resolved, &pass, computed, &run.input.name);
    run.merge(pass.chunks, &result).await?;
    tracing::info!(
        output = %spec.output,
        rows = pass.done.rows,
        errors = pass.done.errors,
        computed,
        "predictions written"
    );
    Ok(result)
}

/// Fails the job when more than `max_error_fraction` of the rows have no prediction.
fn check_errors(done: &ChunkDone, spec: &PredictSpec, parts: &str) -> Result<(), DataError> {
    let error_fraction = if done.rows == 0 {
        0.0
    } else {
        done.errors as f64 / done.rows as f64
    };
    if error_fraction <= spec.max_error_fraction {
        return Ok(());
    }
    Err(DataError::Rejected(format!(
        "{} of {} rows could not be predicted ({:.2}%, over {:.2}%); see the `error` \
         column of the parts under {parts}",
        done.errors,
        done.rows,
        error_fraction * 100.0,
        spec.max_error_fraction * 100.0,
    )))
}

/// The job's result: what was written, from what, and how much was resumed.
fn result(
    spec: &PredictSpec,
    resolved: &Resolved,
    pass: &Pass,
    computed: u64,
    input: &str,
) -> serde_json::Value {
    serde_json::json!({
        "output": spec.output,
        "rows": pass.done.rows,
        "errors": pass.done.errors,
        "chunks": pass.chunks,
        "computed": computed,
        "resumed_chunks": pass.chunks as u64 - computed.min(pass.chunks as u64),
        "parallelism": resolved.parallelism,
        "model": resolved.model,
        "model_version": resolved.model_version,
        "input": input,
    })
}
