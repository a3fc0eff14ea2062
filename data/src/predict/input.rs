//! What a prediction reads: a dataset version (the payload's `input`, else the model's
//! training dataset) or a Parquet file (`input_path`), as local files with a schema and
//! a row count.

use arrow_schema::{DataType, Field};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::spec::PredictSpec;
use crate::catalog::{self, Kind};
use crate::error::DataError;
use crate::manifest::{DatasetManifest, ModelManifest};
use crate::schema::{ColumnSpec, ColumnType, Schema};
use crate::storage::{self, LocalCopy, Storage};

/// The input: its schema, files and row count.
pub(super) struct Input {
    /// Its columns.
    pub(super) schema: Schema,
    /// Local files: a bucket's objects are downloaded for the run.
    pub(super) files: Vec<LocalCopy>,
    /// Rows in all files.
    pub(super) rows: u64,
    /// For people and the run key: `games v3`, or the file.
    pub(super) name: String,
    /// The dataset's name (empty for a file).
    pub(super) dataset: String,
}

impl Input {
    /// `id_column` is one of the input's columns.
    pub(super) fn check_id_column(&self, id_column: &str) -> Result<(), DataError> {
        if self.schema.index(id_column).is_some() {
            return Ok(());
        }
        Err(DataError::invalid(
            "id_column",
            format!("{id_column:?} is not a column of {}", self.name),
        ))
    }
}

/// The input and, for a dataset, the version resolved.
pub(super) async fn resolve(
    storage: &Storage,
    spec: &PredictSpec,
    model: &ModelManifest,
) -> Result<(Input, Option<u64>), DataError> {
    match &spec.input_path {
        Some(path) => Ok((from_file(storage, path).await?, None)),
        None => {
            let (input, version) = from_dataset(storage, spec, model).await?;
            Ok((input, Some(version)))
        }
    }
}

/// The Parquet file `path` names, its columns read from its schema.
async fn from_file(storage: &Storage, path: &str) -> Result<Input, DataError> {
    let file = storage::resolve(storage, "input_path", path).await?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(file.path())
            .map_err(|e| DataError::invalid("input_path", e.to_string()))?,
    )
    .map_err(|e| DataError::invalid("input_path", format!("not Parquet: {e}")))?;
    let rows = u64::try_from(reader.metadata().file_metadata().num_rows()).unwrap_or(0);
    let columns = reader
        .schema()
        .fields()
        .iter()
        .map(|f| column_of(f))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Input {
        schema: Schema { columns },
        files: vec![file],
        rows,
        name: path.to_owned(),
        dataset: String::new(),
    })
}

/// A Parquet file's column as a nullable column of the types predict reads.
fn column_of(field: &Field) -> Result<ColumnSpec, DataError> {
    let kind = match field.data_type() {
        DataType::Int64 => ColumnType::Int,
        DataType::Float64 => ColumnType::Float,
        DataType::Boolean => ColumnType::Bool,
        DataType::Utf8 => ColumnType::String,
        other => {
            return Err(DataError::invalid(
                "input_path",
                format!(
                    "column {:?} is {other}; predict reads int64, float64, boolean and utf8 \
                     (ingest the file to convert it)",
                    field.name()
                ),
            ))
        }
    };
    Ok(ColumnSpec {
        name: field.name().clone(),
        kind,
        nullable: true,
        min: None,
        max: None,
        categories: None,
    })
}

/// The dataset version the payload names (latest when it names none), its files copied
/// locally.
async fn from_dataset(
    storage: &Storage,
    spec: &PredictSpec,
    model: &ModelManifest,
) -> Result<(Input, u64), DataError> {
    let name = spec.input.clone().unwrap_or_else(|| model.dataset.clone());
    catalog::check_name("input", &name)?;
    let field = if spec.input_version.is_some() {
        "input_version"
    } else {
        "input"
    };
    let (version, manifest): (u64, DatasetManifest) =
        catalog::load(storage, Kind::Dataset, field, &name, spec.input_version).await?;
    let mut files = Vec::with_capacity(manifest.files.len());
    for file in &manifest.files {
        files.push(storage.local_copy_of(&file.key).await?);
    }
    let input = Input {
        files,
        schema: manifest.schema,
        rows: manifest.rows,
        name: format!("{name} v{version}"),
        dataset: name,
    };
    Ok((input, version))
}
