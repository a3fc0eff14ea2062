//! Where checked rows go: every row of a source is checked against the schema; a good
//! row joins the chunk being built and each full chunk is written to the dataset's new
//! Parquet file, a bad row goes whole to the quarantine CSV (data row number from 1,
//! column, reason, the row as read) and is counted.

use std::fs::File;
use std::path::Path;

use parquet::arrow::ArrowWriter;
use tokio_util::sync::CancellationToken;

use crate::error::DataError;
use crate::parquet_out;
use crate::schema::{Batcher, Raw, Schema};

/// How many rejection reasons the result repeats.
const SHOWN_REJECTIONS: usize = 5;

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

/// Where checked rows go: the Parquet writer, a chunk at a time, and the quarantine.
pub(super) struct Sink<'a> {
    /// The schema every row is checked against.
    pub(super) schema: &'a Schema,
    batcher: Batcher,
    writer: ArrowWriter<File>,
    quarantine: csv::Writer<File>,
    /// Rows per chunk: per Parquet row group, and per batch a Parquet source is read in.
    pub(super) chunk_rows: usize,
    counts: Counts,
    cancel: &'a CancellationToken,
}

impl<'a> Sink<'a> {
    /// A sink writing good rows to the new Parquet file `data` and bad ones to the new
    /// CSV file `quarantine` (its header written).
    pub(super) fn create(
        schema: &'a Schema,
        chunk_rows: usize,
        data: &Path,
        quarantine: &Path,
        cancel: &'a CancellationToken,
    ) -> Result<Self, DataError> {
        let writer = parquet_out::create(data, schema.arrow(), chunk_rows)?;
        let quarantine = File::create(quarantine)
            .map_err(|e| DataError::Io(format!("{}: {e}", quarantine.display())))?;
        let mut quarantine = csv::Writer::from_writer(quarantine);
        quarantine
            .write_record(["row", "column", "reason", "as_read"])
            .map_err(|e| DataError::Io(format!("quarantine: {e}")))?;
        Ok(Self {
            schema,
            batcher: Batcher::new(schema),
            writer,
            quarantine,
            chunk_rows,
            counts: Counts::default(),
            cancel,
        })
    }
}

impl Sink<'_> {
    /// Where each schema column is in the source, by `find`ing its name there; a missing
    /// column is an error unless it is nullable.
    pub(super) fn positions(
        &self,
        find: impl Fn(&str) -> Option<usize>,
    ) -> Result<Vec<Option<usize>>, DataError> {
        self.schema
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

    /// Checks data row `row` (from 1), given its cells in schema order, and the row as
    /// read for the quarantine.
    pub(super) fn row(
        &mut self,
        row: u64,
        cells: &[Raw<'_>],
        as_read: &str,
    ) -> Result<(), DataError> {
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

    /// Quarantines data row `row` (from 1) for `reason` about `column`.
    pub(super) fn reject(
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

    /// Writes the chunk built so far, unless the job was cancelled meanwhile.
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

    /// The last chunk written and both files closed: what the pass counted.
    pub(super) fn finish(mut self) -> Result<Counts, DataError> {
        self.flush()?;
        self.writer.close()?;
        self.quarantine
            .flush()
            .map_err(|e| DataError::Io(format!("quarantine: {e}")))?;
        Ok(self.counts)
    }
}
