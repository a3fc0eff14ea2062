//! `train`: a linear model on a dataset version, into the model registry.
//!
//! The dataset version is split (see [`crate::model::split`]), the preprocessing fitted
//! on the training split ([`crate::model`]), the model fitted on it and measured on the
//! test split and on the training split ([`crate::metrics`]); with `test_fraction` 0 every
//! row trains and there are no held-out metrics, which the manifest says. Models, as
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
//!
//! # Layout
//!
//! - this file: the kind's run (load the dataset, fit off the executor, publish).
//! - `spec`: the payload ([`TrainSpec`]).
//! - `fit`: [`fit`], the columns, the split, the held-out fit and the folds.
//! - `estimators`: one fit of an algorithm and its metrics; the solvers.

mod estimators;
mod fit;
mod spec;

use jobfleet_worker::{JobContext, JobError};

use crate::catalog::{self, Kind};
use crate::env::Env;
use crate::error::{joined, DataError};
use crate::fencing;
use crate::manifest::{self, DatasetManifest, ModelManifest};
use crate::storage::Storage;

pub use fit::fit;
pub use spec::TrainSpec;

/// The `train` kind.
pub(crate) async fn run(ctx: JobContext, env: &Env) -> Result<(), JobError> {
    let spec = TrainSpec::parse(&ctx.job().payload)?;
    let (dataset, version) = spec.dataset()?;
    let storage = &env.storage;
    let job_id = ctx.job().id.to_string();
    let lock = Kind::Model.lock_key(&spec.model);
    let fence = fencing::lock_token(&ctx, &lock)?;
    if let Some(done) = already(storage, &spec.model, &job_id).await? {
        return ctx.set_result(result(&done));
    }
    let field = if spec.version.is_some() {
        "version"
    } else {
        "dataset"
    };
    let (dataset_version, data): (u64, DatasetManifest) =
        catalog::load(storage, Kind::Dataset, field, &dataset, version).await?;
    let fitted = fit_off_executor(&ctx, storage, &spec, &data).await?;
    let version = catalog::next_version(storage, Kind::Model, &spec.model).await?;
    // An earlier attempt of this job, stalled past its lock, may have published while
    // this one trained: then that version is this job's.
    if let Some(done) = already(storage, &spec.model, &job_id).await? {
        return ctx.set_result(result(&done));
    }
    let manifest = ModelManifest {
        model: spec.model.clone(),
        version,
        dataset,
        dataset_version,
        dataset_fingerprint: data.fingerprint.clone(),
        job_id,
        fence,
        created_at_ms: manifest::now_ms(),
        ..fitted
    };
    publish(&ctx, storage, &lock, &manifest).await?;
    ctx.set_result(result(&manifest))
}

/// The version an earlier attempt of `job_id` published, if any.
async fn already(
    storage: &Storage,
    model: &str,
    job_id: &str,
) -> Result<Option<ModelManifest>, DataError> {
    let found = catalog::published_by::<ModelManifest>(storage, Kind::Model, model, job_id).await?;
    Ok(found.map(|(_, m)| m))
}

/// [`fit`] on local copies of the dataset's files, on a blocking thread. A cancel settles
/// the job at once; the fit's thread stops at its next check (see [`fit`]) and its model
/// is dropped.
async fn fit_off_executor(
    ctx: &JobContext,
    storage: &Storage,
    spec: &TrainSpec,
    data: &DatasetManifest,
) -> Result<ModelManifest, DataError> {
    let mut copies = Vec::with_capacity(data.files.len());
    for file in &data.files {
        copies.push(storage.local_copy_of(&file.key).await?);
    }
    let cancel = ctx.cancelled().clone();
    let (spec_c, data_c, cancel_c) = (spec.clone(), data.clone(), cancel.clone());
    let fitting = tokio::task::spawn_blocking(move || {
        let paths: Vec<std::path::PathBuf> =
            copies.iter().map(|c| c.path().to_path_buf()).collect();
        fit(&spec_c, &data_c, &paths, &cancel_c)
    });
    let fitted = tokio::select! {
        joined_fit = fitting => joined(joined_fit)?,
        () = cancel.cancelled() => return Err(DataError::Cancelled),
    };
    if cancel.is_cancelled() {
        return Err(DataError::Cancelled);
    }
    Ok(fitted)
}

/// Publishes `manifest` once its lock token passed the store's fence.
async fn publish(
    ctx: &JobContext,
    storage: &Storage,
    lock: &str,
    manifest: &ModelManifest,
) -> Result<(), DataError> {
    fencing::publish(ctx, storage, lock, manifest).await?;
    tracing::info!(
        model = %manifest.model,
        version = manifest.version,
        metrics = %manifest.metrics,
        "model published"
    );
    Ok(())
}

/// The job's result: the version, its metrics, and what it was trained on.
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
