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
use crate::storage::{Scratch, Storage};
use crate::train::{ModelManifest, Task};
use crate::Env;
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
    files: Vec<PathBuf>,
    rows: u64,
    name: String,
}

/// The `predict` kind.
pub(crate) async fn run(ctx: JobContext, env: &Env) -> Result<(), JobError> {
    let spec: PredictSpec = ctx.payload_json()?;
    let storage = &env.storage;
    let previous = spec.previous.clone().unwrap_or_default();
    let model_name = spec
        .model
        .clone()
        .or_else(|| previous["model"].as_str().map(str::to_string))
        .ok_or_else(|| DataError::invalid("model", "missing (and no previous step named one)"))?;
    catalog::check_name("model", &model_name)?;
    let model_version = spec.model_version.or_else(|| {
        (previous["model"].as_str() == Some(model_name.as_str()))
            .then(|| previous["version"].as_u64())
            .flatten()
    });
    if !(0.0..=1.0).contains(&spec.max_error_fraction) {
        return Err(DataError::invalid("max_error_fraction", "must be between 0 and 1").into());
    }
    let chunk_rows = spec.chunk_rows.unwrap_or(env.config.chunk_rows);
    if chunk_rows == 0 {
        return Err(DataError::invalid("chunk_rows", "must be at least 1").into());
    }
    crate::storage_key("output", &spec.output)?;
    let (model_version, model): (u64, ModelManifest) =
        catalog::load(storage, Kind::Model, &model_name, model_version).await?;
    let input = input(storage, &spec, &model).await?;
    if input.schema.index(&spec.id_column).is_none() {
        return Err(DataError::invalid(
            "id_column",
            format!("{:?} is not a column of {}", spec.id_column, input.name),
        )
        .into());
    }
    let job_id = ctx.job().id.to_string();
    let parts = format!("{}.parts/{job_id}", spec.output);
    let model = Arc::new(model);
    let began = Instant::now();
    let (mut done, mut resumed) = (ChunkDone::default(), 0u64);
    let mut chunk = 0usize;
    for file in &input.files {
        let mut reader = model::reader(file, chunk_rows)?;
        loop {
            if ctx.cancelled().is_cancelled() {
                return Err(DataError::Cancelled.into());
            }
            let mark = format!("{parts}/part-{chunk:06}.json");
            if let Some(counts) = storage.get_json::<ChunkDone>(&mark).await? {
                // Checkpointed by an earlier attempt: its rows are decoded, not predicted.
                if reader.next().is_none() {
                    break;
                }
                done.rows += counts.rows;
                done.errors += counts.errors;
                resumed += 1;
                chunk += 1;
                continue;
            }
            let Some(batch) = reader.next() else { break };
            let batch = batch.map_err(DataError::from)?;
            let (m, s, id) = (model.clone(), input.schema.clone(), spec.id_column.clone());
            let scratch = Scratch::new("predict-part.parquet");
            let path = scratch.path().to_path_buf();
            let counts = joined(
                tokio::task::spawn_blocking(move || {
                    predict_chunk(&m, &s, &id, &batch, &path, chunk_rows)
                })
                .await,
            )?;
            storage
                .upload(scratch.path(), &format!("{parts}/part-{chunk:06}.parquet"))
                .await?;
            storage.put_json(&mark, &counts).await?;
            done.rows += counts.rows;
            done.errors += counts.errors;
            chunk += 1;
            report(&ctx, done.rows, input.rows, began).await;
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let error_fraction = if done.rows == 0 {
        0.0
    } else {
        done.errors as f64 / done.rows as f64
    };
    if error_fraction > spec.max_error_fraction {
        return Err(DataError::Rejected(format!(
            "{} of {} rows could not be predicted ({:.2}%, over {:.2}%); see the `error` \
             column of the parts under {parts}",
            done.errors,
            done.rows,
            error_fraction * 100.0,
            spec.max_error_fraction * 100.0
        ))
        .into());
    }
    let merged = Scratch::new("predict.parquet");
    let part_files: Vec<PathBuf> = (0..chunk)
        .map(|i| storage.local_file(&format!("{parts}/part-{i:06}.parquet")))
        .collect::<Result<_, _>>()?;
    let target = merged.path().to_path_buf();
    let schema = output_schema(&model, &input.schema, &spec.id_column)?;
    joined(
        tokio::task::spawn_blocking(move || merge(&part_files, &target, schema, chunk_rows)).await,
    )?;
    storage.upload(merged.path(), &spec.output).await?;
    storage.delete_prefix(&parts).await?;
    tracing::info!(output = %spec.output, rows = done.rows, errors = done.errors, resumed, "predictions written");
    ctx.set_result(serde_json::json!({
        "output": spec.output,
        "rows": done.rows,
        "errors": done.errors,
        "chunks": chunk,
        "resumed_chunks": resumed,
        "model": model_name,
        "model_version": model_version,
        "input": input.name,
    }))
}

async fn report(ctx: &JobContext, done: u64, total: u64, began: Instant) {
    let elapsed = began.elapsed().as_secs_f64().max(1e-3);
    #[allow(clippy::cast_precision_loss)]
    let (rate, fraction) = (done as f64 / elapsed, done as f64 / total.max(1) as f64);
    #[allow(clippy::cast_precision_loss)]
    let eta = total.saturating_sub(done) as f64 / rate.max(1e-9);
    #[allow(clippy::cast_possible_truncation)]
    ctx.progress_note(
        fraction as f32,
        format!("rows {done} of {total}, {rate:.0} rows/s, {eta:.0}s left"),
    )
    .await;
}

async fn input(
    storage: &Storage,
    spec: &PredictSpec,
    model: &ModelManifest,
) -> Result<Input, DataError> {
    if let Some(path) = &spec.input_path {
        let file = crate::ingest::resolve(storage, "input_path", path)?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&file)
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
        return Ok(Input {
            schema: Schema { columns },
            files: vec![file],
            rows,
            name: path.clone(),
        });
    }
    let name = spec.input.clone().unwrap_or_else(|| model.dataset.clone());
    catalog::check_name("input", &name)?;
    let (version, manifest): (u64, DatasetManifest) =
        catalog::load(storage, Kind::Dataset, &name, spec.input_version).await?;
    Ok(Input {
        files: manifest
            .files
            .iter()
            .map(|f| storage.local_file(&f.key))
            .collect::<Result<_, _>>()?,
        schema: manifest.schema,
        rows: manifest.rows,
        name: format!("{name} v{version}"),
    })
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
    let frame = Frame::from_batch(batch, schema, &names)?;
    let rows: Vec<usize> = (0..batch.num_rows()).collect();
    let (x, bad) = model::transform(&model.features, &frame, &rows)?;
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
