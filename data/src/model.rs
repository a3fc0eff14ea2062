//! The numbers of training and prediction: reading a dataset into columns, turning
//! columns into a feature matrix, the train/test split and the linear models' outputs
//! (their metrics are [`crate::metrics`]).
//!
//! **Preprocessing**, fitted on the training split only: every numeric column (ints,
//! floats, booleans as 0/1) is standardised with the training split's mean and
//! population standard deviation (a constant column is only centred); a missing number
//! is replaced by that mean (so it becomes 0). Every string column is one-hot encoded
//! over the categories seen in the training split, sorted; a missing or unseen category
//! is all zeros.

use std::fs::File;
use std::path::Path;

use arrow_array::{Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use ndarray::{Array1, Array2};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::schema::{ColumnType, Schema};

/// A column read for training or prediction.
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    /// Ints, floats and booleans (as 0/1).
    Num(Vec<Option<f64>>),
    /// Strings.
    Cat(Vec<Option<String>>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Self::Num(v) => v.len(),
            Self::Cat(v) => v.len(),
        }
    }

    /// Cell `i` as a class label: numbers in their shortest form, booleans as `true` or
    /// `false` (kept by `bools`).
    pub fn label(&self, i: usize, kind: ColumnType) -> Option<String> {
        match self {
            Self::Cat(v) => v[i].clone(),
            Self::Num(v) => v[i].map(|x| match kind {
                ColumnType::Bool => (x != 0.0).to_string(),
                _ => x.to_string(),
            }),
        }
    }
}

/// Named columns of equal length.
#[derive(Clone, Debug, Default)]
pub struct Frame {
    /// Column names.
    pub names: Vec<String>,
    /// The columns, in `names` order.
    pub columns: Vec<Column>,
}

impl Frame {
    /// Rows.
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.columns[i])
    }

    /// The columns `names` of `batch`, typed by `schema`; a name that is not a column is
    /// an error naming the payload's `field`.
    pub fn from_batch(
        batch: &RecordBatch,
        schema: &Schema,
        names: &[String],
        field: &str,
    ) -> Result<Self, DataError> {
        let mut frame = Frame::default();
        for name in names {
            let spec = schema
                .columns
                .iter()
                .find(|c| &c.name == name)
                .ok_or_else(|| DataError::invalid(field, format!("has no column {name:?}")))?;
            let array = batch.column_by_name(name).ok_or_else(|| {
                DataError::Corrupt(format!("column {name:?} is missing from a data file"))
            })?;
            frame.names.push(name.clone());
            frame.columns.push(column(array.as_ref(), spec.kind)?);
        }
        Ok(frame)
    }

    /// Appends `other`'s rows (same columns).
    pub fn extend(&mut self, other: Frame) {
        if self.names.is_empty() {
            *self = other;
            return;
        }
        for (mine, theirs) in self.columns.iter_mut().zip(other.columns) {
            match (mine, theirs) {
                (Column::Num(a), Column::Num(b)) => a.extend(b),
                (Column::Cat(a), Column::Cat(b)) => a.extend(b),
                _ => {}
            }
        }
    }
}

fn column(array: &dyn Array, kind: ColumnType) -> Result<Column, DataError> {
    let wrong = || DataError::Corrupt(format!("a data column is not of type {kind:?}"));
    Ok(match kind {
        ColumnType::Int => {
            let a = array
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(wrong)?;
            Column::Num(a.iter().map(|v| v.map(|x| x as f64)).collect())
        }
        ColumnType::Float => {
            let a = array
                .as_any()
                .downcast_ref::<Float64Array>()
                .ok_or_else(wrong)?;
            Column::Num(a.iter().collect())
        }
        ColumnType::Bool => {
            let a = array
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(wrong)?;
            Column::Num(
                a.iter()
                    .map(|v| v.map(|b| if b { 1.0 } else { 0.0 }))
                    .collect(),
            )
        }
        ColumnType::String => {
            let a = array
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(wrong)?;
            Column::Cat(a.iter().map(|v| v.map(str::to_string)).collect())
        }
    })
}

/// Every row of the Parquet files `paths`, columns `names` only; stops between batches
/// of 65,536 rows once `cancel` fires.
pub fn read_files(
    paths: &[std::path::PathBuf],
    schema: &Schema,
    names: &[String],
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Frame, DataError> {
    let mut frame = Frame::default();
    for path in paths {
        for batch in reader(path, 65_536)? {
            if cancel.is_cancelled() {
                return Err(DataError::Cancelled);
            }
            frame.extend(Frame::from_batch(&batch?, schema, names, "features")?);
        }
    }
    Ok(frame)
}

/// A Parquet file's batches of `batch_rows`.
pub fn reader(
    path: &Path,
    batch_rows: usize,
) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader, DataError> {
    let file = File::open(path).map_err(|e| DataError::Io(format!("{}: {e}", path.display())))?;
    Ok(ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(batch_rows)
        .build()?)
}

/// How one feature column becomes matrix columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "encoding", rename_all = "snake_case")]
pub enum Feature {
    /// `(x - mean) / std`; missing → 0.
    Standardized {
        /// The column.
        column: String,
        /// The training split's mean.
        mean: f64,
        /// Its population standard deviation (1 for a constant column).
        std: f64,
    },
    /// One 0/1 column per category.
    OneHot {
        /// The column.
        column: String,
        /// The training split's categories, sorted.
        categories: Vec<String>,
    },
}

impl Feature {
    fn width(&self) -> usize {
        match self {
            Self::Standardized { .. } => 1,
            Self::OneHot { categories, .. } => categories.len(),
        }
    }

    fn column(&self) -> &str {
        match self {
            Self::Standardized { column, .. } | Self::OneHot { column, .. } => column,
        }
    }
}

/// Fits the preprocessing of `features` on rows `train` of `frame`.
pub fn fit_features(frame: &Frame, features: &[String], train: &[usize]) -> Vec<Feature> {
    features
        .iter()
        .filter_map(|name| {
            Some(match frame.column(name)? {
                Column::Num(v) => {
                    let seen: Vec<f64> = train.iter().filter_map(|&i| v[i]).collect();
                    let n = seen.len().max(1) as f64;
                    let mean = seen.iter().sum::<f64>() / n;
                    let var = seen.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
                    let std = var.sqrt();
                    Feature::Standardized {
                        column: name.clone(),
                        mean,
                        std: if std > 0.0 { std } else { 1.0 },
                    }
                }
                Column::Cat(v) => {
                    let mut categories: Vec<String> =
                        train.iter().filter_map(|&i| v[i].clone()).collect();
                    categories.sort();
                    categories.dedup();
                    Feature::OneHot {
                        column: name.clone(),
                        categories,
                    }
                }
            })
        })
        .collect()
}

/// The matrix of rows `rows` of `frame` under `features`; a row with a non-finite number
/// is reported in the second value (and its matrix row is zeros).
pub fn transform(
    features: &[Feature],
    frame: &Frame,
    rows: &[usize],
) -> Result<(Array2<f64>, Vec<usize>), DataError> {
    let width: usize = features.iter().map(Feature::width).sum();
    let mut x = Array2::<f64>::zeros((rows.len(), width));
    let mut bad = Vec::new();
    let mut offset = 0;
    for feature in features {
        let column = frame.column(feature.column()).ok_or_else(|| {
            DataError::invalid(
                "input",
                format!(
                    "has no column {:?}, a feature of the model",
                    feature.column()
                ),
            )
        })?;
        match (feature, column) {
            (Feature::Standardized { mean, std, .. }, Column::Num(v)) => {
                for (r, &i) in rows.iter().enumerate() {
                    match v[i] {
                        Some(value) if !value.is_finite() => bad.push(r),
                        Some(value) => x[[r, offset]] = (value - mean) / std,
                        None => {}
                    }
                }
            }
            (Feature::OneHot { categories, .. }, Column::Cat(v)) => {
                for (r, &i) in rows.iter().enumerate() {
                    if let Some(c) = v[i].as_ref().and_then(|s| categories.binary_search(s).ok()) {
                        x[[r, offset + c]] = 1.0;
                    }
                }
            }
            _ => {
                return Err(DataError::invalid(
                    "input",
                    format!(
                        "column {:?} is not of the type the model was trained on",
                        feature.column()
                    ),
                ))
            }
        }
        offset += feature.width();
    }
    bad.sort_unstable();
    bad.dedup();
    for &r in &bad {
        x.row_mut(r).fill(0.0);
    }
    Ok((x, bad))
}

/// SplitMix64: the split's hash (written out so other tools can reproduce the split).
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Rows `0..n` split into (train, test), each ascending: the rows sorted by
/// `splitmix64(seed ^ splitmix64(row))`, the first `ceil(n × test_fraction)` are the test
/// split (none at 0).
pub fn split(n: usize, test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (splitmix64(seed ^ splitmix64(i as u64)), i));
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let n_test = ((n as f64) * test_fraction).ceil() as usize;
    let mut test = order[..n_test.min(n)].to_vec();
    let mut train = order[n_test.min(n)..].to_vec();
    test.sort_unstable();
    train.sort_unstable();
    (train, test)
}

/// Rows `0..n` in `k` folds, each ascending: the rows in the split's order
/// ([`split`]'s hash), row at position `p` of that order in fold `p % k`.
pub fn folds(n: usize, k: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (splitmix64(seed ^ splitmix64(i as u64)), i));
    let mut folds = vec![Vec::new(); k.max(1)];
    for (p, &row) in order.iter().enumerate() {
        folds[p % k.max(1)].push(row);
    }
    for fold in &mut folds {
        fold.sort_unstable();
    }
    folds
}

/// The logistic function.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// `x · w + b` per row.
pub fn linear(x: &Array2<f64>, w: &Array1<f64>, b: f64) -> Array1<f64> {
    x.dot(w) + b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_deterministic_disjoint_and_sized() {
        let (train, test) = split(1000, 0.2, 42);
        assert_eq!(test.len(), 200);
        assert_eq!(train.len(), 800);
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(split(1000, 0.2, 42), (train, test.clone()));
        assert_ne!(split(1000, 0.2, 43).1, test);
        // Fixed values, so other tools can check their reimplementation of the split.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(&split(10, 0.3, 7).1, &[2, 6, 7][..]);
        // Nothing held out: every row trains.
        assert_eq!(split(10, 0.0, 7), ((0..10).collect(), vec![]));
        let folds = folds(1000, 5, 42);
        assert!(folds.iter().all(|f| f.len() == 200));
        let mut all: Vec<usize> = folds.concat();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn features_standardise_and_one_hot_on_the_training_rows_only() {
        let frame = Frame {
            names: vec!["x".into(), "c".into()],
            columns: vec![
                Column::Num(vec![Some(1.0), Some(3.0), None, Some(100.0)]),
                Column::Cat(vec![
                    Some("b".into()),
                    Some("a".into()),
                    None,
                    Some("z".into()),
                ]),
            ],
        };
        let features = fit_features(&frame, &["x".into(), "c".into()], &[0, 1, 2]);
        assert_eq!(
            features[0],
            Feature::Standardized {
                column: "x".into(),
                mean: 2.0,
                std: 1.0
            }
        );
        let (x, bad) = transform(&features, &frame, &[0, 1, 2, 3]).expect("transform");
        assert!(bad.is_empty());
        assert_eq!(x.row(0).to_vec(), vec![-1.0, 0.0, 1.0]);
        assert_eq!(x.row(1).to_vec(), vec![1.0, 1.0, 0.0]);
        // Missing number → the mean; missing and unseen categories → all zeros.
        assert_eq!(x.row(2).to_vec(), vec![0.0, 0.0, 0.0]);
        assert_eq!(x.row(3).to_vec(), vec![98.0, 0.0, 0.0]);
    }
}
