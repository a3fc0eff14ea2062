//! `jobfleet bench-data`: the data kinds measured as a worker runs them, beside Python's
//! data stack on the same files in the same run; one JSON line on stdout.
//!
//! 1. **ingest**: a numeric CSV (`--ingest-rows` × `--features` floats, an id and a
//!    label) through the `ingest` kind, which checks every row against the schema and
//!    writes Parquet; the baseline is pyarrow reading the same CSV and writing Parquet
//!    (Snappy), with no checks.
//! 2. **train**: logistic regression on that dataset through the `train` kind (reading,
//!    split, standardising, fitting, test metrics); the baseline is scikit-learn's
//!    `StandardScaler` + `LogisticRegression(max_iter=1000)` fitted on the same training
//!    rows (reading and splitting not timed).
//! 3. **predict**: the model over a `--predict-rows` Parquet file through the `predict`
//!    kind, and over a tenth of it first: the process's peak RSS during each (VmHWM,
//!    reset in between through `/proc/self/clear_refs`) shows whether memory grows with
//!    the input.
//!
//! Each kind runs as a job on an embedded fleet in this process (as `jobfleet run`), so
//! the figures include the queue's own overhead, a few milliseconds. The baseline needs
//! `--python` with pyarrow, numpy and scikit-learn; `--skip-baseline` leaves it out.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use jobfleet_common::store::JobState;
use jobfleet_common::{Backends, Config, Job};
use jobfleet_data::sample::Numeric;
use serde_json::{json, Value};

use crate::commands::run::run_job_on;
use crate::error::{Error, Result};

/// Flags of `jobfleet bench-data`.
#[derive(Clone, Debug, Args)]
pub struct BenchDataArgs {
    /// Rows of the CSV to ingest (and train on).
    #[arg(long, default_value_t = 1_000_000)]
    pub ingest_rows: u64,
    /// Float feature columns.
    #[arg(long, default_value_t = 20)]
    pub features: usize,
    /// Rows to predict.
    #[arg(long, default_value_t = 10_000_000)]
    pub predict_rows: u64,
    /// The Python with pyarrow, numpy and scikit-learn for the baseline.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Measure jobfleet only.
    #[arg(long)]
    pub skip_baseline: bool,
}

/// The baseline, as a Python script: `script CSV PARQUET FEATURES TEST_FRACTION SEED`.
const BASELINE: &str = r#"
import json, math, sys, time
import numpy as np
import pyarrow.csv as pc
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

csv, out, features, fraction, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
t = time.perf_counter()
table = pc.read_csv(csv)
pq.write_table(table, out, compression="snappy")
ingest = time.perf_counter() - t

M = (1 << 64) - 1
def sm(z):
    z = (z + 0x9E3779B97F4A7C15) & M
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return z ^ (z >> 31)
n = table.num_rows
order = sorted(range(n), key=lambda i: (sm(seed ^ sm(i)), i))
train = np.sort(np.array(order[math.ceil(n * fraction):]))
x = np.column_stack([table.column("x%d" % i).to_numpy() for i in range(features)])[train]
y = table.column("label").to_numpy(zero_copy_only=False)[train]
t = time.perf_counter()
scaler = StandardScaler().fit(x)
LogisticRegression(max_iter=1000).fit(scaler.transform(x), y)
fit = time.perf_counter() - t
print(json.dumps({"ingest_s": ingest, "train_s": fit}))
"#;

/// Runs the benchmark and prints its line.
pub async fn run(args: BenchDataArgs, mut config: Config) -> Result<()> {
    super::bench::warn_if_unoptimised("bench-data");
    if args.ingest_rows < 10 || args.predict_rows < 10 || args.features == 0 {
        return Err(Error::Usage(
            "--ingest-rows and --predict-rows must be at least 10, --features at least 1".into(),
        ));
    }
    let dir =
        Scratch(std::env::temp_dir().join(format!("jobfleet-bench-data-{}", uuid::Uuid::now_v7())));
    std::fs::create_dir_all(&dir.0)
        .map_err(|e| Error::Task(format!("{}: {e}", dir.0.display())))?;
    config.data.url = dir.0.join("data").display().to_string();
    let chunk_rows = config.data.chunk_rows;
    let table = Numeric {
        features: args.features,
        seed: 1,
    };
    let (csv, schema) = (dir.0.join("bench.csv"), dir.0.join("bench.schema.json"));
    let (big, small) = (
        dir.0.join("predict.parquet"),
        dir.0.join("predict-tenth.parquet"),
    );
    eprintln!("bench-data: writing inputs under {}", dir.0.display());
    let files = (csv.clone(), schema.clone(), big.clone(), small.clone());
    let (ingest_rows, predict_rows) = (args.ingest_rows, args.predict_rows);
    tokio::task::spawn_blocking(
        move || -> std::result::Result<(), jobfleet_data::DataError> {
            let (csv, schema_path, big, small) = files;
            table.write_csv(&csv, ingest_rows)?;
            let text = serde_json::to_vec(&table.schema()).unwrap_or_default();
            std::fs::write(&schema_path, text)
                .map_err(|e| jobfleet_data::DataError::Io(e.to_string()))?;
            table.write_parquet(&small, predict_rows / 10, chunk_rows)?;
            table.write_parquet(&big, predict_rows, chunk_rows)
        },
    )
    .await
    .map_err(|e| Error::Task(format!("writing the inputs: {e}")))??;

    let registry = Arc::new(crate::kinds::registry(&config)?);
    let job = |kind: &str, payload: Value| {
        Job::new("run", kind, Bytes::from(payload.to_string()))
            .with_max_attempts(1)
            .with_timeout_ms(3_600_000)
    };
    let run = |job: Job| {
        let (registry, config) = (registry.clone(), config.clone());
        async move {
            let began = Instant::now();
            let record = run_job_on(Backends::embedded(), &registry, job, config).await?;
            if record.state != JobState::Completed {
                return Err(Error::Task(format!(
                    "{} ended {}: {:?}",
                    record.kind, record.state, record.last_error
                )));
            }
            Ok((began.elapsed(), record.result.unwrap_or(Value::Null)))
        }
    };
    let path = |p: &Path| p.display().to_string();
    let (ingest_took, _) = run(job(
        "ingest",
        json!({"dataset": "bench", "source": path(&csv), "schema_ref": path(&schema)}),
    ))
    .await?;
    let (train_took, trained) = run(job(
        "train",
        json!({"model": "bench", "dataset": "bench", "target": "label", "exclude": ["id"],
               "algorithm": "logistic_regression"}),
    ))
    .await?;
    let predict = |input: &Path, output: &str| {
        job(
            "predict",
            json!({"model": "bench", "input_path": path(input), "output": output, "id_column": "id"}),
        )
    };
    reset_peak_rss();
    run(predict(&small, "predictions/tenth.parquet")).await?;
    let peak_tenth = peak_rss_mb();
    reset_peak_rss();
    let (predict_took, _) = run(predict(&big, "predictions/all.parquet")).await?;
    let peak_all = peak_rss_mb();

    let baseline = if args.skip_baseline {
        None
    } else {
        Some(baseline(&args, &csv, &dir.0.join("pyarrow.parquet")).await?)
    };
    let per_s = |rows: u64, took: Duration| rows as f64 / took.as_secs_f64().max(1e-9);
    let ingest_per_s = per_s(args.ingest_rows, ingest_took);
    let pyarrow_per_s = baseline
        .as_ref()
        .map(|b| per_s(args.ingest_rows, Duration::from_secs_f64(b.0)));
    let sklearn_s = baseline.as_ref().map(|b| b.1);
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let report = json!({
        "ingest_rows": args.ingest_rows,
        "features": args.features,
        "ingest_rows_per_s": round(ingest_per_s),
        "pyarrow_rows_per_s": pyarrow_per_s.map(round),
        "ratio_ingest": pyarrow_per_s.map(|b| round(ingest_per_s / b)),
        "train_rows": trained["rows_train"],
        "train_s": round(train_took.as_secs_f64()),
        "sklearn_train_s": sklearn_s.map(round),
        "ratio_train_time": sklearn_s.map(|b| round(train_took.as_secs_f64() / b)),
        "test_accuracy": trained["metrics"]["accuracy"],
        "predict_rows": args.predict_rows,
        "predict_rows_per_s": round(per_s(args.predict_rows, predict_took)),
        "chunk_rows": chunk_rows,
        "peak_rss_mb_predict_tenth": peak_tenth.map(round),
        "peak_rss_mb_predict_all": peak_all.map(round),
    });
    println!("{report}");
    Ok(())
}

/// The baseline's (ingest seconds, train seconds).
async fn baseline(args: &BenchDataArgs, csv: &Path, out: &Path) -> Result<(f64, f64)> {
    let output = tokio::process::Command::new(&args.python)
        .arg("-c")
        .arg(BASELINE)
        .arg(csv)
        .arg(out)
        .arg(args.features.to_string())
        .arg("0.2")
        .arg("42")
        .output()
        .await
        .map_err(|e| Error::Usage(format!("--python {}: {e}", args.python)))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let parsed: Option<Value> = text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok());
    match parsed {
        Some(v) if output.status.success() => Ok((
            v["ingest_s"].as_f64().unwrap_or(f64::NAN),
            v["train_s"].as_f64().unwrap_or(f64::NAN),
        )),
        _ => {
            Err(Error::Usage(format!(
            "the baseline needs {} with pyarrow, numpy and scikit-learn (or --skip-baseline): {}",
            args.python,
            String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")
        )))
        }
    }
}

/// Resets this process's peak RSS (Linux; elsewhere nothing happens).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's peak RSS since the last reset, in MiB (Linux).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// The bench's directory, removed at the end.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
