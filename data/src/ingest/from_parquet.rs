//! Ingest from Parquet: the schema's columns by name, read a chunk at a time; integer,
//! float, string and boolean columns only, as [`cell`] reads them.

use std::fs::File;

use arrow_array::{
    Array, BooleanArray, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, Int8Array,
    LargeStringArray, RecordBatch, StringArray, UInt16Array, UInt32Array, UInt8Array,
};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::sink::Sink;
use crate::error::DataError;
use crate::schema::Raw;

/// Reads a Parquet source into `sink`, a batch of `chunk_rows` at a time.
pub(super) fn read(input: File, sink: &mut Sink<'_>) -> Result<(), DataError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(input)
        .map_err(|e| DataError::invalid("source", format!("not Parquet: {e}")))?
        .with_batch_size(sink.chunk_rows);
    let arrow_schema = builder.schema().clone();
    let positions = sink.positions(|name| arrow_schema.index_of(name).ok())?;
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
