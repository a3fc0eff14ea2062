//! The end of a prediction: its parts merged, in order, into the output with the same
//! writer settings (so the bytes are an uninterrupted run's), published past the output
//! lock's fence with the summary beside it, then the checkpoints and parts deleted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::Schema as ArrowSchema;

use super::chunk::output_schema;
use super::pass::{Run, Summary};
use super::spec::lock_key;
use crate::error::{joined, DataError};
use crate::fencing;
use crate::model;
use crate::parquet_out;
use crate::storage::Scratch;

impl Run<'_> {
    /// The parts, in order, into `output`; then the summary beside it; then the parts go.
    pub(super) async fn merge(
        &self,
        chunks: usize,
        result: &serde_json::Value,
    ) -> Result<(), DataError> {
        let merged = Scratch::new("predict.parquet");
        let mut parts = Vec::with_capacity(chunks);
        for i in 0..chunks {
            let key = format!("{}/part-{i:06}.parquet", self.parts);
            parts.push(self.storage.local_copy_of(&key).await?);
        }
        let part_files: Vec<PathBuf> = parts.iter().map(|p| p.path().to_path_buf()).collect();
        let target = merged.path().to_path_buf();
        let schema = output_schema(&self.model, &self.input.schema, &self.id_column)?;
        let chunk_rows = self.chunk_rows;
        joined(
            tokio::task::spawn_blocking(move || {
                merge_files(&part_files, &target, schema, chunk_rows)
            })
            .await,
        )?;
        // A holder of the output's lock newer than this attempt's wrote first: stop.
        fencing::fence(self.ctx, &lock_key(&self.output, None), chunks as u64).await?;
        self.storage.upload(merged.path(), &self.output).await?;
        let summary = Summary {
            key: self.key.clone(),
            result: result.clone(),
        };
        self.storage.put_json(&self.summary, &summary).await?;
        self.delete_parts().await
    }

    /// Deletes the run's checkpoints, then its parts. The checkpoints first: a kill half
    /// way leaves parts to redo, never a checkpoint without its part.
    async fn delete_parts(&self) -> Result<(), DataError> {
        let marks: Vec<String> = self
            .storage
            .list(&self.parts)
            .await?
            .into_iter()
            .filter(|k| k.ends_with(".json"))
            .collect();
        for mark in &marks {
            self.storage.delete(mark).await?;
        }
        self.storage.delete_prefix(&self.parts).await
    }
}

/// The parts, in order, into one file.
fn merge_files(
    parts: &[PathBuf],
    out: &Path,
    schema: Arc<ArrowSchema>,
    chunk_rows: usize,
) -> Result<(), DataError> {
    let mut writer = parquet_out::create(out, schema, chunk_rows)?;
    for part in parts {
        for batch in model::reader(part, chunk_rows)? {
            writer.write(&batch?)?;
        }
    }
    writer.close()?;
    Ok(())
}
