//! One blocking pass over a source: the Parquet writer and the quarantine opened, the
//! reader of the source's format run into them, the counts returned.

use std::fs::File;
use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::sink::{Counts, Sink};
use super::spec::Format;
use super::{from_csv, from_jsonl, from_parquet};
use crate::error::DataError;
use crate::schema::Schema;

/// Reads `source` into `data` (Parquet) and `quarantine` (CSV), blocking; see
/// [`crate::ingest`]. Checks `cancel` once per chunk.
pub fn read_source(
    source: &Path,
    format: Format,
    schema: &Schema,
    chunk_rows: usize,
    data: &Path,
    quarantine: &Path,
    cancel: &CancellationToken,
) -> Result<Counts, DataError> {
    let mut sink = Sink::create(schema, chunk_rows, data, quarantine, cancel)?;
    let input = File::open(source)
        .map_err(|e| DataError::invalid("source", format!("{}: {e}", source.display())))?;
    match format {
        Format::Csv => from_csv::read(input, &mut sink)?,
        Format::Jsonl => from_jsonl::read(input, &mut sink)?,
        Format::Parquet => from_parquet::read(input, &mut sink)?,
    }
    sink.finish()
}
