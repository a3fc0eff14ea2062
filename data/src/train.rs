//! `train`: a linear model on a dataset version, into the model registry.
//!
//! The dataset version is split (see [`model::split`]), the preprocessing fitted on the
//! training split ([`crate::model`]), the model fitted on it and measured on the test
//! split and on the training split ([`crate::metrics`]); with `test_fraction` 0 every row
//! trains and there are no held-out metrics, which the manifest says. Models, as
//! scikit-learn's estimators of the same name define them:
//!
//! - `logistic_regression` (classification, two classes): L2-penalised log loss,
//!   `sum(log loss) + ||w||² / (2C)`, intercept not penalised, `c` default 1.0, solved by
//!   L-BFGS (`linfa-logistic`) to a gradient norm of 1e-4 × n (scikit-learn's `tol` on
//!   its mean loss) or `max_iterations` (1000);
//! - `linear_regression`: ordinary least squares with an intercept (`linfa-linear`);
//! - `ridge`: `||y - Xw - b||² + alpha ||w||²`, `alpha` default 1.0, intercept not
//!   penalised, solved exactly (Cholesky, `linfa-linalg`).
//!
//! The model is published as the next version of `models/{name}` (see
//! [`crate::catalog`]) after its lock token passed the store's fence.

use std::collections::BTreeMap;

use linfa::prelude::*;
use linfa_linalg::cholesky::SolveC;
use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::catalog::{self, Kind, Published};
use crate::error::{joined, DataError};
use crate::ingest::{now_ms, DatasetManifest};
use crate::metrics::{self, Metrics};
use crate::model::{self, Feature, Frame};
use crate::schema::ColumnType;
use crate::Env;
use jobfleet_worker::{JobContext, JobError};

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
    fn task(self) -> Task {
        match self {
            Self::LogisticRegression => Task::Classification,
            Self::LinearRegression | Self::Ridge => Task::Regression,
        }
    }
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

impl TrainSpec {
    /// The payload, checked as far as it can be without reading storage: the handler's
    /// first step, and `jobfleet run`'s check before it runs anything.
    pub(crate) fn parse(payload: &[u8]) -> Result<Self, JobError> {
        let spec: Self = serde_json::from_slice(payload)?;
        spec.check()?;
        spec.dataset()?;
        Ok(spec)
    }

    fn dataset(&self) -> Result<(String, Option<u64>), DataError> {
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

/// The `train` kind.
pub(crate) async fn run(ctx: JobContext, env: &Env) -> Result<(), JobError> {
    let spec = TrainSpec::parse(&ctx.job().payload)?;
    let (dataset, version) = spec.dataset()?;
    let storage = &env.storage;
    let job_id = ctx.job().id.to_string();
    let lock = Kind::Model.lock_key(&spec.model);
    let fence = crate::lock_token(&ctx, &lock)?;
    if let Some((_, done)) =
        catalog::published_by::<ModelManifest>(storage, Kind::Model, &spec.model, &job_id).await?
    {
        return ctx.set_result(result(&done));
    }
    let field = if spec.version.is_some() {
        "version"
    } else {
        "dataset"
    };
    let (dataset_version, data): (u64, DatasetManifest) =
        catalog::load(storage, Kind::Dataset, field, &dataset, version).await?;
    let mut copies = Vec::with_capacity(data.files.len());
    for file in &data.files {
        copies.push(storage.local_copy_of(&file.key).await?);
    }
    // The fit runs off the executor. A cancel settles the job at once; the fit's thread
    // stops at its next check (see `fit`) and its model is dropped.
    let cancel = ctx.cancelled().clone();
    let (spec_c, data_c, cancel_c) = (spec.clone(), data.clone(), cancel.clone());
    let fitting = tokio::task::spawn_blocking(move || {
        let paths: Vec<std::path::PathBuf> =
            copies.iter().map(|c| c.path().to_path_buf()).collect();
        fit(&spec_c, &data_c, &paths, &cancel_c)
    });
    let fitted = tokio::select! {
        joined_fit = fitting => joined(joined_fit)?,
        () = cancel.cancelled() => return Err(DataError::Cancelled.into()),
    };
    if cancel.is_cancelled() {
        return Err(DataError::Cancelled.into());
    }
    let version = catalog::next_version(storage, Kind::Model, &spec.model).await?;
    // An earlier attempt of this job, stalled past its lock, may have published while
    // this one trained: then that version is this job's.
    if let Some((_, done)) =
        catalog::published_by::<ModelManifest>(storage, Kind::Model, &spec.model, &job_id).await?
    {
        return ctx.set_result(result(&done));
    }
    let manifest = ModelManifest {
        model: spec.model.clone(),
        version,
        dataset,
        dataset_version,
        dataset_fingerprint: data.fingerprint.clone(),
        job_id: job_id.clone(),
        fence,
        created_at_ms: now_ms(),
        ..fitted
    };
    crate::fence(&ctx, &lock, version).await?;
    catalog::publish(
        storage,
        Kind::Model,
        &spec.model,
        version,
        &job_id,
        &manifest,
    )
    .await?;
    tracing::info!(model = %spec.model, version, metrics = %manifest.metrics, "model published");
    ctx.set_result(result(&manifest))
}

fn result(m: &ModelManifest) -> serde_json::Value {
    serde_json::json!({
        "model": m.model,
        "version": m.version,
        "algorithm": m.algorithm,
        "metrics": m.metrics,
        "training_metrics": m.training_metrics,
        "metrics_unavailable": m.metrics_unavailable,
        "cross_validation": m.cross_validation,
        "dataset": m.dataset,
        "dataset_version": m.dataset_version,
        "rows_train": m.rows_train,
        "rows_test": m.rows_test,
    })
}

/// Fits the model on the dataset's files; the manifest's registry fields are left empty.
///
/// `cancel` is checked between batches of the read and before each fit (the held-out
/// fit, then each fold's): a solver's own iterations take no hook, so a cancelled fit
/// ends when its current model fit does.
pub fn fit(
    spec: &TrainSpec,
    data: &DatasetManifest,
    paths: &[std::path::PathBuf],
    cancel: &CancellationToken,
) -> Result<ModelManifest, DataError> {
    let schema = &data.schema;
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
    let mut names = features.clone();
    names.push(spec.target.clone());
    let frame = model::read_files(paths, schema, &names, cancel)?;
    let target = frame
        .column(&spec.target)
        .ok_or_else(|| DataError::invalid("target", "missing"))?;
    // Rows without a target cannot teach anything.
    let labelled: Vec<usize> = (0..frame.rows())
        .filter(|&i| target.label(i, target_kind).is_some())
        .collect();
    let (train_at, test_at) = model::split(labelled.len(), spec.test_fraction, spec.seed);
    let train: Vec<usize> = train_at.iter().map(|&i| labelled[i]).collect();
    let test: Vec<usize> = test_at.iter().map(|&i| labelled[i]).collect();
    // A test split is empty only when asked for (`test_fraction` 0): then every row trains.
    if train.len() < 2 {
        return Err(DataError::Rejected(format!(
            "{} labelled rows leave {} to train on after the test split's {}: a fit needs 2",
            labelled.len(),
            train.len(),
            test.len()
        )));
    }
    let mut params = defaults(spec.algorithm);
    params.extend(spec.params.clone());
    let data = Labelled {
        frame: &frame,
        target,
        kind: target_kind,
        features: &features,
        name: &spec.target,
    };
    let stop = || {
        if cancel.is_cancelled() {
            Err(DataError::Cancelled)
        } else {
            Ok(())
        }
    };
    stop()?;
    let fitted = fit_split(spec.algorithm, &params, &data, &train, &test)?;
    let mut unavailable = BTreeMap::new();
    let metrics = if test.is_empty() {
        unavailable.insert("metrics".to_owned(), NOTHING_HELD_OUT.to_owned());
        serde_json::Value::Null
    } else {
        note_unavailable(&mut unavailable, "metrics", &fitted.test);
        fitted.test.to_json()
    };
    note_unavailable(&mut unavailable, "training_metrics", &fitted.training);
    let cross_validation = match spec.folds {
        None => None,
        Some(k) => {
            let mut per_fold = Vec::with_capacity(k);
            for test_at in model::folds(labelled.len(), k, spec.seed) {
                let held: Vec<usize> = test_at.iter().map(|&i| labelled[i]).collect();
                let rest: Vec<usize> = labelled
                    .iter()
                    .copied()
                    .filter(|i| held.binary_search(i).is_err())
                    .collect();
                stop()?;
                per_fold.push(fit_split(spec.algorithm, &params, &data, &rest, &held)?.test);
            }
            Some(cross_validation(k, &per_fold, &mut unavailable))
        }
    };
    let Fitted {
        classes,
        features: encoded,
        coefficients,
        intercept,
        training,
        ..
    } = fitted;
    Ok(ModelManifest {
        model: spec.model.clone(),
        version: 0,
        algorithm: spec.algorithm,
        task: spec.algorithm.task(),
        target: spec.target.clone(),
        classes,
        features: encoded,
        coefficients: coefficients.to_vec(),
        intercept,
        params,
        metrics,
        training_metrics: training.to_json(),
        metrics_unavailable: unavailable,
        cross_validation,
        dataset: String::new(),
        dataset_version: 0,
        dataset_fingerprint: String::new(),
        rows_train: train.len(),
        rows_test: test.len(),
        test_fraction: spec.test_fraction,
        seed: spec.seed,
        job_id: String::new(),
        fence: 0,
        created_at_ms: 0,
    })
}

/// Why a model trained with `test_fraction` 0 has no `metrics`.
const NOTHING_HELD_OUT: &str = "test_fraction is 0: every labelled row was trained on and none \
     held out, so there are no held-out metrics; training_metrics are measured on the rows the \
     model was fitted on, which flatters it";

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

/// The rows a model learns from: the frame, its target and features.
struct Labelled<'a> {
    frame: &'a Frame,
    target: &'a model::Column,
    kind: ColumnType,
    features: &'a [String],
    name: &'a str,
}

/// One fit: preprocessing and model on `train`, measured on `test` and on `train`.
struct Fitted {
    classes: Option<Vec<String>>,
    features: Vec<Feature>,
    coefficients: Array1<f64>,
    intercept: f64,
    test: Metrics,
    training: Metrics,
}

/// The hyper-parameters an algorithm uses when the payload leaves them out.
fn defaults(algorithm: Algorithm) -> BTreeMap<String, f64> {
    let pairs: &[(&str, f64)] = match algorithm {
        Algorithm::LogisticRegression => &[("c", 1.0), ("max_iterations", 1000.0)],
        Algorithm::LinearRegression => &[],
        Algorithm::Ridge => &[("alpha", 1.0)],
    };
    pairs.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
}

fn fit_split(
    algorithm: Algorithm,
    params: &BTreeMap<String, f64>,
    data: &Labelled<'_>,
    train: &[usize],
    test: &[usize],
) -> Result<Fitted, DataError> {
    let param = |k: &str| params.get(k).copied().unwrap_or(1.0);
    let encoded = model::fit_features(data.frame, data.features, train);
    let (x_train, _) = model::transform(&encoded, data.frame, train)?;
    let (x_test, _) = model::transform(&encoded, data.frame, test)?;
    let (target, kind) = (data.target, data.kind);
    if algorithm == Algorithm::LogisticRegression {
        let classes = classes(data.frame, data.name, kind, train)?;
        let y = |rows: &[usize]| -> Vec<bool> {
            rows.iter()
                .map(|&i| target.label(i, kind).as_deref() == Some(&classes[1]))
                .collect()
        };
        let (w, b) = logistic(&x_train, &y(train), param("c"), param("max_iterations"))?;
        let measure = |x: &Array2<f64>, rows: &[usize]| -> Result<Metrics, DataError> {
            let p: Vec<f64> = model::linear(x, &w, b)
                .iter()
                .map(|&z| model::sigmoid(z))
                .collect();
            Ok(metrics::classification(&y(rows), &p))
        };
        return Ok(Fitted {
            test: measure(&x_test, test)?,
            training: measure(&x_train, train)?,
            classes: Some(classes),
            features: encoded,
            coefficients: w,
            intercept: b,
        });
    }
    let numbers = |rows: &[usize]| -> Result<Vec<f64>, DataError> {
        rows.iter()
            .map(|&i| match target {
                model::Column::Num(v) => {
                    v[i].ok_or_else(|| DataError::Corrupt("an unlabelled row was kept".into()))
                }
                model::Column::Cat(_) => Err(DataError::invalid(
                    "target",
                    "regression needs a numeric target",
                )),
            })
            .collect()
    };
    let y_train = numbers(train)?;
    let (w, b) = if algorithm == Algorithm::Ridge {
        ridge(&x_train, &y_train, param("alpha"))?
    } else {
        least_squares(&x_train, &y_train)?
    };
    let measure = |x: &Array2<f64>, rows: &[usize]| -> Result<Metrics, DataError> {
        let p = model::linear(x, &w, b).to_vec();
        Ok(metrics::regression(&numbers(rows)?, &p))
    };
    Ok(Fitted {
        test: measure(&x_test, test)?,
        training: measure(&x_train, train)?,
        classes: None,
        features: encoded,
        coefficients: w,
        intercept: b,
    })
}

/// The two classes of the target in the training rows, sorted.
fn classes(
    frame: &Frame,
    target: &str,
    kind: ColumnType,
    train: &[usize],
) -> Result<Vec<String>, DataError> {
    let column = frame
        .column(target)
        .ok_or_else(|| DataError::invalid("target", "missing"))?;
    let mut classes: Vec<String> = train
        .iter()
        .filter_map(|&i| column.label(i, kind))
        .collect();
    classes.sort();
    classes.dedup();
    if classes.len() != 2 {
        return Err(DataError::Rejected(format!(
            "logistic_regression needs exactly two classes in the target; the training \
             rows have {}: {:?}",
            classes.len(),
            classes.iter().take(5).collect::<Vec<_>>()
        )));
    }
    Ok(classes)
}

fn logistic(
    x: &Array2<f64>,
    y: &[bool],
    c: f64,
    iterations: f64,
) -> Result<(Array1<f64>, f64), DataError> {
    let targets = Array1::from(y.to_vec());
    let data = Dataset::new(x.clone(), targets);
    let fitted = linfa_logistic::LogisticRegression::default()
        .alpha(1.0 / c)
        // scikit-learn stops L-BFGS at a gradient of `tol` = 1e-4 on the mean loss; this
        // loss is the sum, whose gradient is n times larger.
        .gradient_tolerance(1e-4 * y.len().max(1) as f64)
        .max_iterations(iterations as u64)
        .fit(&data)
        .map_err(|e| DataError::Rejected(format!("logistic regression did not fit: {e}")))?;
    // linfa's positive class is the first one it saw; the registry's is `true`.
    if fitted.labels().pos.class {
        Ok((fitted.params().clone(), fitted.intercept()))
    } else {
        Ok((-fitted.params(), -fitted.intercept()))
    }
}

fn least_squares(x: &Array2<f64>, y: &[f64]) -> Result<(Array1<f64>, f64), DataError> {
    let data = Dataset::new(x.clone(), Array1::from(y.to_vec()));
    let fitted = linfa_linear::LinearRegression::new()
        .fit(&data)
        .map_err(|e| DataError::Rejected(format!("linear regression did not fit: {e}")))?;
    Ok((fitted.params().clone(), fitted.intercept()))
}

/// Ridge in closed form on centred data: `(XcᵀXc + αI) w = Xcᵀyc`, `b = ȳ - x̄·w`.
fn ridge(x: &Array2<f64>, y: &[f64], alpha: f64) -> Result<(Array1<f64>, f64), DataError> {
    let y = Array1::from(y.to_vec());
    let x_mean = x
        .mean_axis(Axis(0))
        .ok_or_else(|| DataError::Rejected("no training rows".into()))?;
    let y_mean = y.mean().unwrap_or(0.0);
    let xc = x - &x_mean;
    let yc = &y - y_mean;
    let mut gram = xc.t().dot(&xc);
    for i in 0..gram.nrows() {
        gram[[i, i]] += alpha;
    }
    let rhs = xc.t().dot(&yc).insert_axis(Axis(1));
    let w = gram
        .solvec(&rhs)
        .map_err(|e| DataError::Rejected(format!("ridge did not solve: {e}")))?
        .column(0)
        .to_owned();
    let b = y_mean - x_mean.dot(&w);
    Ok((w, b))
}
