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
//!
//! # Layout
//!
//! The kinds, each a folder, depend only on the modules below them, never on each other:
//!
//! - [`ingest`], [`train`], [`predict`]: the three kinds, each its payload and its run.
//!
//! What they share:
//!
//! - [`manifest`]: what a published dataset or model version says.
//! - [`catalog`]: versions published once; `fencing`: the lock's token and the store's
//!   fence before publishing.
//! - [`schema`]: a dataset's columns, their types and the values each accepts.
//! - [`model`]: columns into a feature matrix, the train/test split, the linear models.
//! - [`metrics`]: classification and regression metrics, each a value or the reason.
//! - [`parquet_out`]: the writer settings of every Parquet file written; `digest`:
//!   SHA-256 of files, hex.
//! - [`storage`]: the object store under `[data] url`; `env`: the storage and `[data]`
//!   the kinds run with.
//! - [`sample`]: `jobfleet sample-data`'s synthetic dataset.
//! - `error`: [`DataError`].

pub mod catalog;
mod digest;
mod env;
mod error;
mod fencing;
pub mod ingest;
pub mod manifest;
pub mod metrics;
pub mod model;
pub mod parquet_out;
pub mod predict;
pub mod sample;
pub mod schema;
pub mod storage;
pub mod train;

use std::sync::Arc;

use async_trait::async_trait;
use jobfleet_common::config::DataConfig;
use jobfleet_common::job::ConflictPolicy;
use jobfleet_common::{Job, LockMode, LockSpec};
use jobfleet_worker::{Handler, JobContext, JobError, Registry};

pub use catalog::Kind;
pub use error::DataError;
pub use storage::Storage;

use env::Env;

/// The kinds this crate adds.
pub const KINDS: [&str; 3] = ["ingest", "train", "predict"];

/// Checks a payload of the data kind `kind` as its handler does before it reads or
/// writes anything (the JSON's fields and types, names, fractions, bounds), so `jobfleet
/// run` can refuse a misspelt field before it starts a fleet; `None` when `kind` is not
/// one of [`KINDS`]. What only storage can tell (a missing file or dataset) is left to
/// the job.
pub fn check_payload(kind: &str, payload: &[u8]) -> Option<Result<(), JobError>> {
    Some(match kind {
        "ingest" => ingest::IngestSpec::parse(payload).map(drop),
        "train" => train::TrainSpec::parse(payload).map(drop),
        "predict" => predict::PredictSpec::parse(payload).map(drop),
        _ => return None,
    })
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
    /// `predict:{output}` (a parallel prediction's child `predict:{output}:shard:{i}`),
    /// each exclusively: one writer of each thing at a time, and a
    /// fencing token for its publication. A payload without the name gets no lock and
    /// fails on its own.
    fn lock(&self, job: &Job) -> Option<LockSpec> {
        let payload: serde_json::Value = serde_json::from_slice(&job.payload).ok()?;
        // A name that is not valid gets no lock: the job fails on it, naming the field.
        let name = |field: &str| {
            let name = payload[field].as_str()?;
            catalog::check_name(field, name).ok().map(|()| name)
        };
        let key = match self.kind {
            DataKind::Ingest => Kind::Dataset.lock_key(name("dataset")?),
            DataKind::Train => Kind::Model.lock_key(name("model")?),
            DataKind::Predict => {
                let output = payload["output"].as_str()?;
                predict::output_key(output).ok()?;
                // A parallel prediction's parent holds the output's lock; each child
                // holds its shard's.
                predict::lock_key(output, payload["shard"]["index"].as_u64())
            }
        };
        Some(LockSpec {
            key,
            mode: LockMode::Exclusive,
            on_conflict: ConflictPolicy::Requeue,
        })
    }
}
