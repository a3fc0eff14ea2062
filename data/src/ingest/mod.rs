//! `ingest`: a CSV, JSON Lines or Parquet source into a new version of a dataset.
//!
//! The source is read a chunk of `[data] chunk_rows` rows at a time; every row is checked
//! against the schema, good rows go to a Parquet file written aside (a scratch file,
//! uploaded under `datasets/{name}/files/{job id}.parquet`), rejected rows to a
//! quarantine CSV (`datasets/{name}/quarantine/{job id}.csv`: data row number from 1,
//! column, reason, the row as read). Past `max_rejected_fraction` the job fails and
//! publishes nothing. Otherwise it publishes the next version's manifest (see
//! [`crate::catalog`]): in `append` mode the previous version's files plus the new one,
//! in `replace` mode the new one alone.
//!
//! # Layout
//!
//! - this file: the kind's run, step by step (schema, read, quarantine, upload, publish).
//! - `spec`: the payload ([`IngestSpec`], [`Format`]).
//! - `source`: one blocking pass over a source ([`read_source`]).
//! - `sink`: where checked rows go, the Parquet file or the quarantine ([`Counts`]), and
//!   where each schema column is in the source.
//! - `from_csv`, `from_jsonl`, `from_parquet`: a reader per format.

mod from_csv;
mod from_jsonl;
mod from_parquet;
mod sink;
mod source;
mod spec;

use jobfleet_worker::{JobContext, JobError};

use crate::catalog::{self, Kind};
use crate::digest::file_sha256;
use crate::env::Env;
use crate::error::{joined, DataError};
use crate::fencing;
use crate::manifest::{self, DataFile, DatasetManifest, Mode};
use crate::schema::Schema;
use crate::storage::{self, Scratch, Storage};

pub use sink::Counts;
pub use source::read_source;
pub use spec::{Format, IngestSpec};

/// The `ingest` kind.
pub(crate) async fn run(ctx: JobContext, env: &Env) -> Result<(), JobError> {
    let spec = IngestSpec::parse(&ctx.job().payload)?;
    let job_id = ctx.job().id.to_string();
    let storage = &env.storage;
    let lock = Kind::Dataset.lock_key(&spec.dataset);
    fencing::lock_token(&ctx, &lock)?;
    if let Some(done) = already(storage, &spec.dataset, &job_id).await? {
        return ctx.set_result(result(&done));
    }
    let schema = load_schema(storage, &spec).await?;
    let read = read(&ctx, env, &spec, &schema).await?;
    let quarantine = upload_quarantine(storage, &spec, &job_id, &read).await?;
    // `[data] max_rejected_fraction` was checked when the configuration loaded.
    let fraction = spec
        .max_rejected_fraction
        .unwrap_or(env.config.max_rejected_fraction);
    check_rejected(storage, &read.counts, fraction, quarantine.as_deref())?;
    let file = upload_rows(storage, &spec, &job_id, &read).await?;
    let (latest, mut files) = previous_files(storage, &spec, &schema).await?;
    files.push(file);
    // An earlier attempt of this job, stalled past its lock, may have published while
    // this one read the source: then that version is this job's.
    if let Some(done) = already(storage, &spec.dataset, &job_id).await? {
        return ctx.set_result(result(&done));
    }
    let manifest = DatasetManifest {
        dataset: spec.dataset.clone(),
        version: latest.map_or(1, |v| v + 1),
        schema,
        rows: files.iter().map(|f| f.rows).sum(),
        fingerprint: manifest::fingerprint(&files),
        files,
        rejected: read.counts.rejected,
        source: spec.source.clone(),
        mode: spec.mode,
        job_id,
        created_at_ms: manifest::now_ms(),
        quarantine,
    };
    publish(&ctx, storage, &lock, &manifest, &read.counts).await?;
    ctx.set_result(result(&manifest))
}

/// The version an earlier attempt of `job_id` published, if any.
async fn already(
    storage: &Storage,
    dataset: &str,
    job_id: &str,
) -> Result<Option<DatasetManifest>, DataError> {
    let found =
        catalog::published_by::<DatasetManifest>(storage, Kind::Dataset, dataset, job_id).await?;
    if let Some((version, _)) = &found {
        tracing::info!(dataset, version, "already published by this job");
    }
    Ok(found.map(|(_, m)| m))
}

/// The schema the rows are checked against: inline, or the JSON file `schema_ref` names;
/// validated either way.
async fn load_schema(storage: &Storage, spec: &IngestSpec) -> Result<Schema, DataError> {
    let schema: Schema = match (&spec.schema, &spec.schema_ref) {
        (Some(schema), _) => schema.clone(),
        (None, Some(reference)) => {
            let copy = storage::resolve(storage, "schema_ref", reference).await?;
            let text = std::fs::read(copy.path())
                .map_err(|e| DataError::invalid("schema_ref", format!("{reference}: {e}")))?;
            serde_json::from_slice(&text)
                .map_err(|e| DataError::invalid("schema_ref", format!("{reference}: {e}")))?
        }
        (None, None) => return Err(DataError::invalid("schema", "missing")),
    };
    schema.validate()?;
    Ok(schema)
}

/// What reading the source left: its counts, and the two scratch files it wrote.
struct Read {
    counts: Counts,
    /// The good rows, Parquet.
    rows: Scratch,
    /// The rejected rows, CSV.
    quarantine: Scratch,
}

/// Reads the source into scratch files, off the executor.
async fn read(
    ctx: &JobContext,
    env: &Env,
    spec: &IngestSpec,
    schema: &Schema,
) -> Result<Read, DataError> {
    let format = spec.format()?;
    let source = storage::resolve(&env.storage, "source", &spec.source).await?;
    let rows = Scratch::new("ingest.parquet");
    let quarantine = Scratch::new("quarantine.csv");
    let chunk_rows = env.config.chunk_rows;
    let cancel = ctx.cancelled().clone();
    let (schema, rows_path, quarantine_path) = (
        schema.clone(),
        rows.path().to_path_buf(),
        quarantine.path().to_path_buf(),
    );
    let counts = joined(
        tokio::task::spawn_blocking(move || {
            read_source(
                source.path(),
                format,
                &schema,
                chunk_rows,
                &rows_path,
                &quarantine_path,
                &cancel,
            )
        })
        .await,
    )?;
    Ok(Read {
        counts,
        rows,
        quarantine,
    })
}

/// Uploads the quarantine file when rows were rejected, returning its key.
async fn upload_quarantine(
    storage: &Storage,
    spec: &IngestSpec,
    job_id: &str,
    read: &Read,
) -> Result<Option<String>, DataError> {
    if read.counts.rejected == 0 {
        return Ok(None);
    }
    let key = catalog::key(
        Kind::Dataset,
        &spec.dataset,
        &format!("quarantine/{job_id}.csv"),
    );
    storage.upload(read.quarantine.path(), &key).await?;
    Ok(Some(key))
}

/// Fails the job when more than `fraction` of the rows were rejected, naming where the
/// quarantine is.
fn check_rejected(
    storage: &Storage,
    counts: &Counts,
    fraction: f64,
    quarantine: Option<&str>,
) -> Result<(), DataError> {
    let total = counts.rows + counts.rejected;
    let rejected_fraction = if total == 0 {
        0.0
    } else {
        counts.rejected as f64 / total as f64
    };
    if rejected_fraction <= fraction {
        return Ok(());
    }
    // Where a person can open it, not the key under the data URL.
    let quarantined = quarantine.map_or_else(|| "-".to_owned(), |key| storage.location_of(key));
    Err(DataError::Rejected(format!(
        "{} of {total} rows rejected ({:.1}%, over {:.1}%), e.g. {}; all in {quarantined}",
        counts.rejected,
        rejected_fraction * 100.0,
        fraction * 100.0,
        counts.reasons.join("; "),
    )))
}

/// Uploads the good rows as this job's file of the dataset.
async fn upload_rows(
    storage: &Storage,
    spec: &IngestSpec,
    job_id: &str,
    read: &Read,
) -> Result<DataFile, DataError> {
    let sha256 = file_sha256(read.rows.path())?;
    let key = catalog::key(
        Kind::Dataset,
        &spec.dataset,
        &format!("files/{job_id}.parquet"),
    );
    storage.upload(read.rows.path(), &key).await?;
    Ok(DataFile {
        key,
        rows: read.counts.rows,
        sha256,
    })
}

/// The latest version, and the files the new one keeps from it: all of them when
/// appending (with the same schema), none when replacing.
async fn previous_files(
    storage: &Storage,
    spec: &IngestSpec,
    schema: &Schema,
) -> Result<(Option<u64>, Vec<DataFile>), DataError> {
    let latest = catalog::versions(storage, Kind::Dataset, &spec.dataset)
        .await?
        .last()
        .copied();
    let (Mode::Append, Some(latest)) = (spec.mode, latest) else {
        return Ok((latest, Vec::new()));
    };
    let (_, previous): (_, DatasetManifest) = catalog::load(
        storage,
        Kind::Dataset,
        "dataset",
        &spec.dataset,
        Some(latest),
    )
    .await?;
    if previous.schema != *schema {
        return Err(DataError::invalid(
            "schema",
            format!(
                "differs from version {latest}'s; append needs the same columns \
                 (use mode = \"replace\" to change them)"
            ),
        ));
    }
    Ok((Some(latest), previous.files))
}

/// Publishes `manifest` once its lock token passed the store's fence.
async fn publish(
    ctx: &JobContext,
    storage: &Storage,
    lock: &str,
    manifest: &DatasetManifest,
    counts: &Counts,
) -> Result<(), DataError> {
    fencing::publish(ctx, storage, lock, manifest).await?;
    tracing::info!(
        dataset = %manifest.dataset,
        version = manifest.version,
        rows = counts.rows,
        rejected = counts.rejected,
        "dataset version published"
    );
    Ok(())
}

/// The job's result: the version and what went into it.
fn result(m: &DatasetManifest) -> serde_json::Value {
    serde_json::json!({
        "dataset": m.dataset,
        "version": m.version,
        "rows": m.rows,
        "rejected": m.rejected,
        "fingerprint": m.fingerprint,
        "quarantine": m.quarantine,
    })
}
