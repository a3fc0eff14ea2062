//! jobfleet's data kinds, for workers built with them (the `data` feature of the
//! `jobfleet` command; a worker without it compiles none of Arrow, Parquet or linfa):
//!
//! - `ingest` ([`ingest`]): a CSV, JSON Lines or Parquet source, checked row by row
//!   against a schema, into a new immutable version of a dataset (Parquet + manifest),
//!   bad rows quarantined;
//! - `train` ([`train`]): logistic regression, linear regression or ridge on a dataset
//!   version, measured on a held-out split, into a versioned model registry whose writes
//!   are fenced;
//! - `predict` ([`predict`]): a model over a dataset version, a chunk at a time,
//!   checkpointed so a redelivered job resumes and writes the same bytes.
//!
//! Everything lives under `[data] url` ([`storage`]); versions are published once and
//! never changed ([`catalog`]). docs/data-jobs.md has the payloads and the guarantees.
//!
//! ```no_run
//! # fn main() -> Result<(), jobfleet_data::DataError> {
//! let config = jobfleet_common::Config::default();
//! let mut registry = jobfleet_worker::Registry::with_builtins();
//! jobfleet_data::register(&mut registry, &config.data)?;
//! # Ok(()) }
//! ```

pub mod catalog;
mod error;
pub mod ingest;
pub mod model;
pub mod predict;
pub mod sample;
pub mod schema;
pub mod storage;
pub mod train;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use jobfleet_common::config::DataConfig;
use jobfleet_common::job::ConflictPolicy;
use jobfleet_common::{Job, LockMode, LockSpec};
use jobfleet_worker::{Handler, JobContext, JobError, Registry};

pub use catalog::Kind;
pub use error::DataError;
pub use storage::Storage;

/// The kinds this crate adds.
pub const KINDS: [&str; 3] = ["ingest", "train", "predict"];

/// What the data kinds share: the storage and `[data]`.
#[derive(Debug)]
pub(crate) struct Env {
    pub storage: Storage,
    pub config: DataConfig,
}

/// Registers `ingest`, `train` and `predict` on `registry`, with storage at
/// `config.url` (created if missing).
pub fn register(registry: &mut Registry, config: &DataConfig) -> Result<(), DataError> {
    let env = Arc::new(Env {
        storage: Storage::open(&config.url)?,
        config: config.clone(),
    });
    for kind in [DataKind::Ingest, DataKind::Train, DataKind::Predict] {
        registry.register(
            kind.name(),
            DataHandler {
                env: env.clone(),
                kind,
            },
        );
    }
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum DataKind {
    Ingest,
    Train,
    Predict,
}

impl DataKind {
    fn name(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Train => "train",
            Self::Predict => "predict",
        }
    }
}

struct DataHandler {
    env: Arc<Env>,
    kind: DataKind,
}

#[async_trait]
impl Handler for DataHandler {
    async fn run(&self, ctx: JobContext) -> Result<(), JobError> {
        match self.kind {
            DataKind::Ingest => ingest::run(ctx, &self.env).await,
            DataKind::Train => train::run(ctx, &self.env).await,
            DataKind::Predict => predict::run(ctx, &self.env).await,
        }
    }

    /// `ingest` holds `dataset:{name}`, `train` holds `model:{name}`, `predict` holds
    /// `predict:{output}`, each exclusively: one writer of each thing at a time, and a
    /// fencing token for its publication. A payload without the name gets no lock and
    /// fails on its own.
    fn lock(&self, job: &Job) -> Option<LockSpec> {
        let payload: serde_json::Value = serde_json::from_slice(&job.payload).ok()?;
        let key = match self.kind {
            DataKind::Ingest => Kind::Dataset.lock_key(payload["dataset"].as_str()?),
            DataKind::Train => Kind::Model.lock_key(payload["model"].as_str()?),
            DataKind::Predict => format!("predict:{}", payload["output"].as_str()?),
        };
        Some(LockSpec {
            key,
            mode: LockMode::Exclusive,
            on_conflict: ConflictPolicy::Requeue,
        })
    }
}

/// The fencing token of the job's lock on `name`; a job holding another lock (its
/// producer set one) is refused, since its token says nothing about `name`.
pub(crate) fn lock_token(ctx: &JobContext, kind: Kind, name: &str) -> Result<u64, DataError> {
    let key = kind.lock_key(name);
    match (ctx.job().lock.as_ref(), ctx.fence()) {
        (Some(lock), Some(token)) if lock.key == key && lock.mode == LockMode::Exclusive => {
            Ok(token)
        }
        _ => Err(DataError::invalid(
            "lock",
            format!("this kind publishes under the exclusive lock {key:?}; leave the job's lock unset and the worker takes it"),
        )),
    }
}

/// Passes the store's fence for `name` with the job's lock token, recording `version`:
/// [`DataError::Stale`] if a holder with a newer token passed it first.
pub(crate) async fn fence(
    ctx: &JobContext,
    kind: Kind,
    name: &str,
    version: u64,
) -> Result<(), DataError> {
    lock_token(ctx, kind, name)?;
    let resource = format!("data:{}", kind.lock_key(name));
    match ctx
        .fenced_write(&resource, Bytes::from(version.to_string()))
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(DataError::Stale(format!(
            "a newer holder of {:?} published first; this attempt lost its lock",
            kind.lock_key(name)
        ))),
        Err(e) => Err(DataError::Io(e.to_string())),
    }
}

/// Checks a key under the data URL that a payload names.
pub(crate) fn storage_key(field: &str, key: &str) -> Result<(), DataError> {
    let ok = !key.is_empty()
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..");
    if ok {
        Ok(())
    } else {
        Err(DataError::invalid(
            field,
            format!(
                "{key:?}: a relative key like predictions/games.parquet, without . or .. parts"
            ),
        ))
    }
}
