//! What a published version says: a dataset version's manifest (`ingest` writes it,
//! `train` and `predict` read it) and a model version's (`train` writes it, `predict`
//! reads it), with the words they are written in (`Mode`, `Task`, `Algorithm`).
//!
//! These are stored JSON: a field added later takes a default, so a manifest written by
//! an earlier jobfleet still loads (the fixtures under `data/tests/fixtures/manifests/`
//! are such manifests, and the tests below read them back unchanged).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::{Catalogued, Kind, Published};
use crate::digest::hex;
use crate::model::Feature;
use crate::schema::Schema;

/// A published dataset version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetManifest {
    /// The dataset.
    pub dataset: String,
    /// This version.
    pub version: u64,
    /// Its columns.
    pub schema: Schema,
    /// Its Parquet files, in row order.
    pub files: Vec<DataFile>,
    /// Rows in all files.
    pub rows: u64,
    /// Rows this version's ingest rejected.
    pub rejected: u64,
    /// SHA-256 over the files' SHA-256s, in order: equal fingerprints, equal data.
    pub fingerprint: String,
    /// What was ingested.
    pub source: String,
    /// `append` or `replace`.
    pub mode: Mode,
    /// The ingest job.
    pub job_id: String,
    /// Unix ms.
    pub created_at_ms: i64,
    /// The quarantine file's key, if rows were rejected.
    pub quarantine: Option<String>,
}

impl Published for DatasetManifest {
    fn job_id(&self) -> &str {
        &self.job_id
    }
}

impl Catalogued for DatasetManifest {
    const KIND: Kind = Kind::Dataset;
    fn name(&self) -> &str {
        &self.dataset
    }
    fn version(&self) -> u64 {
        self.version
    }
}

/// One Parquet file of a dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    /// Its key under the data URL.
    pub key: String,
    /// Its rows.
    pub rows: u64,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
}

/// Whether a new version adds to the previous one or replaces it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The previous version's rows and the new ones.
    #[default]
    Append,
    /// The new rows only.
    Replace,
}

/// A dataset version's fingerprint: SHA-256 over its files' hashes, in order.
pub(crate) fn fingerprint(files: &[DataFile]) -> String {
    let mut hash = Sha256::new();
    for f in files {
        hash.update(f.sha256.as_bytes());
    }
    hex(&hash.finalize())
}

/// A published model version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelManifest {
    /// The model's name.
    pub model: String,
    /// This version.
    pub version: u64,
    /// The family.
    pub algorithm: Algorithm,
    /// Classification or regression.
    pub task: Task,
    /// The target column.
    pub target: String,
    /// For classification: the two classes, sorted; the second is the positive class.
    pub classes: Option<Vec<String>>,
    /// The preprocessing, in matrix column order.
    pub features: Vec<Feature>,
    /// One weight per matrix column.
    pub coefficients: Vec<f64>,
    /// The intercept.
    pub intercept: f64,
    /// The hyper-parameters used.
    pub params: BTreeMap<String, f64>,
    /// Test-split metrics; `null` when nothing was held out (`test_fraction` 0).
    pub metrics: serde_json::Value,
    /// The same metrics on the training split, which the model was fitted on: optimistic,
    /// so a gap to `metrics` shows overfitting. (`null` in manifests from before they were
    /// kept.)
    #[serde(default)]
    pub training_metrics: serde_json::Value,
    /// Why a metric above is `null`, by its path: `metrics` when nothing was held out,
    /// `metrics.roc_auc` when the test rows are of one class, `training_metrics.r2`,
    /// `cross_validation.mean.recall`, …
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics_unavailable: BTreeMap<String, String>,
    /// With `folds`: each fold's metrics and their means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_validation: Option<serde_json::Value>,
    /// The dataset.
    pub dataset: String,
    /// Its version.
    pub dataset_version: u64,
    /// Its fingerprint.
    pub dataset_fingerprint: String,
    /// Training rows.
    pub rows_train: usize,
    /// Test rows (0 with `test_fraction` 0).
    pub rows_test: usize,
    /// The split.
    pub test_fraction: f64,
    /// The split's seed.
    pub seed: u64,
    /// The training job.
    pub job_id: String,
    /// The fencing token of the `model:{name}` lock the job held.
    pub fence: u64,
    /// Unix ms.
    pub created_at_ms: i64,
}

impl Published for ModelManifest {
    fn job_id(&self) -> &str {
        &self.job_id
    }
}

impl Catalogued for ModelManifest {
    const KIND: Kind = Kind::Model;
    fn name(&self) -> &str {
        &self.model
    }
    fn version(&self) -> u64 {
        self.version
    }
}

/// What a model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// One of two classes, with its probability.
    Classification,
    /// A number.
    Regression,
}

/// The model family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Binary logistic regression, L2-penalised.
    LogisticRegression,
    /// Ordinary least squares.
    LinearRegression,
    /// L2-penalised least squares.
    Ridge,
}

impl Algorithm {
    /// What the family predicts.
    pub(crate) fn task(self) -> Task {
        match self {
            Self::LogisticRegression => Task::Classification,
            Self::LinearRegression | Self::Ridge => Task::Regression,
        }
    }
}

/// Now, in Unix ms: a manifest's `created_at_ms`.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` read as `T` and written back gives the same JSON: no field lost, renamed or
    /// newly required.
    fn reads_back_unchanged<T: Serialize + serde::de::DeserializeOwned>(text: &str) -> T {
        let written: serde_json::Value = serde_json::from_str(text).expect("fixture JSON");
        let read: T = serde_json::from_str(text).expect("a manifest written before loads");
        assert_eq!(serde_json::to_value(&read).expect("JSON"), written);
        read
    }

    #[test]
    fn a_dataset_manifest_written_before_loads_unchanged() {
        let m: DatasetManifest = reads_back_unchanged(include_str!(
            "../tests/fixtures/manifests/dataset-append.json"
        ));
        assert_eq!((m.version, m.mode, m.files.len()), (2, Mode::Append, 2));
        assert_eq!(m.rows, m.files.iter().map(|f| f.rows).sum::<u64>());
        assert_eq!(
            m.fingerprint,
            fingerprint(&m.files),
            "the fingerprint is recomputed"
        );
        assert!(m.quarantine.is_some_and(|q| q.contains("/quarantine/")));
    }

    #[test]
    fn model_manifests_written_before_load_unchanged() {
        let m: ModelManifest = reads_back_unchanged(include_str!(
            "../tests/fixtures/manifests/model-logistic-folds.json"
        ));
        assert_eq!(m.algorithm.task(), m.task);
        assert_eq!(m.task, Task::Classification);
        assert!(m.cross_validation.is_some());
        let m: ModelManifest = reads_back_unchanged(include_str!(
            "../tests/fixtures/manifests/model-nothing-held-out.json"
        ));
        assert_eq!((m.algorithm, m.rows_test), (Algorithm::LinearRegression, 0));
        assert_eq!(m.metrics, serde_json::Value::Null);
        assert!(m.metrics_unavailable.contains_key("metrics"));
    }
}
