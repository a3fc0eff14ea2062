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

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use arrow_array::{
    Array, BooleanArray, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, Int8Array,
    LargeStringArray, RecordBatch, StringArray, UInt16Array, UInt32Array, UInt8Array,
};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::catalog::{self, Kind, Published};
use crate::error::{joined, DataError};
use crate::schema::{Batcher, Raw, Schema};
use crate::storage::{LocalCopy, Scratch, Storage};
use crate::Env;
use jobfleet_worker::{JobContext, JobError};

/// The longest JSON Lines line read; a longer one is rejected.
const MAX_LINE_BYTES: usize = 1024 * 1024;
/// How many rejection reasons the result repeats.
const SHOWN_REJECTIONS: usize = 5;

/// The `ingest` payload.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSpec {
    /// The dataset's name.
    pub dataset: String,
    /// A key under the data URL, an absolute path, or `file:///…`; in a fan-out step,
    /// the child's `item` when absent (one ingest per file).
    #[serde(default)]
    pub source: String,
    /// `csv`, `jsonl` or `parquet`; by default from the source's extension.
    #[serde(default)]
    pub format: Option<Format>,
    /// The schema, inline.
    #[serde(default)]
    pub schema: Option<Schema>,
    /// The schema as a JSON file: a key under the data URL or a path.
    #[serde(default)]
    pub schema_ref: Option<String>,
    /// `append` (default) or `replace`.
    #[serde(default)]
    pub mode: Mode,
    /// Overrides `[data] max_rejected_fraction`.
    #[serde(default)]
    pub max_rejected_fraction: Option<f64>,
    /// Set by pipelines; unused.
    #[serde(default)]
    pub previous: Option<serde_json::Value>,
    /// Set by a pipeline's fan-out step: the source, when `source` is absent.
    #[serde(default)]
    pub item: Option<serde_json::Value>,
}

/// A source's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Comma-separated, with a header row naming the columns.
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// Apache Parquet.
    Parquet,
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

/// What one pass over a source counted.
#[derive(Debug, Default)]
pub struct Counts {
    /// Rows written.
    pub rows: u64,
    /// Rows quarantined.
    pub rejected: u64,
    /// The first few rejections, `row N: column reason`.
    pub reasons: Vec<String>,
}

impl IngestSpec {
    /// The payload, checked as far as it can be without reading storage (an inline
    /// schema included): the handler's first step, and `jobfleet run`'s check before it
    /// runs anything. A fan-out step's `item` is the source when `source` is absent.
    pub(crate) fn parse(payload: &[u8]) -> Result<Self, JobError> {
        let mut spec: Self = serde_json::from_slice(payload)?;
        if spec.source.is_empty() {
            if let Some(serde_json::Value::String(item)) = &spec.item {
                spec.source = item.clone();
            }
        }
        spec.check()?;
        spec.format()?;
        if let Some(schema) = &spec.schema {
            schema.validate()?;
        }
        Ok(spec)
    }

    fn check(&self) -> Result<(), DataError> {
        catalog::check_name("dataset", &self.dataset)?;
        if self.source.trim().is_empty() {
            return Err(DataError::invalid("source", "name a file"));
        }
        if self.schema.is_some() == self.schema_ref.is_some() {
            return Err(DataError::invalid(
                "schema",
                "give exactly one of `schema` (inline) and `schema_ref` (a JSON file)",
            ));
        }
        if self
            .max_rejected_fraction
            .is_some_and(|f| !(0.0..=1.0).contains(&f))
        {
            return Err(DataError::invalid(
                "max_rejected_fraction",
                "must be between 0 and 1",
            ));
        }
        Ok(())
    }

    fn format(&self) -> Result<Format, DataError> {
        if let Some(f) = self.format {
            return Ok(f);
        }
        let lower = self.source.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            Ok(Format::Csv)
        } else if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
            Ok(Format::Jsonl)
        } else if lower.ends_with(".parquet") {
            Ok(Format::Parquet)
        } else {
            Err(DataError::invalid(
                "format",
                "cannot tell from the source's extension: give csv, jsonl or parquet",
            ))
        }
    }
}

/// A file named by a payload: a key under the data URL (read from a downloaded copy when
/// the store is a bucket), an absolute path, or `file://`.
pub(crate) async fn resolve(
    storage: &Storage,
    field: &str,
    name: &str,
) -> Result<LocalCopy, DataError> {
    let local = if let Some(p) = name.strip_prefix("file://") {
        Some(LocalCopy::local(PathBuf::from(p)))
    } else if Path::new(name).is_absolute() {
        Some(LocalCopy::local(PathBuf::from(name)))
    } else {
        storage
            .local_copy(name)
            .await
            .map_err(|e| DataError::invalid(field, e.to_string()))?
    };
    match local {
        Some(copy) if copy.path().is_file() => Ok(copy),
        _ => Err(DataError::invalid(field, format!("{name:?}: no such file"))),
    }
}

/// The `ingest` kind.
pub(crate) async fn run(ctx: JobContext, env: &Env) -> Result<(), JobError> {
    let spec = IngestSpec::parse(&ctx.job().payload)?;
    // `[data] max_rejected_fraction` was checked when the configuration loaded.
    let fraction = spec
        .max_rejected_fraction
        .unwrap_or(env.config.max_rejected_fraction);
    let format = spec.format()?;
    let job_id = ctx.job().id.to_string();
    let storage = &env.storage;
    let lock = Kind::Dataset.lock_key(&spec.dataset);
    crate::lock_token(&ctx, &lock)?;
    if let Some(done) = already(storage, &spec.dataset, &job_id).await? {
        return ctx.set_result(result(&done));
    }
    let schema = match (&spec.schema, &spec.schema_ref) {
        (Some(schema), _) => schema.clone(),
        (None, Some(reference)) => {
            let copy = resolve(storage, "schema_ref", reference).await?;
            let text = std::fs::read(copy.path())
                .map_err(|e| DataError::invalid("schema_ref", format!("{reference}: {e}")))?;
            serde_json::from_slice(&text)
                .map_err(|e| DataError::invalid("schema_ref", format!("{reference}: {e}")))?
        }
        (None, None) => return Err(DataError::invalid("schema", "missing").into()),
    };
    schema.validate()?;
    let source = resolve(storage, "source", &spec.source).await?;

    let data = Scratch::new("ingest.parquet");
    let quarantine = Scratch::new("quarantine.csv");
    let chunk_rows = env.config.chunk_rows;
    let cancel = ctx.cancelled().clone();
    let (schema_c, data_p, quarantine_p) = (
        schema.clone(),
        data.path().to_path_buf(),
        quarantine.path().to_path_buf(),
    );
    let counts = joined(
        tokio::task::spawn_blocking(move || {
            read_source(
                source.path(),
                format,
                &schema_c,
                chunk_rows,
                &data_p,
                &quarantine_p,
                &cancel,
            )
        })
        .await,
    )?;
    let total = counts.rows + counts.rejected;
    let quarantine_key = (counts.rejected > 0).then(|| {
        catalog::key(
            Kind::Dataset,
            &spec.dataset,
            &format!("quarantine/{job_id}.csv"),
        )
    });
    if let Some(key) = &quarantine_key {
        storage.upload(quarantine.path(), key).await?;
    }
    let rejected_fraction = if total == 0 {
        0.0
    } else {
        counts.rejected as f64 / total as f64
    };
    if rejected_fraction > fraction {
        // Where a person can open it, not the key under the data URL.
        let quarantined = quarantine_key
            .as_deref()
            .map_or_else(|| "-".to_owned(), |key| storage.location_of(key));
        return Err(DataError::Rejected(format!(
            "{} of {total} rows rejected ({:.1}%, over {:.1}%), e.g. {}; all in {quarantined}",
            counts.rejected,
            rejected_fraction * 100.0,
            fraction * 100.0,
            counts.reasons.join("; "),
        ))
        .into());
    }

    let sha256 = file_sha256(data.path())?;
    let file_key = catalog::key(
        Kind::Dataset,
        &spec.dataset,
        &format!("files/{job_id}.parquet"),
    );
    storage.upload(data.path(), &file_key).await?;
    let mut files = Vec::new();
    let latest = catalog::versions(storage, Kind::Dataset, &spec.dataset)
        .await?
        .last()
        .copied();
    if spec.mode == Mode::Append {
        if let Some(latest) = latest {
            let (_, previous): (_, DatasetManifest) = catalog::load(
                storage,
                Kind::Dataset,
                "dataset",
                &spec.dataset,
                Some(latest),
            )
            .await?;
            if previous.schema != schema {
                return Err(DataError::invalid(
                    "schema",
                    format!(
                        "differs from version {latest}'s; append needs the same columns \
                         (use mode = \"replace\" to change them)"
                    ),
                )
                .into());
            }
            files = previous.files;
        }
    }
    files.push(DataFile {
        key: file_key,
        rows: counts.rows,
        sha256,
    });
    let version = latest.map_or(1, |v| v + 1);
    // An earlier attempt of this job, stalled past its lock, may have published while
    // this one read the source: then that version is this job's.
    if let Some(done) = already(storage, &spec.dataset, &job_id).await? {
        return ctx.set_result(result(&done));
    }
    let manifest = DatasetManifest {
        dataset: spec.dataset.clone(),
        version,
        schema,
        rows: files.iter().map(|f| f.rows).sum(),
        fingerprint: fingerprint(&files),
        files,
        rejected: counts.rejected,
        source: spec.source.clone(),
        mode: spec.mode,
        job_id: job_id.clone(),
        created_at_ms: now_ms(),
        quarantine: quarantine_key,
    };
    crate::fence(&ctx, &lock, version).await?;
    catalog::publish(
        storage,
        Kind::Dataset,
        &spec.dataset,
        version,
        &job_id,
        &manifest,
    )
    .await?;
    tracing::info!(
        dataset = %spec.dataset,
        version,
        rows = counts.rows,
        rejected = counts.rejected,
        "dataset version published"
    );
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

/// SHA-256 over the files' hashes.
fn fingerprint(files: &[DataFile]) -> String {
    let mut hash = Sha256::new();
    for f in files {
        hash.update(f.sha256.as_bytes());
    }
    hex(&hash.finalize())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub(crate) fn file_sha256(path: &Path) -> Result<String, DataError> {
    let mut file =
        File::open(path).map_err(|e| DataError::Io(format!("{}: {e}", path.display())))?;
    let mut hash = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| DataError::Io(format!("{}: {e}", path.display())))?;
        if n == 0 {
            return Ok(hex(&hash.finalize()));
        }
        hash.update(&buffer[..n]);
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The Parquet writer settings of every file jobfleet writes: Snappy, row groups of one
/// chunk, and a fixed `created_by` so equal rows give equal bytes.
pub fn writer_properties(chunk_rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(chunk_rows.max(1)))
        .set_created_by("jobfleet".into())
        .build()
}

/// Where checked rows go: the Parquet writer, a chunk at a time, and the quarantine.
struct Sink<'a> {
    schema: &'a Schema,
    batcher: Batcher,
    writer: ArrowWriter<File>,
    quarantine: csv::Writer<File>,
    chunk_rows: usize,
    counts: Counts,
    cancel: &'a CancellationToken,
}

impl Sink<'_> {
    /// Checks data row `row` (from 1), given its cells in schema order, and the row as
    /// read for the quarantine.
    fn row(&mut self, row: u64, cells: &[Raw<'_>], as_read: &str) -> Result<(), DataError> {
        let mut values = Vec::with_capacity(cells.len());
        for (column, raw) in self.schema.columns.iter().zip(cells) {
            match column.check(raw) {
                Ok(v) => values.push(v),
                Err(reason) => return self.reject(row, &column.name, &reason, as_read),
            }
        }
        self.batcher.push(values);
        self.counts.rows += 1;
        if self.batcher.rows() >= self.chunk_rows {
            self.flush()?;
        }
        Ok(())
    }

    fn reject(
        &mut self,
        row: u64,
        column: &str,
        reason: &str,
        as_read: &str,
    ) -> Result<(), DataError> {
        self.counts.rejected += 1;
        if self.counts.reasons.len() < SHOWN_REJECTIONS {
            self.counts
                .reasons
                .push(format!("row {row}: {column} {reason}"));
        }
        self.quarantine
            .write_record([row.to_string().as_str(), column, reason, as_read])
            .map_err(|e| DataError::Io(format!("quarantine: {e}")))
    }

    fn flush(&mut self) -> Result<(), DataError> {
        if self.cancel.is_cancelled() {
            return Err(DataError::Cancelled);
        }
        if self.batcher.rows() > 0 {
            let batch = self.batcher.finish()?;
            self.writer.write(&batch)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Counts, DataError> {
        self.flush()?;
        self.writer.close()?;
        self.quarantine
            .flush()
            .map_err(|e| DataError::Io(format!("quarantine: {e}")))?;
        Ok(self.counts)
    }
}

/// Reads `source` into `data` (Parquet) and `quarantine` (CSV), blocking; see the module
/// docs. Checks `cancel` once per chunk.
pub fn read_source(
    source: &Path,
    format: Format,
    schema: &Schema,
    chunk_rows: usize,
    data: &Path,
    quarantine: &Path,
    cancel: &CancellationToken,
) -> Result<Counts, DataError> {
    let create =
        |p: &Path| File::create(p).map_err(|e| DataError::Io(format!("{}: {e}", p.display())));
    let writer = ArrowWriter::try_new(
        create(data)?,
        schema.arrow(),
        Some(writer_properties(chunk_rows)),
    )?;
    let mut quarantine = csv::Writer::from_writer(create(quarantine)?);
    quarantine
        .write_record(["row", "column", "reason", "as_read"])
        .map_err(|e| DataError::Io(format!("quarantine: {e}")))?;
    let mut sink = Sink {
        schema,
        batcher: Batcher::new(schema),
        writer,
        quarantine,
        chunk_rows,
        counts: Counts::default(),
        cancel,
    };
    let input = File::open(source)
        .map_err(|e| DataError::invalid("source", format!("{}: {e}", source.display())))?;
    match format {
        Format::Csv => read_csv(input, &mut sink)?,
        Format::Jsonl => read_jsonl(input, &mut sink)?,
        Format::Parquet => read_parquet(input, &mut sink)?,
    }
    sink.finish()
}

/// The longest CSV record read (an unclosed quote would otherwise make the rest of the
/// file one record, in memory).
const MAX_RECORD_BYTES: u64 = 16 * 1024 * 1024;

/// A reader that fails once more than [`MAX_RECORD_BYTES`] were read since the caller
/// last reset `since` (after each record).
struct Bounded<R> {
    inner: R,
    since: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.since.get() > MAX_RECORD_BYTES {
            return Err(std::io::Error::other(format!(
                "a record over {MAX_RECORD_BYTES} bytes (an unclosed quote?)"
            )));
        }
        let n = self.inner.read(buf)?;
        self.since.set(self.since.get() + n as u64);
        Ok(n)
    }
}

fn read_csv(input: File, sink: &mut Sink<'_>) -> Result<(), DataError> {
    let since = std::rc::Rc::new(std::cell::Cell::new(0));
    let bounded = Bounded {
        inner: BufReader::new(input),
        since: since.clone(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(bounded);
    let header = reader
        .byte_headers()
        .map_err(|e| DataError::invalid("source", format!("CSV header: {e}")))?
        .clone();
    let names: Vec<String> = header
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    let positions = positions(sink.schema, |name| names.iter().position(|n| n == name))?;
    let mut record = csv::ByteRecord::new();
    let mut row = 0u64;
    loop {
        let read = reader.read_byte_record(&mut record);
        since.set(0);
        match read {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) if e.is_io_error() => {
                return Err(DataError::invalid(
                    "source",
                    format!("after data row {row}: {e}"),
                ))
            }
            Err(e) => {
                row += 1;
                sink.reject(row, "-", &format!("unreadable CSV: {e}"), "")?;
                continue;
            }
        }
        row += 1;
        let as_read = record
            .iter()
            .map(String::from_utf8_lossy)
            .collect::<Vec<_>>()
            .join(",");
        let texts: Result<Vec<Raw<'_>>, usize> = positions
            .iter()
            .map(|p| match p.and_then(|i| record.get(i)) {
                None => Ok(Raw::Null),
                Some(bytes) => std::str::from_utf8(bytes)
                    .map(Raw::Text)
                    .map_err(|_| p.unwrap_or(0)),
            })
            .collect();
        match texts {
            Ok(cells) => sink.row(row, &cells, &as_read)?,
            Err(i) => sink.reject(row, &names[i], "is not UTF-8", &as_read)?,
        }
    }
}

/// Where each schema column is in the source; a missing column is an error unless it is
/// nullable.
fn positions(
    schema: &Schema,
    find: impl Fn(&str) -> Option<usize>,
) -> Result<Vec<Option<usize>>, DataError> {
    schema
        .columns
        .iter()
        .map(|c| match find(&c.name) {
            Some(i) => Ok(Some(i)),
            None if c.nullable => Ok(None),
            None => Err(DataError::invalid(
                "source",
                format!("has no column {:?}, which the schema requires", c.name),
            )),
        })
        .collect()
}

fn read_jsonl(input: File, sink: &mut Sink<'_>) -> Result<(), DataError> {
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    let mut row = 0u64;
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| DataError::Io(format!("source: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE_BYTES && !line.ends_with(b"\n") {
            row += 1;
            sink.reject(row, "-", &format!("line over {MAX_LINE_BYTES} bytes"), "")?;
            // Skip the rest of the long line.
            loop {
                line.clear();
                let n = (&mut reader)
                    .take(MAX_LINE_BYTES as u64)
                    .read_until(b'\n', &mut line)
                    .map_err(|e| DataError::Io(format!("source: {e}")))?;
                if n == 0 || line.ends_with(b"\n") {
                    break;
                }
            }
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        row += 1;
        let object = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(object)) => object,
            Ok(_) => {
                sink.reject(row, "-", "is not a JSON object", text)?;
                continue;
            }
            Err(e) => {
                sink.reject(row, "-", &format!("is not JSON: {e}"), text)?;
                continue;
            }
        };
        let mut cells = Vec::with_capacity(sink.schema.columns.len());
        let mut bad = None;
        for column in &sink.schema.columns {
            cells.push(match object.get(&column.name) {
                None | Some(serde_json::Value::Null) => Raw::Null,
                Some(serde_json::Value::Bool(b)) => Raw::Bool(*b),
                Some(serde_json::Value::String(s)) => Raw::Text(s),
                Some(serde_json::Value::Number(n)) => match n.as_i64() {
                    Some(i) => Raw::Int(i),
                    None => Raw::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
                Some(_) => {
                    bad = Some(column.name.clone());
                    Raw::Null
                }
            });
        }
        match bad {
            Some(column) => sink.reject(row, &column, "is not a scalar", text)?,
            None => sink.row(row, &cells, text)?,
        }
    }
}

fn read_parquet(input: File, sink: &mut Sink<'_>) -> Result<(), DataError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(input)
        .map_err(|e| DataError::invalid("source", format!("not Parquet: {e}")))?
        .with_batch_size(sink.chunk_rows);
    let arrow_schema = builder.schema().clone();
    let positions = positions(sink.schema, |name| arrow_schema.index_of(name).ok())?;
    for p in positions.iter().flatten() {
        let field = arrow_schema.field(*p);
        if cell(&*new_null(field.data_type()), 0).is_none() {
            return Err(DataError::invalid(
                "source",
                format!(
                    "column {:?} is {}, which ingest does not read (ints, floats, strings, \
                     booleans)",
                    field.name(),
                    field.data_type()
                ),
            ));
        }
    }
    let mut row = 0u64;
    let unreadable = |e: &dyn std::fmt::Display| {
        DataError::invalid("source", format!("unreadable Parquet: {e}"))
    };
    for batch in builder.build().map_err(|e| unreadable(&e))? {
        let batch: RecordBatch = batch.map_err(|e| unreadable(&e))?;
        for i in 0..batch.num_rows() {
            row += 1;
            let cells: Vec<Raw<'_>> = positions
                .iter()
                .map(|p| match p {
                    None => Raw::Null,
                    Some(c) => cell(batch.column(*c).as_ref(), i).unwrap_or(Raw::Null),
                })
                .collect();
            let as_read = format!("{cells:?}");
            sink.row(row, &cells, &as_read)?;
        }
    }
    Ok(())
}

/// A one-row null array of `data_type`, to ask [`cell`] whether the type is read.
fn new_null(data_type: &DataType) -> arrow_array::ArrayRef {
    arrow_array::new_null_array(data_type, 1)
}

/// Cell `i` of `array`; `None` if the type is not one ingest reads.
fn cell(array: &dyn Array, i: usize) -> Option<Raw<'_>> {
    macro_rules! int {
        ($t:ty) => {
            array.as_any().downcast_ref::<$t>().map(|a| {
                if a.is_null(i) {
                    Raw::Null
                } else {
                    Raw::Int(i64::from(a.value(i)))
                }
            })
        };
    }
    match array.data_type() {
        DataType::Int8 => int!(Int8Array),
        DataType::Int16 => int!(Int16Array),
        DataType::Int32 => int!(Int32Array),
        DataType::Int64 => int!(Int64Array),
        DataType::UInt8 => int!(UInt8Array),
        DataType::UInt16 => int!(UInt16Array),
        DataType::UInt32 => int!(UInt32Array),
        DataType::Float32 => array.as_any().downcast_ref::<Float32Array>().map(|a| {
            if a.is_null(i) {
                Raw::Null
            } else {
                Raw::Float(f64::from(a.value(i)))
            }
        }),
        DataType::Float64 => array.as_any().downcast_ref::<Float64Array>().map(|a| {
            if a.is_null(i) {
                Raw::Null
            } else {
                Raw::Float(a.value(i))
            }
        }),
        DataType::Utf8 => array.as_any().downcast_ref::<StringArray>().map(|a| {
            if a.is_null(i) {
                Raw::Null
            } else {
                Raw::Text(a.value(i))
            }
        }),
        DataType::LargeUtf8 => array.as_any().downcast_ref::<LargeStringArray>().map(|a| {
            if a.is_null(i) {
                Raw::Null
            } else {
                Raw::Text(a.value(i))
            }
        }),
        DataType::Boolean => array.as_any().downcast_ref::<BooleanArray>().map(|a| {
            if a.is_null(i) {
                Raw::Null
            } else {
                Raw::Bool(a.value(i))
            }
        }),
        _ => None,
    }
}
