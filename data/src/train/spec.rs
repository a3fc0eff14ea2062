//! The `train` payload: the model's name, the dataset version, the target and features,
//! the algorithm and its hyper-parameters, the split; checked as far as it can be without
//! reading storage.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::catalog;
use crate::error::DataError;
use crate::manifest::{Algorithm, Task};
use jobfleet_worker::JobError;

/// The `train` payload.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// The model's name in the registry.
    pub model: String,
    /// The dataset; from `previous.dataset` in a pipeline when absent.
    #[serde(default)]
    pub dataset: Option<String>,
    /// Its version; latest when absent (or `previous.version` in a pipeline).
    #[serde(default)]
    pub version: Option<u64>,
    /// The column to predict.
    pub target: String,
    /// Feature columns; every other column (less `exclude`) when absent.
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// Columns that are never features (ids, dates).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `classification` or `regression`; from the algorithm when absent.
    #[serde(default)]
    pub task: Option<Task>,
    /// `logistic_regression`, `linear_regression` or `ridge`.
    pub algorithm: Algorithm,
    /// Hyper-parameters: `c` and `max_iterations` (logistic), `alpha` (ridge).
    #[serde(default)]
    pub params: BTreeMap<String, f64>,
    /// Fraction of rows held out for the metrics, default 0.2; 0 trains on every row and
    /// leaves no held-out metrics, only the training split's.
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    /// The split's seed, default 42.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// k-fold cross-validation (2–20 folds) on every labelled row, reported beside the
    /// test-split metrics; the published model is still the training split's.
    #[serde(default)]
    pub folds: Option<usize>,
    /// Set by pipelines: the ingest step's result.
    #[serde(default)]
    pub previous: Option<serde_json::Value>,
}

fn default_test_fraction() -> f64 {
    0.2
}

fn default_seed() -> u64 {
    42
}

impl TrainSpec {
    /// The payload, checked as far as it can be without reading storage: the handler's
    /// first step, and `jobfleet run`'s check before it runs anything.
    pub(crate) fn parse(payload: &[u8]) -> Result<Self, JobError> {
        let spec: Self = serde_json::from_slice(payload)?;
        spec.check()?;
        spec.dataset()?;
        Ok(spec)
    }

    /// The dataset's name and version: the payload's, else the previous pipeline step's.
    pub(super) fn dataset(&self) -> Result<(String, Option<u64>), DataError> {
        let previous = self.previous.as_ref();
        let name = match &self.dataset {
            Some(d) => d.clone(),
            None => previous
                .and_then(|p| p["dataset"].as_str())
                .map(str::to_string)
                .ok_or_else(|| {
                    DataError::invalid("dataset", "missing (and no previous step named one)")
                })?,
        };
        let version = self.version.or_else(|| {
            previous
                .filter(|p| p["dataset"].as_str() == Some(name.as_str()))
                .and_then(|p| p["version"].as_u64())
        });
        catalog::check_name("dataset", &name)?;
        Ok((name, version))
    }

    /// The fields that need no storage to check: names, fractions, folds, parameters.
    fn check(&self) -> Result<(), DataError> {
        catalog::check_name("model", &self.model)?;
        if !(0.0..1.0).contains(&self.test_fraction) {
            return Err(DataError::invalid(
                "test_fraction",
                "must be at least 0 (train on every row) and below 1",
            ));
        }
        if let Some(task) = self.task {
            if task != self.algorithm.task() {
                return Err(DataError::invalid(
                    "task",
                    format!("{task:?} does not go with {:?}", self.algorithm),
                ));
            }
        }
        if self.folds.is_some_and(|k| !(2..=20).contains(&k)) {
            return Err(DataError::invalid("folds", "must be 2 to 20"));
        }
        let allowed: &[&str] = match self.algorithm {
            Algorithm::LogisticRegression => &["c", "max_iterations"],
            Algorithm::LinearRegression => &[],
            Algorithm::Ridge => &["alpha"],
        };
        for (key, value) in &self.params {
            if !allowed.contains(&key.as_str()) {
                return Err(DataError::invalid(
                    format!("params.{key}"),
                    format!("{:?} takes {allowed:?}", self.algorithm),
                ));
            }
            if !value.is_finite() || *value <= 0.0 {
                return Err(DataError::invalid(
                    format!("params.{key}"),
                    "must be a positive number",
                ));
            }
        }
        Ok(())
    }
}
