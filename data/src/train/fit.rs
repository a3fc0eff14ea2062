//! A model fitted on a dataset version's files, off the executor: the columns chosen,
//! the labelled rows split, the held-out fit and, with `folds`, the cross-validation,
//! each metric that cannot be given recorded with its reason.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use super::estimators::{defaults, fit_split, Fitted, Labelled};
use super::spec::TrainSpec;
use crate::error::DataError;
use crate::manifest::{DatasetManifest, ModelManifest};
use crate::metrics::Metrics;
use crate::model::{self, Column};
use crate::schema::{ColumnType, Schema};

/// Why a model trained with `test_fraction` 0 has no `metrics`.
const NOTHING_HELD_OUT: &str = "test_fraction is 0: every labelled row was trained on and none \
     held out, so there are no held-out metrics; training_metrics are measured on the rows the \
     model was fitted on, which flatters it";

/// Fits the model on the dataset's files; the manifest's registry fields are left empty.
///
/// `cancel` is checked between batches of the read and before each fit (the held-out
/// fit, then each fold's): a solver's own iterations take no hook, so a cancelled fit
/// ends when its current model fit does.
pub fn fit(
    spec: &TrainSpec,
    data: &DatasetManifest,
    paths: &[PathBuf],
    cancel: &CancellationToken,
) -> Result<ModelManifest, DataError> {
    let (target_kind, features) = columns(spec, &data.schema)?;
    let mut names = features.clone();
    names.push(spec.target.clone());
    let frame = model::read_files(paths, &data.schema, &names, cancel)?;
    let target = frame
        .column(&spec.target)
        .ok_or_else(|| DataError::invalid("target", "missing"))?;
    let rows = Rows::split(target, target_kind, frame.rows(), spec)?;
    let mut params = defaults(spec.algorithm);
    params.extend(spec.params.clone());
    let data = Labelled {
        frame: &frame,
        target,
        kind: target_kind,
        features: &features,
        name: &spec.target,
    };
    stop(cancel)?;
    let fitted = fit_split(spec.algorithm, &params, &data, &rows.train, &rows.test)?;
    let mut unavailable = BTreeMap::new();
    let metrics = held_out_metrics(&fitted, rows.test.is_empty(), &mut unavailable);
    note_unavailable(&mut unavailable, "training_metrics", &fitted.training);
    let cross_validation = match spec.folds {
        None => None,
        Some(k) => {
            let per_fold = fit_folds(spec, &params, &data, &rows.labelled, k, cancel)?;
            Some(cross_validation(k, &per_fold, &mut unavailable))
        }
    };
    let report = Report {
        metrics,
        unavailable,
        cross_validation,
    };
    Ok(manifest(spec, params, fitted, report, &rows))
}

/// The target's type and the feature columns: the payload's, else every column but the
/// target and `exclude`.
fn columns(spec: &TrainSpec, schema: &Schema) -> Result<(ColumnType, Vec<String>), DataError> {
    let target_kind = schema
        .columns
        .iter()
        .find(|c| c.name == spec.target)
        .map(|c| c.kind)
        .ok_or_else(|| {
            DataError::invalid("target", format!("{:?} is not a column", spec.target))
        })?;
    let features: Vec<String> = match &spec.features {
        Some(f) => f.clone(),
        None => schema
            .columns
            .iter()
            .map(|c| c.name.clone())
            .filter(|n| *n != spec.target && !spec.exclude.contains(n))
            .collect(),
    };
    if features.is_empty() || features.contains(&spec.target) {
        return Err(DataError::invalid(
            "features",
            "name at least one column, not the target",
        ));
    }
    Ok((target_kind, features))
}

/// The rows with a target, and their train/test split (frame rows, ascending).
struct Rows {
    labelled: Vec<usize>,
    train: Vec<usize>,
    test: Vec<usize>,
}

impl Rows {
    /// Splits the labelled rows of `rows` by `spec`'s fraction and seed; fewer than two
    /// training rows is too few to fit.
    fn split(
        target: &Column,
        kind: ColumnType,
        rows: usize,
        spec: &TrainSpec,
    ) -> Result<Self, DataError> {
        // Rows without a target cannot teach anything.
        let labelled: Vec<usize> = (0..rows)
            .filter(|&i| target.label(i, kind).is_some())
            .collect();
        let (train_at, test_at) = model::split(labelled.len(), spec.test_fraction, spec.seed);
        let train: Vec<usize> = train_at.iter().map(|&i| labelled[i]).collect();
        let test: Vec<usize> = test_at.iter().map(|&i| labelled[i]).collect();
        // A test split is empty only when asked for (`test_fraction` 0): then every row
        // trains.
        if train.len() < 2 {
            return Err(DataError::Rejected(format!(
                "{} labelled rows leave {} to train on after the test split's {}: a fit needs 2",
                labelled.len(),
                train.len(),
                test.len()
            )));
        }
        Ok(Self {
            labelled,
            train,
            test,
        })
    }
}

/// [`DataError::Cancelled`] once `cancel` fired.
fn stop(cancel: &CancellationToken) -> Result<(), DataError> {
    if cancel.is_cancelled() {
        Err(DataError::Cancelled)
    } else {
        Ok(())
    }
}

/// The test split's metrics, `null` (with the reason) when nothing was held out.
fn held_out_metrics(
    fitted: &Fitted,
    nothing_held_out: bool,
    unavailable: &mut BTreeMap<String, String>,
) -> serde_json::Value {
    if nothing_held_out {
        unavailable.insert("metrics".to_owned(), NOTHING_HELD_OUT.to_owned());
        serde_json::Value::Null
    } else {
        note_unavailable(unavailable, "metrics", &fitted.test);
        fitted.test.to_json()
    }
}

/// Each of `k` folds of the labelled rows held out in turn: the metrics of a fit on the
/// others.
fn fit_folds(
    spec: &TrainSpec,
    params: &BTreeMap<String, f64>,
    data: &Labelled<'_>,
    labelled: &[usize],
    k: usize,
    cancel: &CancellationToken,
) -> Result<Vec<Metrics>, DataError> {
    let mut per_fold = Vec::with_capacity(k);
    for test_at in model::folds(labelled.len(), k, spec.seed) {
        let held: Vec<usize> = test_at.iter().map(|&i| labelled[i]).collect();
        let rest: Vec<usize> = labelled
            .iter()
            .copied()
            .filter(|i| held.binary_search(i).is_err())
            .collect();
        stop(cancel)?;
        per_fold.push(fit_split(spec.algorithm, params, data, &rest, &held)?.test);
    }
    Ok(per_fold)
}

/// Records why each metric of `metrics` that has no value has none, under `path`.
fn note_unavailable(unavailable: &mut BTreeMap<String, String>, path: &str, metrics: &Metrics) {
    for (name, why) in &metrics.unavailable {
        unavailable.insert(format!("{path}.{name}"), why.clone());
    }
}

/// The cross-validation's report: each fold's metrics and their means, with the reasons
/// for the ones missing recorded in `unavailable`.
fn cross_validation(
    k: usize,
    per_fold: &[Metrics],
    unavailable: &mut BTreeMap<String, String>,
) -> serde_json::Value {
    for (i, fold) in per_fold.iter().enumerate() {
        note_unavailable(
            unavailable,
            &format!("cross_validation.per_fold[{i}]"),
            fold,
        );
    }
    let mean = Metrics::mean(per_fold);
    note_unavailable(unavailable, "cross_validation.mean", &mean);
    serde_json::json!({
        "folds": k,
        "mean": mean.to_json(),
        "per_fold": per_fold.iter().map(Metrics::to_json).collect::<Vec<_>>(),
    })
}

/// What the fit measured, as the manifest records it.
struct Report {
    metrics: serde_json::Value,
    unavailable: BTreeMap<String, String>,
    cross_validation: Option<serde_json::Value>,
}

/// The fitted model's manifest, its registry fields (version, dataset, job, fence, time)
/// left empty for the kind to fill.
fn manifest(
    spec: &TrainSpec,
    params: BTreeMap<String, f64>,
    fitted: Fitted,
    report: Report,
    rows: &Rows,
) -> ModelManifest {
    ModelManifest {
        model: spec.model.clone(),
        version: 0,
        algorithm: spec.algorithm,
        task: spec.algorithm.task(),
        target: spec.target.clone(),
        classes: fitted.classes,
        features: fitted.features,
        coefficients: fitted.coefficients.to_vec(),
        intercept: fitted.intercept,
        params,
        metrics: report.metrics,
        training_metrics: fitted.training.to_json(),
        metrics_unavailable: report.unavailable,
        cross_validation: report.cross_validation,
        dataset: String::new(),
        dataset_version: 0,
        dataset_fingerprint: String::new(),
        rows_train: rows.train.len(),
        rows_test: rows.test.len(),
        test_fraction: spec.test_fraction,
        seed: spec.seed,
        job_id: String::new(),
        fence: 0,
        created_at_ms: 0,
    }
}
