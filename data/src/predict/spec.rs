//! The `predict` payload: the model, the input (a dataset version or a Parquet file),
//! the output's key, the id column, the chunk size and the fan-out; checked as far as it
//! can be without reading storage. Also the lock a prediction holds, named from it.

use serde::{Deserialize, Serialize};

use crate::catalog;
use crate::error::DataError;
use jobfleet_worker::JobError;

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
    /// Workers to spread the chunks over (1–64, default 1): this job enqueues
    /// `parallelism - 1` children for the other shards, predicts its own, then every
    /// chunk still missing, and merges.
    #[serde(default)]
    pub parallelism: Option<usize>,
    /// Set on the children of a parallel prediction.
    #[serde(default)]
    pub shard: Option<Shard>,
    /// Set by pipelines: the train step's result.
    #[serde(default)]
    pub previous: Option<serde_json::Value>,
}

/// `max_error_fraction` when the payload leaves it out.
fn default_error_fraction() -> f64 {
    0.01
}

/// One of `count` shards of a parallel prediction: the chunks `i` with
/// `i % count == index`. Set by the parent on the children it enqueues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    /// This shard, from 0.
    pub index: usize,
    /// How many.
    pub count: usize,
}

/// What a parent prediction resolved of its payload before it started: its children
/// are given it all, so the model or dataset's latest version moving meanwhile cannot
/// split the run, and its result reports it.
#[derive(Clone, Debug)]
pub(super) struct Resolved {
    /// The model's name.
    pub(super) model: String,
    /// Its version.
    pub(super) model_version: u64,
    /// The input dataset's version (none for a file).
    pub(super) input_version: Option<u64>,
    /// Rows per chunk.
    pub(super) chunk_rows: usize,
    /// Workers the chunks are spread over.
    pub(super) parallelism: usize,
}

/// The most workers one prediction fans out over.
pub const MAX_PARALLELISM: usize = 64;
/// The largest chunk: memory is a chunk's rows, so it is bounded.
pub const MAX_CHUNK_ROWS: usize = 1 << 20;

impl PredictSpec {
    /// The payload, checked as far as it can be without reading storage: the handler's
    /// first step, and `jobfleet run`'s check before it runs anything.
    pub(crate) fn parse(payload: &[u8]) -> Result<Self, JobError> {
        let spec: Self = serde_json::from_slice(payload)?;
        spec.model()?;
        spec.check()?;
        Ok(spec)
    }

    /// The model's name and version: the payload's, else the previous pipeline step's.
    pub(super) fn model(&self) -> Result<(String, Option<u64>), DataError> {
        let previous = self.previous.clone().unwrap_or_default();
        let name = self
            .model
            .clone()
            .or_else(|| previous["model"].as_str().map(str::to_string))
            .ok_or_else(|| {
                DataError::invalid("model", "missing (and no previous step named one)")
            })?;
        catalog::check_name("model", &name)?;
        let version = self.model_version.or_else(|| {
            (previous["model"].as_str() == Some(name.as_str()))
                .then(|| previous["version"].as_u64())
                .flatten()
        });
        Ok((name, version))
    }

    /// The fields that need no storage to check: fractions, sizes, the shard, the output.
    fn check(&self) -> Result<(), DataError> {
        if !(0.0..=1.0).contains(&self.max_error_fraction) {
            return Err(DataError::invalid(
                "max_error_fraction",
                "must be between 0 and 1",
            ));
        }
        if let Some(rows) = self.chunk_rows {
            check_chunk_rows(rows)?;
        }
        let parallelism = self.parallelism.unwrap_or(1);
        if !(1..=MAX_PARALLELISM).contains(&parallelism) {
            return Err(DataError::invalid(
                "parallelism",
                format!("must be 1 to {MAX_PARALLELISM}"),
            ));
        }
        if let Some(shard) = self.shard {
            if shard.index >= shard.count || shard.count > MAX_PARALLELISM || parallelism > 1 {
                return Err(DataError::invalid(
                    "shard",
                    "index below count (at most 64), and no parallelism beside it",
                ));
            }
        }
        output_key(&self.output)
    }

    /// The lock this job holds: its output's, or its shard's of it.
    pub(super) fn lock(&self) -> String {
        lock_key(&self.output, self.shard.map(|s| s.index as u64))
    }
}

/// The lock (and fenced resource) of a prediction's output, `predict:{output}`, or of
/// shard `shard` of a parallel one, `predict:{output}:shard:{shard}`: a parallel
/// prediction's parent holds the output's lock, each child its shard's.
pub(crate) fn lock_key(output: &str, shard: Option<u64>) -> String {
    match shard {
        Some(shard) => format!("predict:{output}:shard:{shard}"),
        None => format!("predict:{output}"),
    }
}

/// `chunk_rows`, the payload's or `[data]`'s, is at most [`MAX_CHUNK_ROWS`].
pub(super) fn check_chunk_rows(chunk_rows: usize) -> Result<(), DataError> {
    if (1..=MAX_CHUNK_ROWS).contains(&chunk_rows) {
        Ok(())
    } else {
        Err(DataError::invalid(
            "chunk_rows",
            format!("must be 1 to {MAX_CHUNK_ROWS}"),
        ))
    }
}

/// Checks a prediction's output key: relative, no `.`/`..` parts, not among the
/// versions (`datasets/`, `models/`) nor another prediction's checkpoints (`*.parts`),
/// at most 512 bytes.
pub(crate) fn output_key(key: &str) -> Result<(), DataError> {
    storage_key("output", key)?;
    let reserved = key.starts_with("datasets/")
        || key.starts_with("models/")
        || key.split('/').any(|p| p.ends_with(".parts"))
        || key.len() > 512;
    if reserved {
        return Err(DataError::invalid(
            "output",
            format!(
                "{key:?} is reserved (datasets/, models/, *.parts) or over 512 bytes: use \
                 e.g. predictions/games.parquet"
            ),
        ));
    }
    Ok(())
}

/// Checks a key under the data URL that a payload names.
fn storage_key(field: &str, key: &str) -> Result<(), DataError> {
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
