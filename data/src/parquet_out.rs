//! The Parquet files jobfleet writes (a dataset's rows, a prediction's parts and its
//! merged output), all with one set of writer settings, so equal rows give equal bytes
//! whichever kind wrote them and however a run was interrupted.

use std::fs::File;
use std::path::Path;

use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::DataError;

/// The Parquet writer settings of every file jobfleet writes: Snappy, row groups of one
/// chunk, and a fixed `created_by` so equal rows give equal bytes.
pub fn writer_properties(chunk_rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(chunk_rows.max(1)))
        .set_created_by("jobfleet".into())
        .build()
}

/// A writer of a new Parquet file at `path` with [`writer_properties`].
pub(crate) fn create(
    path: &Path,
    schema: SchemaRef,
    chunk_rows: usize,
) -> Result<ArrowWriter<File>, DataError> {
    let file = File::create(path).map_err(|e| DataError::Io(format!("{}: {e}", path.display())))?;
    Ok(ArrowWriter::try_new(
        file,
        schema,
        Some(writer_properties(chunk_rows)),
    )?)
}
