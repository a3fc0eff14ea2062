//! Ingest from CSV: a header row naming the columns, then a record per row; a record
//! that cannot be read (or is not UTF-8 where the schema reads it) is quarantined, and a
//! record too long to be one (an unclosed quote) stops the read.

use std::fs::File;
use std::io::{BufReader, Read};

use super::sink::Sink;
use crate::error::DataError;
use crate::schema::Raw;

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

/// Reads a CSV source into `sink`, a record at a time.
pub(super) fn read(input: File, sink: &mut Sink<'_>) -> Result<(), DataError> {
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
    let positions = sink.positions(|name| names.iter().position(|n| n == name))?;
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
