//! The `ingest` payload: which dataset, which source in which format, which schema, and
//! how many bad rows to bear; checked as far as it can be without reading storage.

use serde::{Deserialize, Serialize};

use crate::catalog;
use crate::error::DataError;
use crate::manifest::Mode;
use crate::schema::Schema;
use jobfleet_worker::JobError;

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

    /// The fields that need no storage to check: names, one schema, the fraction.
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

    /// The source's format: the payload's, else from the source's extension.
    pub(super) fn format(&self) -> Result<Format, DataError> {
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
