//! Ingest from JSON Lines: one JSON object per line, its fields by column name; a line
//! that is not an object of scalars, or too long, is quarantined.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};

use super::sink::Sink;
use crate::error::DataError;
use crate::schema::{Raw, Schema};

/// The longest JSON Lines line read; a longer one is rejected.
const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Reads a JSON Lines source into `sink`, a line at a time.
pub(super) fn read(input: File, sink: &mut Sink<'_>) -> Result<(), DataError> {
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
            skip_rest_of_line(&mut reader, &mut line)?;
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        // Blank lines are not rows.
        if !text.is_empty() {
            row += 1;
            line_row(row, text, sink)?;
        }
    }
}

/// Reads past the rest of a line too long to be a row, without holding it.
fn skip_rest_of_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> Result<(), DataError> {
    loop {
        line.clear();
        let n = reader
            .take(MAX_LINE_BYTES as u64)
            .read_until(b'\n', line)
            .map_err(|e| DataError::Io(format!("source: {e}")))?;
        if n == 0 || line.ends_with(b"\n") {
            return Ok(());
        }
    }
}

/// Data row `row`, the line `text`, into `sink`: checked if it is a JSON object of
/// scalars, quarantined if not.
fn line_row(row: u64, text: &str, sink: &mut Sink<'_>) -> Result<(), DataError> {
    let object = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(object)) => object,
        Ok(_) => return sink.reject(row, "-", "is not a JSON object", text),
        Err(e) => return sink.reject(row, "-", &format!("is not JSON: {e}"), text),
    };
    match cells(&object, sink.schema) {
        Ok(cells) => sink.row(row, &cells, text),
        Err(column) => sink.reject(row, &column, "is not a scalar", text),
    }
}

/// The object's fields in schema order (a missing one is null); the name of a column
/// whose field is an array or object (the last such) if there is one.
fn cells<'a>(
    object: &'a serde_json::Map<String, serde_json::Value>,
    schema: &Schema,
) -> Result<Vec<Raw<'a>>, String> {
    let mut cells = Vec::with_capacity(schema.columns.len());
    let mut bad = None;
    for column in &schema.columns {
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
        Some(column) => Err(column),
        None => Ok(cells),
    }
}
