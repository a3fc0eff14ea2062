//! The data demo of `jobfleet dev`: the sample basketball game logs
//! (`jobfleet sample-data`) through a pipeline of the data kinds, `ingest` → `train` →
//! `predict`, under a fresh data directory, and the model's test metrics in the summary.

use std::path::PathBuf;

use jobfleet_common::pipeline::PipelineSpec;
use jobfleet_data::catalog::{self, Kind};
use jobfleet_data::manifest::ModelManifest;
use jobfleet_data::Storage;

use super::workload::QUEUE;
use crate::error::{Error, Result};

/// Rows of sample data the demo ingests.
pub const ROWS: usize = 2_000;
/// The demo's dataset.
pub const DATASET: &str = "dev-games";
/// The demo's model.
pub const MODEL: &str = "dev-win";
/// The demo's predictions, under the data directory.
pub const OUTPUT: &str = "predictions/dev-games.parquet";

/// A fresh data directory for one run of dev, under the system's temporary directory.
pub fn directory() -> PathBuf {
    std::env::temp_dir().join(format!("jobfleet-dev-data-{}", uuid::Uuid::now_v7()))
}

/// Writes the sample data under `dir/samples` and returns the demo pipeline.
pub fn prepare(dir: &std::path::Path) -> Result<PipelineSpec> {
    jobfleet_data::sample::write(&dir.join("samples"), ROWS, 7)?;
    let text = format!(
        r#"name = "dev-data"

[[steps]]
name = "ingest"
queue = "{QUEUE}"
kind = "ingest"
payload = {{ dataset = "{DATASET}", source = "samples/games.csv", schema_ref = "samples/games.schema.json", mode = "replace" }}

[[steps]]
name = "train"
queue = "{QUEUE}"
kind = "train"
payload = {{ model = "{MODEL}", target = "win", exclude = ["game_id", "player_id"], algorithm = "logistic_regression" }}

[[steps]]
name = "predict"
queue = "{QUEUE}"
kind = "predict"
payload = {{ output = "{OUTPUT}", id_column = "game_id" }}
"#
    );
    PipelineSpec::parse(&text).map_err(|e| Error::Task(format!("the demo pipeline: {e}")))
}

/// One line on what the pipeline made: the model's version and test metrics, where the
/// predictions are.
pub async fn report(dir: &std::path::Path, state: &str) -> String {
    if state != "completed" {
        return format!("{state} (data under {})", dir.display());
    }
    let summary = async {
        let storage = Storage::open(&dir.display().to_string())?;
        let (version, model): (u64, ModelManifest) =
            catalog::load(&storage, Kind::Model, "model", MODEL, None).await?;
        let metric = |name: &str| model.metrics[name].as_f64().unwrap_or(f64::NAN);
        Ok::<_, jobfleet_data::DataError>(format!(
            "completed: model {MODEL} v{version} on {} rows, test accuracy {:.3}, ROC AUC {:.3}; \
             predictions in {}",
            model.rows_train + model.rows_test,
            metric("accuracy"),
            metric("roc_auc"),
            dir.join(OUTPUT).display()
        ))
    }
    .await;
    summary.unwrap_or_else(|e| format!("completed, but its model cannot be read: {e}"))
}
