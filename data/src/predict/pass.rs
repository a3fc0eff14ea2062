//! A pass over a prediction's chunks: each chunk in the pass's scope (a shard's, or all)
//! without a checkpoint is predicted off the executor, its part uploaded under
//! `{output}.parts/{run key}/`, then its checkpoint beside it; a chunk with a checkpoint
//! is counted and skipped, so a redelivered job resumes where the last attempt stopped.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use serde::{Deserialize, Serialize};

use super::chunk::{predict_chunk, ChunkDone};
use super::input::Input;
use super::spec::{PredictSpec, Shard};
use crate::digest::hex;
use crate::error::{joined, DataError};
use crate::manifest::ModelManifest;
use crate::model;
use crate::storage::{Scratch, Storage};
use jobfleet_worker::JobContext;

/// What one pass over the chunks did.
#[derive(Debug, Default)]
pub(super) struct Pass {
    /// Rows and errors of every chunk in the pass's scope, done now or before.
    pub(super) done: ChunkDone,
    /// Chunks predicted in this pass.
    pub(super) computed: u64,
    /// Chunks in the input.
    pub(super) chunks: usize,
}

/// What a finished prediction leaves beside its output (`{output}.json`): its run key,
/// so a redelivered job and late shards know the output is complete.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Summary {
    pub(super) key: String,
    pub(super) result: serde_json::Value,
}

/// Everything a pass needs.
pub(super) struct Run<'a> {
    pub(super) ctx: &'a JobContext,
    pub(super) storage: &'a Storage,
    pub(super) input: Input,
    pub(super) model: Arc<ModelManifest>,
    pub(super) id_column: String,
    pub(super) chunk_rows: usize,
    /// `{output}.parts/{key}`.
    pub(super) parts: String,
    /// The output's key.
    pub(super) output: String,
    /// `{output}.json`.
    pub(super) summary: String,
    /// The run key ([`run_key`]).
    pub(super) key: String,
    began: Instant,
}

/// The run's identity: what decides every chunk's bytes. Parts of runs with another model
/// version, input or chunk size never mix.
pub(super) fn run_key(
    model: &str,
    version: u64,
    input: &str,
    chunk_rows: usize,
    id: &str,
) -> String {
    let text = format!("{model}\0{version}\0{input}\0{chunk_rows}\0{id}");
    let digest = <sha2::Sha256 as sha2::Digest>::digest(text.as_bytes());
    hex(&digest[..8])
}

impl<'a> Run<'a> {
    /// The run `key` of `model` over `input` into the payload's output, in chunks of
    /// `chunk_rows`.
    pub(super) fn new(
        ctx: &'a JobContext,
        storage: &'a Storage,
        spec: &PredictSpec,
        model: ModelManifest,
        input: Input,
        chunk_rows: usize,
        key: String,
    ) -> Self {
        Self {
            ctx,
            storage,
            input,
            model: Arc::new(model),
            id_column: spec.id_column.clone(),
            chunk_rows,
            parts: format!("{}.parts/{key}", spec.output),
            output: spec.output.clone(),
            summary: format!("{}.json", spec.output),
            key,
            began: Instant::now(),
        }
    }
}

impl Run<'_> {
    /// The result of a merged run with this key whose output is still there, if any.
    pub(super) async fn finished(&self) -> Result<Option<serde_json::Value>, DataError> {
        let summary = self.storage.get_json::<Summary>(&self.summary).await?;
        match summary.filter(|s| s.key == self.key) {
            Some(s) if self.storage.exists(&self.output).await? => Ok(Some(s.result)),
            _ => Ok(None),
        }
    }

    /// Predicts the chunks in `only`'s scope (all without it) that have no checkpoint.
    pub(super) async fn pass(&self, only: Option<Shard>) -> Result<Pass, DataError> {
        let mut pass = Pass::default();
        for file in &self.input.files {
            let mut reader = model::reader(file.path(), self.chunk_rows)?;
            loop {
                if self.ctx.cancelled().is_cancelled() {
                    return Err(DataError::Cancelled);
                }
                let chunk = pass.chunks;
                let mine = only.is_none_or(|s| chunk % s.count == s.index);
                let mark = format!("{}/part-{chunk:06}.json", self.parts);
                let counts = if mine {
                    self.storage.get_json::<ChunkDone>(&mark).await?
                } else {
                    None
                };
                // A chunk of another shard, or checkpointed already: decoded, not predicted.
                let Some(batch) = reader.next() else { break };
                pass.chunks += 1;
                if !mine {
                    continue;
                }
                if let Some(counts) = counts {
                    pass.done.rows += counts.rows;
                    pass.done.errors += counts.errors;
                    continue;
                }
                if only.is_some() && self.finished().await?.is_some() {
                    // The parent merged without this shard's help: nothing left to do.
                    return Ok(pass);
                }
                let counts = self.predict(chunk, batch?, &mark).await?;
                pass.done.rows += counts.rows;
                pass.done.errors += counts.errors;
                pass.computed += 1;
                report(self.ctx, pass.done.rows, self.input.rows, self.began).await;
            }
        }
        Ok(pass)
    }

    /// Predicts chunk `chunk` off the executor, uploads its part, then writes its
    /// checkpoint `mark`: a checkpoint never stands without its part.
    async fn predict(
        &self,
        chunk: usize,
        batch: RecordBatch,
        mark: &str,
    ) -> Result<ChunkDone, DataError> {
        let (m, s, id) = (
            self.model.clone(),
            self.input.schema.clone(),
            self.id_column.clone(),
        );
        let scratch = Scratch::new("predict-part.parquet");
        let path = scratch.path().to_path_buf();
        let chunk_rows = self.chunk_rows;
        let counts = joined(
            tokio::task::spawn_blocking(move || {
                predict_chunk(&m, &s, &id, &batch, &path, chunk_rows)
            })
            .await,
        )?;
        self.storage
            .upload(
                scratch.path(),
                &format!("{}/part-{chunk:06}.parquet", self.parts),
            )
            .await?;
        self.storage.put_json(mark, &counts).await?;
        Ok(counts)
    }
}

/// The job's progress: rows done of all, their rate and the time left at that rate.
async fn report(ctx: &JobContext, done: u64, total: u64, began: Instant) {
    let elapsed = began.elapsed().as_secs_f64().max(1e-3);
    let (rate, fraction) = (done as f64 / elapsed, done as f64 / total.max(1) as f64);
    let eta = total.saturating_sub(done) as f64 / rate.max(1e-9);
    ctx.progress_note(
        fraction as f32,
        format!("rows {done} of {total}, {rate:.0} rows/s, {eta:.0}s left"),
    )
    .await;
}
