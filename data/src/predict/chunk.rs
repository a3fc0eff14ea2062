//! One chunk's predictions, blocking: the chunk's features under the model's
//! preprocessing, the linear model's output, and the output columns (the id,
//! `prediction`, `probability` for classification, `error`) written as a Parquet part.

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema as ArrowSchema};
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::manifest::{ModelManifest, Task};
use crate::model::{self, Frame};
use crate::parquet_out;
use crate::schema::Schema;

/// One chunk's checkpoint.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub(super) struct ChunkDone {
    /// Rows predicted (or given an error).
    pub(super) rows: u64,
    /// Rows without a prediction.
    pub(super) errors: u64,
}

/// The output's columns: the id column (typed as in the input), `prediction`,
/// `probability` (classification only), `error`.
pub(super) fn output_schema(
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
pub(super) fn predict_chunk(
    model: &ModelManifest,
    schema: &Schema,
    id: &str,
    batch: &RecordBatch,
    out: &Path,
    chunk_rows: usize,
) -> Result<ChunkDone, DataError> {
    let (x, bad) = features(model, schema, batch)?;
    let w = Array1::from(model.coefficients.clone());
    let z = model::linear(&x, &w, model.intercept);
    let output = output_schema(model, schema, id)?;
    let id_array = batch
        .column_by_name(id)
        .ok_or_else(|| DataError::invalid("id_column", format!("{id:?} is not in the input")))?
        .clone();
    // `bad` is sorted: the rows with a feature that is not a finite number.
    let is_bad = |r: usize| bad.binary_search(&r).is_ok();
    let errors = error_column(batch.num_rows(), &is_bad);
    let mut columns: Vec<ArrayRef> = vec![id_array];
    columns.extend(prediction_columns(model, &z, &is_bad)?);
    columns.push(errors);
    let batch = RecordBatch::try_new(output.clone(), columns)?;
    let mut writer = parquet_out::create(out, output, chunk_rows)?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(ChunkDone {
        rows: batch.num_rows() as u64,
        errors: bad.len() as u64,
    })
}

/// The chunk's feature matrix under the model's preprocessing, and the rows that have a
/// non-finite number; the model must have a coefficient per matrix column.
fn features(
    model: &ModelManifest,
    schema: &Schema,
    batch: &RecordBatch,
) -> Result<(Array2<f64>, Vec<usize>), DataError> {
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
    Ok((x, bad))
}

/// The `error` column: why a row has no prediction, null where it has one.
fn error_column(rows: usize, is_bad: &impl Fn(usize) -> bool) -> ArrayRef {
    let mut errors = StringBuilder::new();
    for r in 0..rows {
        if is_bad(r) {
            errors.append_value("a feature is not a finite number");
        } else {
            errors.append_null();
        }
    }
    Arc::new(errors.finish())
}

/// The prediction columns from the linear output `z`: the class and its probability for
/// a (two-class) classifier, the number for a regression; null on a bad row.
fn prediction_columns(
    model: &ModelManifest,
    z: &Array1<f64>,
    is_bad: &impl Fn(usize) -> bool,
) -> Result<Vec<ArrayRef>, DataError> {
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
            Ok(vec![
                Arc::new(labels.finish()),
                Arc::new(probabilities.finish()),
            ])
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
            Ok(vec![Arc::new(values.finish())])
        }
        _ => Err(DataError::Corrupt(format!(
            "model {:?} has no classes",
            model.model
        ))),
    }
}
