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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::{Float64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema as ArrowSchema};
use parquet::arrow::ArrowWriter;
use serde::{Deserialize, Serialize};

use crate::catalog::{self, Kind};
use crate::error::{joined, DataError};
use crate::ingest::{writer_properties, DatasetManifest};
use crate::model::{self, Frame};
use crate::schema::{ColumnSpec, ColumnType, Schema};
use crate::storage::{LocalCopy, Scratch, Storage};
use crate::train::{ModelManifest, Task};
use crate::Env;
use jobfleet_common::Job;
use jobfleet_worker::{JobContext, JobError};

/// The `predict` payload.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictSpec {
    /// The model; from `previous.model` in a pipeline when absent.
    #[serde(default)]
    pub model: Option<String>,
    /// Its version; latest when absent (or `previous.version` in a pipeline).
    #[serde(default)]
    pub model_version: Option<u64>,
    /// The input dataset; the model's training dataset when neither this nor
    /// `input_path` is given.
    #[serde(default)]
    pub input: Option<String>,
    /// The input dataset's version; latest when absent.
    #[serde(default)]
    pub input_version: Option<u64>,
    /// A Parquet file as input instead: a key under the data URL or a path.
    #[serde(default)]
    pub input_path: Option<String>,
    /// The output's key under the data URL, e.g. `predictions/games.parquet`.
    pub output: String,
    /// The input column that keys each prediction.
    pub id_column: String,
    /// Rows per chunk (and checkpoint); `[data] chunk_rows` when absent.
    #[serde(default)]
    pub chunk_rows: Option<usize>,
    /// The fraction of rows that may fail before the job does, default 0.01.
    #[serde(default = "default_error_fraction")]
    pub max_error_fraction: f64,
    /// Workers to spread the chunks over (1–64, default 1): this job enqueues
    /// `parallelism - 1` children for the other shards, predicts its own, then every
    /// chunk still missing, and merges.
    #[serde(default)]
    pub parallelism: Option<usize>,
    /// Set on the children of a parallel prediction.
    #[serde(default)]
    pub shard: Option<Shard>,
    /// Set by pipelines: the train step's result.
    #[serde(default)]
    pub previous: Option<serde_json::Value>,
}

fn default_error_fraction() -> f64 {
    0.01
}

/// One chunk's checkpoint.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct ChunkDone {
    rows: u64,
    errors: u64,
}

/// The input: its schema, files and row count.
struct Input {
    schema: Schema,
    /// Local files: a bucket's objects are downloaded for the run.
    files: Vec<LocalCopy>,
    rows: u64,
    /// For people and the run key: `games v3`, or the file.
    name: String,
    /// The dataset's name (empty for a file).
    dataset: String,
}

/// One of `count` shards of a parallel prediction: the chunks `i` with
/// `i % count == index`. Set by the parent on the children it enqueues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    /// This shard, from 0.
    pub index: usize,
    /// How many.
    pub count: usize,
}

/// The most workers one prediction fans out over.
pub const MAX_PARALLELISM: usize = 64;
/// The largest chunk: memory is a chunk's rows, so it is bounded.
pub const MAX_CHUNK_ROWS: usize = 1 << 20;

/// What a finished prediction leaves beside its output (`{output}.json`): its run key,
/// so a redelivered job and late shards know the output is complete.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Summary {
    key: String,
    result: serde_json::Value,
}

/// What one pass over the chunks did.
#[derive(Debug, Default)]
struct Pass {
    /// Rows and errors of every chunk in the pass's scope, done now or before.
    done: ChunkDone,
    /// Chunks predicted in this pass.
    computed: u64,
    /// Chunks in the input.
    chunks: usize,
}

/// Everything a pass needs.
struct Run<'a> {
    ctx: &'a JobContext,
    storage: &'a Storage,
    input: Input,
    model: Arc<ModelManifest>,
    id_column: String,
    chunk_rows: usize,
    /// `{output}.parts/{key}`.
    parts: String,
    /// The output's key.
    output: String,
    /// `{output}.json`.
    summary: String,
    key: String,
    began: Instant,
}

impl PredictSpec {
    /// The payload, checked as far as it can be without reading storage: the handler's
    /// first step, and `jobfleet run`'s check before it runs anything.
    pub(crate) fn parse(payload: &[u8]) -> Result<Self, JobError> {
        let spec: Self = serde_json::from_slice(payload)?;
        spec.model()?;
        spec.check()?;
        Ok(spec)
    }

    /// The model's name and version: the payload's, else the previous pipeline step's.
    fn model(&self) -> Result<(String, Option<u64>), DataError> {
        let previous = self.previous.clone().unwrap_or_default();
        let name = self
            .model
            .clone()
            .or_else(|| previous["model"].as_str().map(str::to_string))
            .ok_or_else(|| {
                DataError::invalid("model", "missing (and no previous step named one)")
            })?;
        catalog::check_name("model", &name)?;
        let version = self.model_version.or_else(|| {
            (previous["model"].as_str() == Some(name.as_str()))
                .then(|| previous["version"].as_u64())
                .flatten()
        });
        Ok((name, version))
    }

    fn check(&self) -> Result<(), DataError> {
        if !(0.0..=1.0).contains(&self.max_error_fraction) {
            return Err(DataError::invalid(
                "max_error_fraction",
                "must be between 0 and 1",
            ));
        }
        if let Some(rows) = self.chunk_rows {
            check_chunk_rows(rows)?;
        }
        let parallelism = self.parallelism.unwrap_or(1);
        if !(1..=MAX_PARALLELISM).contains(&parallelism) {
            return Err(DataError::invalid(
                "parallelism",
                format!("must be 1 to {MAX_PARALLELISM}"),
            ));
        }
        if let Some(shard) = self.shard {
            if shard.index >= shard.count || shard.count > MAX_PARALLELISM || parallelism > 1 {
                return Err(DataError::invalid(
                    "shard",
                    "index below count (at most 64), and no parallelism beside it",
                ));
            }
        }
        crate::output_key(&self.output)
    }
}

/// `chunk_rows`, the payload's or `[data]`'s, is at most [`MAX_CHUNK_ROWS`].
fn check_chunk_rows(chunk_rows: usize) -> Result<(), DataError> {
    if (1..=MAX_CHUNK_ROWS).contains(&chunk_rows) {
        Ok(())
    } else {
        Err(DataError::invalid(
            "chunk_rows",
            format!("must be 1 to {MAX_CHUNK_ROWS}"),
        ))
    }
}

/// The `predict` kind.
pub(crate) async fn run(ctx: JobContext, env: &Env) -> Result<(), JobError> {
    let spec = PredictSpec::parse(&ctx.job().payload)?;
    let storage = &env.storage;
    let (model_name, model_version) = spec.model()?;
    let chunk_rows = spec.chunk_rows.unwrap_or(env.config.chunk_rows);
    check_chunk_rows(chunk_rows)?;
    let parallelism = spec.parallelism.unwrap_or(1);
    let lock = match spec.shard {
        Some(shard) => format!(
            "{}:shard:{}",
            crate::predict_lock(&spec.output),
            shard.index
        ),
        None => crate::predict_lock(&spec.output),
    };
    crate::lock_token(&ctx, &lock)?;
    let (model_version, model): (u64, ModelManifest) = catalog::load(
        storage,
        Kind::Model,
        if spec.model_version.is_some() {
            "model_version"
        } else {
            "model"
        },
        &model_name,
        model_version,
    )
    .await?;
    let (input, input_version) = input(storage, &spec, &model).await?;
    if input.schema.index(&spec.id_column).is_none() {
        return Err(DataError::invalid(
            "id_column",
            format!("{:?} is not a column of {}", spec.id_column, input.name),
        )
        .into());
    }
    let key = run_key(
        &model_name,
        model_version,
        &input.name,
        chunk_rows,
        &spec.id_column,
    );
    let run = Run {
        ctx: &ctx,
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
    };
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
    let mut computed = 0;
    if parallelism > 1 {
        // The children take the other shards with everything resolved, so the model or
        // dataset's latest version moving meanwhile cannot split the run.
        let children = (1..parallelism)
            .map(|index| {
                let payload = serde_json::json!({
                    "model": model_name,
                    "model_version": model_version,
                    "input": spec.input_path.is_none().then(|| run.input.dataset.clone()),
                    "input_version": input_version,
                    "input_path": spec.input_path,
                    "output": spec.output,
                    "id_column": spec.id_column,
                    "chunk_rows": chunk_rows,
                    "max_error_fraction": spec.max_error_fraction,
                    "shard": Shard { index, count: parallelism },
                });
                let job = ctx.job();
                Job::new(&job.queue, &job.kind, payload.to_string())
                    .with_priority(job.priority)
                    .with_max_attempts(job.max_attempts)
                    .with_timeout_ms(job.timeout_ms)
            })
            .collect();
        ctx.spawn(children).await?;
        computed += run
            .pass(Some(Shard {
                index: 0,
                count: parallelism,
            }))
            .await?
            .computed;
    }
    // Every chunk: those of the shards not done yet (a slow or lost child's) are done here.
    let pass = run.pass(None).await?;
    computed += pass.computed;
    let done = pass.done;
    let error_fraction = if done.rows == 0 {
        0.0
    } else {
        done.errors as f64 / done.rows as f64
    };
    if error_fraction > spec.max_error_fraction {
        return Err(DataError::Rejected(format!(
            "{} of {} rows could not be predicted ({:.2}%, over {:.2}%); see the `error` \
             column of the parts under {}",
            done.errors,
            done.rows,
            error_fraction * 100.0,
            spec.max_error_fraction * 100.0,
            run.parts
        ))
        .into());
    }
    let result = serde_json::json!({
        "output": spec.output,
        "rows": done.rows,
        "errors": done.errors,
        "chunks": pass.chunks,
        "computed": computed,
        "resumed_chunks": pass.chunks as u64 - computed.min(pass.chunks as u64),
        "parallelism": parallelism,
        "model": model_name,
        "model_version": model_version,
        "input": run.input.name,
    });
    run.merge(pass.chunks, &result).await?;
    tracing::info!(output = %spec.output, rows = done.rows, errors = done.errors, computed, "predictions written");
    ctx.set_result(result)
}

/// The run's identity: what decides every chunk's bytes. Parts of runs with another model
/// version, input or chunk size never mix.
fn run_key(model: &str, version: u64, input: &str, chunk_rows: usize, id: &str) -> String {
    let text = format!("{model}\0{version}\0{input}\0{chunk_rows}\0{id}");
    let digest = <sha2::Sha256 as sha2::Digest>::digest(text.as_bytes());
    crate::ingest::hex(&digest[..8])
}

impl Run<'_> {
    /// The result of a merged run with this key whose output is still there, if any.
    async fn finished(&self) -> Result<Option<serde_json::Value>, DataError> {
        let summary = self.storage.get_json::<Summary>(&self.summary).await?;
        match summary.filter(|s| s.key == self.key) {
            Some(s) if self.storage.exists(&self.output).await? => Ok(Some(s.result)),
            _ => Ok(None),
        }
    }

    /// Predicts the chunks in `only`'s scope (all without it) that have no checkpoint.
    async fn pass(&self, only: Option<Shard>) -> Result<Pass, DataError> {
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
                let batch = batch.map_err(DataError::from)?;
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
                self.storage.put_json(&mark, &counts).await?;
                pass.done.rows += counts.rows;
                pass.done.errors += counts.errors;
                pass.computed += 1;
                report(self.ctx, pass.done.rows, self.input.rows, self.began).await;
            }
        }
        Ok(pass)
    }

    /// The parts, in order, into `output`; then the summary beside it; then the parts go.
    async fn merge(&self, chunks: usize, result: &serde_json::Value) -> Result<(), DataError> {
        let merged = Scratch::new("predict.parquet");
        let mut parts = Vec::with_capacity(chunks);
        for i in 0..chunks {
            let key = format!("{}/part-{i:06}.parquet", self.parts);
            parts.push(self.storage.local_copy_of(&key).await?);
        }
        let part_files: Vec<PathBuf> = parts.iter().map(|p| p.path().to_path_buf()).collect();
        let target = merged.path().to_path_buf();
        let schema = output_schema(&self.model, &self.input.schema, &self.id_column)?;
        let chunk_rows = self.chunk_rows;
        joined(
            tokio::task::spawn_blocking(move || merge(&part_files, &target, schema, chunk_rows))
                .await,
        )?;
        // A holder of the output's lock newer than this attempt's wrote first: stop.
        crate::fence(self.ctx, &crate::predict_lock(&self.output), chunks as u64).await?;
        self.storage.upload(merged.path(), &self.output).await?;
        self.storage
            .put_json(
                &self.summary,
                &Summary {
                    key: self.key.clone(),
                    result: result.clone(),
                },
            )
            .await?;
        // The checkpoints first: a kill half way leaves parts to redo, never a checkpoint
        // without its part.
        let marks: Vec<String> = self
            .storage
            .list(&self.parts)
            .await?
            .into_iter()
            .filter(|k| k.ends_with(".json"))
            .collect();
        for mark in &marks {
            self.storage.delete(mark).await?;
        }
        self.storage.delete_prefix(&self.parts).await
    }
}

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

/// The input and, for a dataset, the version resolved.
async fn input(
    storage: &Storage,
    spec: &PredictSpec,
    model: &ModelManifest,
) -> Result<(Input, Option<u64>), DataError> {
    if let Some(path) = &spec.input_path {
        let file = crate::ingest::resolve(storage, "input_path", path).await?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(file.path())
                .map_err(|e| DataError::invalid("input_path", e.to_string()))?,
        )
        .map_err(|e| DataError::invalid("input_path", format!("not Parquet: {e}")))?;
        let rows = u64::try_from(reader.metadata().file_metadata().num_rows()).unwrap_or(0);
        let columns = reader
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let kind = match f.data_type() {
                    DataType::Int64 => ColumnType::Int,
                    DataType::Float64 => ColumnType::Float,
                    DataType::Boolean => ColumnType::Bool,
                    DataType::Utf8 => ColumnType::String,
                    other => {
                        return Err(DataError::invalid(
                            "input_path",
                            format!(
                                "column {:?} is {other}; predict reads int64, float64, \
                                 boolean and utf8 (ingest the file to convert it)",
                                f.name()
                            ),
                        ))
                    }
                };
                Ok(ColumnSpec {
                    name: f.name().clone(),
                    kind,
                    nullable: true,
                    min: None,
                    max: None,
                    categories: None,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok((
            Input {
                schema: Schema { columns },
                files: vec![file],
                rows,
                name: path.clone(),
                dataset: String::new(),
            },
            None,
        ));
    }
    let name = spec.input.clone().unwrap_or_else(|| model.dataset.clone());
    catalog::check_name("input", &name)?;
    let (version, manifest): (u64, DatasetManifest) = catalog::load(
        storage,
        Kind::Dataset,
        if spec.input_version.is_some() {
            "input_version"
        } else {
            "input"
        },
        &name,
        spec.input_version,
    )
    .await?;
    let mut files = Vec::with_capacity(manifest.files.len());
    for file in &manifest.files {
        files.push(storage.local_copy_of(&file.key).await?);
    }
    let input = Input {
        files,
        schema: manifest.schema,
        rows: manifest.rows,
        name: format!("{name} v{version}"),
        dataset: name,
    };
    Ok((input, Some(version)))
}

fn output_schema(
    model: &ModelManifest,
    input: &Schema,
    id: &str,
) -> Result<Arc<ArrowSchema>, DataError> {
    let id_kind = input
        .columns
        .iter()
        .find(|c| c.name == id)
        .map(|c| c.kind)
        .ok_or_else(|| DataError::invalid("id_column", "missing"))?;
    let mut fields = vec![Field::new(id, id_kind.arrow(), true)];
    match model.task {
        Task::Classification => {
            fields.push(Field::new("prediction", DataType::Utf8, true));
            fields.push(Field::new("probability", DataType::Float64, true));
        }
        Task::Regression => fields.push(Field::new("prediction", DataType::Float64, true)),
    }
    fields.push(Field::new("error", DataType::Utf8, true));
    Ok(Arc::new(ArrowSchema::new(fields)))
}

/// Predicts one chunk into the Parquet file `out`.
fn predict_chunk(
    model: &ModelManifest,
    schema: &Schema,
    id: &str,
    batch: &RecordBatch,
    out: &std::path::Path,
    chunk_rows: usize,
) -> Result<ChunkDone, DataError> {
    let names: Vec<String> = model
        .features
        .iter()
        .map(|f| match f {
            model::Feature::Standardized { column, .. } | model::Feature::OneHot { column, .. } => {
                column.clone()
            }
        })
        .collect();
    let frame = Frame::from_batch(batch, schema, &names, "input")?;
    let rows: Vec<usize> = (0..batch.num_rows()).collect();
    let (x, bad) = model::transform(&model.features, &frame, &rows)?;
    if x.ncols() != model.coefficients.len() {
        return Err(DataError::Corrupt(format!(
            "model {:?} v{} has {} coefficients for {} feature columns",
            model.model,
            model.version,
            model.coefficients.len(),
            x.ncols()
        )));
    }
    let w = ndarray::Array1::from(model.coefficients.clone());
    let z = model::linear(&x, &w, model.intercept);
    let output = output_schema(model, schema, id)?;
    let id_array = batch
        .column_by_name(id)
        .ok_or_else(|| DataError::invalid("id_column", format!("{id:?} is not in the input")))?
        .clone();
    let mut errors = StringBuilder::new();
    let is_bad = |r: usize| bad.binary_search(&r).is_ok();
    for r in 0..rows.len() {
        if is_bad(r) {
            errors.append_value("a feature is not a finite number");
        } else {
            errors.append_null();
        }
    }
    let mut columns: Vec<ArrayRef> = vec![id_array];
    match (&model.task, &model.classes) {
        (Task::Classification, Some(classes)) if classes.len() == 2 => {
            let mut labels = StringBuilder::new();
            let mut probabilities = Float64Builder::new();
            for (r, &zr) in z.iter().enumerate() {
                if is_bad(r) {
                    labels.append_null();
                    probabilities.append_null();
                } else {
                    let p = model::sigmoid(zr);
                    labels.append_value(&classes[usize::from(p >= 0.5)]);
                    probabilities.append_value(p);
                }
            }
            columns.push(Arc::new(labels.finish()));
            columns.push(Arc::new(probabilities.finish()));
        }
        (Task::Regression, _) => {
            let mut values = Float64Builder::new();
            for (r, &zr) in z.iter().enumerate() {
                if is_bad(r) {
                    values.append_null();
                } else {
                    values.append_value(zr);
                }
            }
            columns.push(Arc::new(values.finish()));
        }
        _ => {
            return Err(DataError::Corrupt(format!(
                "model {:?} has no classes",
                model.model
            )))
        }
    }
    columns.push(Arc::new(errors.finish()));
    let batch = RecordBatch::try_new(output.clone(), columns)?;
    let file =
        std::fs::File::create(out).map_err(|e| DataError::Io(format!("{}: {e}", out.display())))?;
    let mut writer = ArrowWriter::try_new(file, output, Some(writer_properties(chunk_rows)))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(ChunkDone {
        rows: batch.num_rows() as u64,
        errors: bad.len() as u64,
    })
}

/// The parts, in order, into one file.
fn merge(
    parts: &[PathBuf],
    out: &std::path::Path,
    schema: Arc<ArrowSchema>,
    chunk_rows: usize,
) -> Result<(), DataError> {
    let file =
        std::fs::File::create(out).map_err(|e| DataError::Io(format!("{}: {e}", out.display())))?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(writer_properties(chunk_rows)))?;
    for part in parts {
        for batch in model::reader(part, chunk_rows)? {
            writer.write(&batch?)?;
        }
    }
    writer.close()?;
    Ok(())
}
