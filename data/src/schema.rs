//! A dataset's schema: its columns, their types, and what values each accepts.
//!
//! Ingest checks every row against it; a row with any bad cell is rejected whole (into
//! the quarantine file, with the first reason), so a dataset holds only rows that pass.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::DataError;

/// The columns of a dataset, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// The columns; names are unique.
    pub columns: Vec<ColumnSpec>,
}

/// One column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// Its name in the source (CSV header, JSON field, Parquet column) and the dataset.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: ColumnType,
    /// Whether a cell may be empty (an empty CSV cell, a JSON `null` or missing field).
    #[serde(default)]
    pub nullable: bool,
    /// Smallest value allowed (numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest value allowed (numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The only values allowed (strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
}

/// A column's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// 64-bit signed integers.
    Int,
    /// 64-bit floats (finite).
    Float,
    /// UTF-8 text.
    String,
    /// `true`/`false` (also `1`/`0`, `yes`/`no` in text sources).
    Bool,
}

/// A cell as a source gives it, before it is checked.
#[derive(Clone, Debug, PartialEq)]
pub enum Raw<'a> {
    /// Absent or empty.
    Null,
    /// Text (CSV cells, JSON strings).
    Text(&'a str),
    /// A whole number (JSON, Parquet).
    Int(i64),
    /// A number (JSON, Parquet).
    Float(f64),
    /// A boolean (JSON, Parquet).
    Bool(bool),
}

/// A checked cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Empty, in a nullable column.
    Null,
    /// An `int` cell.
    Int(i64),
    /// A `float` cell.
    Float(f64),
    /// A `string` cell.
    Str(String),
    /// A `bool` cell.
    Bool(bool),
}

impl Schema {
    /// Checks the schema itself; errors name the field under `schema`.
    pub fn validate(&self) -> Result<(), DataError> {
        if self.columns.is_empty() {
            return Err(DataError::invalid(
                "schema.columns",
                "name at least one column",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, c) in self.columns.iter().enumerate() {
            let field = |f: &str| format!("schema.columns[{i}].{f}");
            if c.name.trim().is_empty() {
                return Err(DataError::invalid(field("name"), "must not be empty"));
            }
            if !seen.insert(c.name.as_str()) {
                return Err(DataError::invalid(
                    field("name"),
                    format!("{:?} appears twice", c.name),
                ));
            }
            let numeric = matches!(c.kind, ColumnType::Int | ColumnType::Float);
            if !numeric && (c.min.is_some() || c.max.is_some()) {
                return Err(DataError::invalid(
                    field("min"),
                    "min and max apply to int and float columns only",
                ));
            }
            if let (Some(lo), Some(hi)) = (c.min, c.max) {
                if lo > hi {
                    return Err(DataError::invalid(field("max"), "is below min"));
                }
            }
            if c.categories.is_some() && c.kind != ColumnType::String {
                return Err(DataError::invalid(
                    field("categories"),
                    "categories apply to string columns only",
                ));
            }
        }
        Ok(())
    }

    /// The Arrow schema of the dataset's Parquet files.
    pub fn arrow(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(&c.name, c.kind.arrow(), c.nullable))
            .collect();
        Arc::new(ArrowSchema::new(fields))
    }

    /// The index of `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

impl ColumnType {
    /// The Arrow type a column of this type is stored as.
    pub fn arrow(self) -> DataType {
        match self {
            Self::Int => DataType::Int64,
            Self::Float => DataType::Float64,
            Self::String => DataType::Utf8,
            Self::Bool => DataType::Boolean,
        }
    }
}

impl ColumnSpec {
    /// Checks one cell; the error says what is wrong (the caller adds the column).
    pub fn check(&self, raw: &Raw<'_>) -> Result<Value, String> {
        let raw = match raw {
            Raw::Text(t) if t.trim().is_empty() && self.kind != ColumnType::String => &Raw::Null,
            Raw::Text("") => &Raw::Null,
            other => other,
        };
        if *raw == Raw::Null {
            return if self.nullable {
                Ok(Value::Null)
            } else {
                Err("is empty, and the column is not nullable".into())
            };
        }
        let value = match (self.kind, raw) {
            (ColumnType::Int, Raw::Int(i)) => Value::Int(*i),
            (ColumnType::Int, Raw::Text(t)) => Value::Int(
                t.trim()
                    .parse()
                    .map_err(|_| format!("{t:?} is not a whole number"))?,
            ),
            (ColumnType::Int, Raw::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                Value::Int(*f as i64)
            }
            (ColumnType::Float, Raw::Float(f)) => Value::Float(*f),
            (ColumnType::Float, Raw::Int(i)) => Value::Float(*i as f64),
            (ColumnType::Float, Raw::Text(t)) => Value::Float(
                t.trim()
                    .parse()
                    .map_err(|_| format!("{t:?} is not a number"))?,
            ),
            (ColumnType::String, Raw::Text(t)) => Value::Str((*t).to_string()),
            (ColumnType::Bool, Raw::Bool(b)) => Value::Bool(*b),
            (ColumnType::Bool, Raw::Int(i @ (0 | 1))) => Value::Bool(*i == 1),
            (ColumnType::Bool, Raw::Text(t)) => {
                Value::Bool(match t.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "t" | "y" => true,
                    "false" | "0" | "no" | "f" | "n" => false,
                    _ => return Err(format!("{t:?} is not true or false")),
                })
            }
            (kind, raw) => return Err(format!("{raw:?} is not of type {kind:?}")),
        };
        self.bounds(&value)?;
        Ok(value)
    }

    fn bounds(&self, value: &Value) -> Result<(), String> {
        let number = match value {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => {
                if !f.is_finite() {
                    return Err(format!("{f} is not finite"));
                }
                Some(*f)
            }
            _ => None,
        };
        if let Some(n) = number {
            if self.min.is_some_and(|lo| n < lo) || self.max.is_some_and(|hi| n > hi) {
                return Err(format!(
                    "{n} is outside {}..={}",
                    self.min.map_or("-inf".into(), |v| v.to_string()),
                    self.max.map_or("inf".into(), |v| v.to_string())
                ));
            }
        }
        if let (Value::Str(s), Some(allowed)) = (value, &self.categories) {
            if !allowed.iter().any(|a| a == s) {
                return Err(format!("{s:?} is not one of the categories"));
            }
        }
        Ok(())
    }
}

/// Checked rows gathered into Arrow arrays, a chunk at a time.
pub struct Batcher {
    schema: SchemaRef,
    columns: Vec<Column>,
    rows: usize,
}

enum Column {
    Int(Int64Builder),
    Float(Float64Builder),
    Str(StringBuilder),
    Bool(BooleanBuilder),
}

impl Batcher {
    /// An empty batch of `schema`'s columns.
    pub fn new(schema: &Schema) -> Self {
        let columns = schema
            .columns
            .iter()
            .map(|c| match c.kind {
                ColumnType::Int => Column::Int(Int64Builder::new()),
                ColumnType::Float => Column::Float(Float64Builder::new()),
                ColumnType::String => Column::Str(StringBuilder::new()),
                ColumnType::Bool => Column::Bool(BooleanBuilder::new()),
            })
            .collect();
        Self {
            schema: schema.arrow(),
            columns,
            rows: 0,
        }
    }

    /// Rows gathered since the last [`finish`](Self::finish).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends one checked row (one value per column, in order, of the column's type).
    pub fn push(&mut self, row: Vec<Value>) {
        for (column, value) in self.columns.iter_mut().zip(row) {
            match (column, value) {
                (Column::Int(b), Value::Int(v)) => b.append_value(v),
                (Column::Float(b), Value::Float(v)) => b.append_value(v),
                (Column::Str(b), Value::Str(v)) => b.append_value(v),
                (Column::Bool(b), Value::Bool(v)) => b.append_value(v),
                (Column::Int(b), _) => b.append_null(),
                (Column::Float(b), _) => b.append_null(),
                (Column::Str(b), _) => b.append_null(),
                (Column::Bool(b), _) => b.append_null(),
            }
        }
        self.rows += 1;
    }

    /// The gathered rows as one record batch; the batcher starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, DataError> {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| -> ArrayRef {
                match c {
                    Column::Int(b) => Arc::new(b.finish()),
                    Column::Float(b) => Arc::new(b.finish()),
                    Column::Str(b) => Arc::new(b.finish()),
                    Column::Bool(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        self.rows = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(kind: ColumnType) -> ColumnSpec {
        ColumnSpec {
            name: "c".into(),
            kind,
            nullable: false,
            min: None,
            max: None,
            categories: None,
        }
    }

    #[test]
    fn cells_are_checked_against_type_bounds_and_categories() {
        let minutes = ColumnSpec {
            min: Some(0.0),
            max: Some(48.0),
            ..column(ColumnType::Float)
        };
        assert_eq!(minutes.check(&Raw::Text("31.5")), Ok(Value::Float(31.5)));
        assert!(minutes
            .check(&Raw::Text("-5"))
            .expect_err("an error")
            .contains("outside"));
        assert!(minutes
            .check(&Raw::Text("abc"))
            .expect_err("an error")
            .contains("not a number"));
        assert!(minutes
            .check(&Raw::Text(""))
            .expect_err("an error")
            .contains("not nullable"));
        assert!(minutes
            .check(&Raw::Text("NaN"))
            .expect_err("an error")
            .contains("not finite"));
        let position = ColumnSpec {
            categories: Some(vec!["G".into(), "F".into()]),
            nullable: true,
            ..column(ColumnType::String)
        };
        assert_eq!(position.check(&Raw::Text("G")), Ok(Value::Str("G".into())));
        assert_eq!(position.check(&Raw::Null), Ok(Value::Null));
        assert!(position.check(&Raw::Text("Q")).is_err());
        let home = column(ColumnType::Bool);
        assert_eq!(home.check(&Raw::Text("yes")), Ok(Value::Bool(true)));
        assert_eq!(home.check(&Raw::Int(0)), Ok(Value::Bool(false)));
        let points = column(ColumnType::Int);
        assert_eq!(points.check(&Raw::Float(12.0)), Ok(Value::Int(12)));
        assert!(points.check(&Raw::Float(12.5)).is_err());
    }

    #[test]
    fn a_bad_schema_names_the_field() {
        let schema = Schema {
            columns: vec![column(ColumnType::Int), column(ColumnType::Float)],
        };
        let e = schema.validate().expect_err("an error").to_string();
        assert!(e.starts_with("schema.columns[1].name"), "{e}");
        let schema = Schema {
            columns: vec![ColumnSpec {
                categories: Some(vec![]),
                ..column(ColumnType::Int)
            }],
        };
        let e = schema.validate().expect_err("an error").to_string();
        assert!(e.starts_with("schema.columns[0].categories"), "{e}");
    }
}
