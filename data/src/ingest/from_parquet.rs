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
    match array.data_type() {
        DataType::Int8 => typed::<Int8Array>(array, i, |a| Raw::Int(a.value(i).into())),
        DataType::Int16 => typed::<Int16Array>(array, i, |a| Raw::Int(a.value(i).into())),
        DataType::Int32 => typed::<Int32Array>(array, i, |a| Raw::Int(a.value(i).into())),
        DataType::Int64 => typed::<Int64Array>(array, i, |a| Raw::Int(a.value(i))),
        DataType::UInt8 => typed::<UInt8Array>(array, i, |a| Raw::Int(a.value(i).into())),
        DataType::UInt16 => typed::<UInt16Array>(array, i, |a| Raw::Int(a.value(i).into())),
        DataType::UInt32 => typed::<UInt32Array>(array, i, |a| Raw::Int(a.value(i).into())),
        DataType::Float32 => typed::<Float32Array>(array, i, |a| Raw::Float(a.value(i).into())),
        DataType::Float64 => typed::<Float64Array>(array, i, |a| Raw::Float(a.value(i))),
        DataType::Utf8 => typed::<StringArray>(array, i, |a| Raw::Text(a.value(i))),
        DataType::LargeUtf8 => typed::<LargeStringArray>(array, i, |a| Raw::Text(a.value(i))),
        DataType::Boolean => typed::<BooleanArray>(array, i, |a| Raw::Bool(a.value(i))),
        _ => None,
    }
}

/// Cell `i` of `array` as the Arrow type `A` (`None` when it is not one): null, or what
/// `value` reads from it.
fn typed<'a, A: Array + 'static>(
    array: &'a dyn Array,
    i: usize,
    value: impl FnOnce(&'a A) -> Raw<'a>,
) -> Option<Raw<'a>> {
    let typed = array.as_any().downcast_ref::<A>()?;
    Some(if typed.is_null(i) {
        Raw::Null
    } else {
        value(typed)
    })
}
