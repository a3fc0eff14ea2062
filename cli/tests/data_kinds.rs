#![cfg(feature = "data")]
//! The data kinds as `jobfleet run` runs them (a scheduler and a worker in this process on
//! the embedded backend, data under a fresh directory): the sample game logs through
//! ingest, train and predict; append and replace; the quarantine and its threshold;
//! payload errors naming the field (a misspelt one fails a queued job once, without
//! retries, and is a usage error for `jobfleet run`); training on every row; a
//! redelivered ingest publishing nothing twice; and a stale lock holder refused by the
//! registry's fence.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use jobfleet::commands::run::run_job_on;
use jobfleet_common::job::ErrorKind;
use jobfleet_common::store::{JobRecord, JobState};
use jobfleet_common::{Backends, Config, Job};
use jobfleet_data::catalog::{self, Kind};
use jobfleet_data::{sample, Storage};
use serde_json::{json, Value};

/// A data directory removed when the test ends, pass or fail.
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("jobfleet-data-test-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("create the data directory");
        Self(dir)
    }

    fn config(&self) -> Config {
        let mut config = Config::default();
        config.data.url = self.0.display().to_string();
        config.data.chunk_rows = 1_000;
        config
    }

    fn storage(&self) -> Storage {
        Storage::open(&self.0.display().to_string()).expect("open the data directory")
    }

    fn path(&self, key: &str) -> PathBuf {
        self.0.join(key)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs one job of `kind` with `payload` to its end on `backends`.
async fn run_on(backends: Backends, dir: &DataDir, job: Job) -> JobRecord {
    let config = dir.config();
    let registry = Arc::new(jobfleet::kinds::registry(&config).expect("the data kinds start"));
    run_job_on(backends, &registry, job, config)
        .await
        .expect("the job runs to an end")
}

fn job(kind: &str, payload: &Value) -> Job {
    Job::new("run", kind, Bytes::from(payload.to_string()))
        .with_max_attempts(1)
        .with_timeout_ms(120_000)
}

async fn run(dir: &DataDir, kind: &str, payload: Value) -> JobRecord {
    run_on(Backends::embedded(), dir, job(kind, &payload)).await
}

/// The result of a job that must have completed.
fn completed(record: &JobRecord) -> &Value {
    assert_eq!(
        record.state,
        JobState::Completed,
        "{} ended {}: {:?}",
        record.kind,
        record.state,
        record.last_error
    );
    record.result.as_ref().expect("a result")
}

/// The error of a job that must have failed.
fn failed(record: &JobRecord) -> String {
    assert_eq!(record.state, JobState::Dead, "{record:?}");
    record
        .last_error
        .as_ref()
        .expect("an error")
        .message
        .clone()
}

fn ingest_payload(dir: &Path, dataset: &str, mode: &str) -> Value {
    json!({
        "dataset": dataset,
        "source": dir.join("samples/games.csv").display().to_string(),
        "schema_ref": "samples/games.schema.json",
        "mode": mode,
    })
}

fn parquet_rows(path: &Path) -> (usize, Vec<String>) {
    let mut rows = 0;
    let mut columns = Vec::new();
    for batch in jobfleet_data::model::reader(path, 4096).expect("a Parquet file") {
        let batch = batch.expect("a batch");
        rows += batch.num_rows();
        columns = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
    }
    (rows, columns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_game_logs_go_through_ingest_train_and_predict() {
    let dir = DataDir::new();
    let files = sample::write(&dir.path("samples"), 3_000, 7).expect("sample data");
    assert!(files.broken > 0, "the sample has broken rows: {files:?}");

    let ingested = run(&dir, "ingest", ingest_payload(&dir.0, "games", "append")).await;
    let result = completed(&ingested);
    let (rows, rejected) = (result["rows"].as_u64(), result["rejected"].as_u64());
    assert_eq!(result["version"], 1, "{result}");
    assert_eq!(
        rows.zip(rejected).map(|(r, j)| r + j),
        Some(3_000),
        "{result}"
    );
    assert!(
        rejected.unwrap_or(0) > 0,
        "broken rows are rejected: {result}"
    );
    let quarantine = result["quarantine"].as_str().expect("a quarantine key");
    let text = std::fs::read_to_string(dir.path(quarantine)).expect("the quarantine file");
    assert!(text.starts_with("row,column,reason,as_read\n"), "{text}");
    assert_eq!(
        text.lines().count() as u64 - 1,
        rejected.unwrap_or(0),
        "one line per rejected row:\n{text}"
    );
    assert!(
        text.contains("outside")
            || text.contains("not a whole number")
            || text.contains("categories")
            || text.contains("empty"),
        "reasons say what was wrong:\n{text}"
    );

    let trained = run(
        &dir,
        "train",
        json!({
            "model": "win",
            "dataset": "games",
            "target": "win",
            "exclude": ["game_id", "player_id"],
            "algorithm": "logistic_regression",
        }),
    )
    .await;
    let result = completed(&trained);
    assert_eq!(result["version"], 1, "{result}");
    assert_eq!(result["dataset_version"], 1, "{result}");
    // The labels come from a logistic model of the features: a fitted model must find
    // some of it (a coin would score 0.5).
    let auc = result["metrics"]["roc_auc"].as_f64().unwrap_or(0.0);
    assert!(auc > 0.6, "ROC AUC {auc}: {result}");
    let (_, model): (u64, jobfleet_data::manifest::ModelManifest) =
        catalog::load(&dir.storage(), Kind::Model, "model", "win", None)
            .await
            .expect("the model is in the registry");
    assert!(model.fence >= 1, "the model records its fencing token");
    assert_eq!(model.classes, Some(vec!["false".into(), "true".into()]));

    let predicted = run(
        &dir,
        "predict",
        json!({ "model": "win", "output": "predictions/games.parquet", "id_column": "game_id" }),
    )
    .await;
    let result = completed(&predicted);
    assert_eq!(result["rows"].as_u64(), rows, "{result}");
    assert_eq!(result["errors"], 0, "{result}");
    assert!(
        result["chunks"].as_u64().unwrap_or(0) >= 3,
        "1,000-row chunks: {result}"
    );
    let (out_rows, columns) = parquet_rows(&dir.path("predictions/games.parquet"));
    assert_eq!(Some(out_rows as u64), rows);
    assert_eq!(columns, ["game_id", "prediction", "probability", "error"]);
    assert!(
        !dir.path("predictions/games.parquet.parts")
            .join(predicted.id.to_string())
            .exists(),
        "the checkpoints are removed once merged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_adds_rows_and_replace_starts_over() {
    let dir = DataDir::new();
    sample::write(&dir.path("samples"), 500, 3).expect("sample data");
    let first = run(&dir, "ingest", ingest_payload(&dir.0, "g", "append")).await;
    let rows = completed(&first)["rows"].as_u64().expect("rows");
    let second = run(&dir, "ingest", ingest_payload(&dir.0, "g", "append")).await;
    let second = completed(&second);
    assert_eq!(
        (second["version"].as_u64(), second["rows"].as_u64()),
        (Some(2), Some(2 * rows))
    );
    let third = run(&dir, "ingest", ingest_payload(&dir.0, "g", "replace")).await;
    let third = completed(&third);
    assert_eq!(
        (third["version"].as_u64(), third["rows"].as_u64()),
        (Some(3), Some(rows))
    );
    assert_ne!(second["fingerprint"], third["fingerprint"]);
    assert_eq!(
        catalog::versions(&dir.storage(), Kind::Dataset, "g")
            .await
            .expect("versions"),
        vec![1, 2, 3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_bad_rows_fail_the_ingest_and_publish_nothing() {
    let dir = DataDir::new();
    std::fs::create_dir_all(dir.path("in")).expect("dir");
    let mut csv = String::from("id,score\n");
    for i in 0..100 {
        if i % 4 == 0 {
            csv.push_str(&format!("{i},lots\n"));
        } else {
            csv.push_str(&format!("{i},{i}.5\n"));
        }
    }
    std::fs::write(dir.path("in/scores.csv"), csv).expect("write");
    let schema = json!({"columns": [
        {"name": "id", "type": "int"},
        {"name": "score", "type": "float", "min": 0},
    ]});
    let payload = json!({"dataset": "scores", "source": "in/scores.csv", "schema": schema});
    let error = failed(&run(&dir, "ingest", payload.clone()).await);
    assert!(error.contains("25 of 100 rows rejected"), "{error}");
    assert!(
        error.contains("row 1: score \"lots\" is not a number"),
        "{error}"
    );
    // The quarantine file is named where a person can open it: its absolute path.
    let (_, quarantined) = error.rsplit_once("; all in ").expect("where the rows are");
    let quarantined = Path::new(quarantined);
    assert!(quarantined.is_absolute(), "{error}");
    assert!(quarantined.starts_with(&dir.0), "{error}");
    let text = std::fs::read_to_string(quarantined).expect("the quarantine file opens");
    assert_eq!(
        text.lines().count(),
        26,
        "a header and the 25 rows:\n{text}"
    );
    assert!(catalog::versions(&dir.storage(), Kind::Dataset, "scores")
        .await
        .expect("versions")
        .is_empty());
    // Allowed a third, the same file publishes its 75 good rows.
    let mut lenient = payload;
    lenient["max_rejected_fraction"] = json!(0.3);
    let result = run(&dir, "ingest", lenient).await;
    let result = completed(&result);
    assert_eq!(
        (result["rows"].as_u64(), result["rejected"].as_u64()),
        (Some(75), Some(25))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_fail_naming_the_field() {
    let dir = DataDir::new();
    let cases = [
        (
            "ingest",
            json!({"dataset": "d", "source": "x.csv"}),
            "schema:",
        ),
        (
            "ingest",
            json!({"dataset": "../d", "source": "x.csv", "schema": {"columns": []}}),
            "dataset:",
        ),
        (
            "ingest",
            json!({"dataset": "d", "source": "nope.csv", "schema": {"columns": [{"name": "a", "type": "int"}]}}),
            "source: \"nope.csv\": no such file",
        ),
        (
            "ingest",
            json!({"dataset": "d", "source": "x.csv", "schema": {"columns": [{"name": "a", "type": "date"}]}}),
            "payload is not the expected JSON",
        ),
        (
            "train",
            json!({"model": "m", "dataset": "d", "target": "t", "algorithm": "ridge", "params": {"c": 1}}),
            "params.c:",
        ),
        (
            "train",
            json!({"model": "m", "dataset": "d", "target": "t", "algorithm": "ridge"}),
            "dataset: \"d\" has no published version",
        ),
        (
            "predict",
            json!({"model": "m", "output": "/etc/passwd", "id_column": "id"}),
            "output:",
        ),
    ];
    for (kind, payload, expected) in cases {
        let error = failed(&run(&dir, kind, payload.clone()).await);
        assert!(error.contains(expected), "{kind} {payload}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelt_payload_field_fails_a_queued_job_once_without_retries() {
    let dir = DataDir::new();
    let train = json!({"model": "m", "dataset": "d", "target": "t", "algorithm": "ridge"});
    let mut top = train.clone();
    top["aplha"] = json!(2);
    let mut param = train;
    param["params"] = json!({"aplha": 2});
    for (payload, names) in [(top, "unknown field `aplha`"), (param, "params.aplha:")] {
        let queued = job("train", &payload).with_max_attempts(3);
        let record = run_on(Backends::embedded(), &dir, queued).await;
        let error = failed(&record);
        assert!(error.contains(names), "{payload}: {error}");
        assert_eq!(record.attempt, 1, "no retry: {record:?}");
        let kind = record.last_error.as_ref().map(|e| e.kind);
        assert_eq!(kind, Some(ErrorKind::Permanent), "{record:?}");
    }
}

#[test]
fn jobfleet_run_refuses_a_misspelt_field_as_a_usage_error() {
    let dir = DataDir::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jobfleet"))
        .args(["run", "train", "--payload"])
        .arg(r#"{"model":"m","dataset":"d","target":"t","algorithm":"ridge","aplha":2}"#)
        .env_remove("JOBFLEET_CONFIG")
        .env_remove("RUST_LOG")
        .env("JOBFLEET_DATA__URL", dir.0.display().to_string())
        .output()
        .expect("run jobfleet");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(stderr.lines().count(), 1, "one line:\n{stderr}");
    assert!(
        stderr.starts_with("error: the train payload is wrong, nothing ran: "),
        "{stderr}"
    );
    assert!(stderr.contains("unknown field `aplha`"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_with_test_fraction_0_fits_every_row_and_labels_its_metrics() {
    let dir = DataDir::new();
    sample::write(&dir.path("samples"), 500, 11).expect("sample data");
    let ingested = run(&dir, "ingest", ingest_payload(&dir.0, "all", "append")).await;
    let rows = completed(&ingested)["rows"].as_u64().expect("rows");
    let payload = json!({"model": "all", "dataset": "all", "target": "win",
        "exclude": ["game_id", "player_id"], "algorithm": "logistic_regression",
        "test_fraction": 0});
    let trained = run(&dir, "train", payload).await;
    let result = completed(&trained);
    assert_eq!(result["rows_train"].as_u64(), Some(rows), "{result}");
    assert_eq!(result["rows_test"], 0, "{result}");
    assert_eq!(
        result["metrics"],
        Value::Null,
        "no held-out metrics: {result}"
    );
    let why = result["metrics_unavailable"]["metrics"]
        .as_str()
        .unwrap_or("");
    assert!(why.contains("none held out"), "{result}");
    assert!(
        result["training_metrics"]["roc_auc"].is_number(),
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_ingest_returns_its_version_instead_of_publishing_again() {
    let dir = DataDir::new();
    sample::write(&dir.path("samples"), 300, 5).expect("sample data");
    let first = job("ingest", &ingest_payload(&dir.0, "r", "append"));
    let id = first.id;
    let done = run_on(Backends::embedded(), &dir, first.clone()).await;
    assert_eq!(completed(&done)["version"], 1);
    // The same job again on a store that never saw it complete: what a redelivery after a
    // worker died between publishing and recording the completion looks like.
    let again = run_on(Backends::embedded(), &dir, first).await;
    assert_eq!(again.id, id);
    assert_eq!(completed(&again), completed(&done));
    assert_eq!(
        catalog::versions(&dir.storage(), Kind::Dataset, "r")
            .await
            .expect("versions"),
        vec![1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_lock_holder_cannot_publish_a_model() {
    let dir = DataDir::new();
    sample::write(&dir.path("samples"), 300, 5).expect("sample data");
    completed(&run(&dir, "ingest", ingest_payload(&dir.0, "s", "append")).await);
    let backends = Backends::embedded();
    // A newer holder of `model:m` (token 1000) published already; this store's next lock
    // token is far below.
    assert!(backends
        .store
        .fenced_write("data:model:m", 1_000, Bytes::from_static(b"1"))
        .await
        .expect("fenced write"));
    let payload = json!({"model": "m", "dataset": "s", "target": "win",
        "exclude": ["game_id", "player_id"], "algorithm": "logistic_regression"});
    let error = failed(&run_on(backends, &dir, job("train", &payload)).await);
    assert!(
        error.contains("a newer holder of \"model:m\" published first"),
        "{error}"
    );
    assert!(catalog::versions(&dir.storage(), Kind::Model, "m")
        .await
        .expect("versions")
        .is_empty());
}

#[test]
fn bench_data_prints_one_json_line_with_every_figure() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jobfleet"))
        .args([
            "bench-data",
            "--ingest-rows",
            "2000",
            "--features",
            "4",
            "--predict-rows",
            "5000",
            "--skip-baseline",
        ])
        .env_remove("JOBFLEET_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run jobfleet bench-data");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line:\n{stdout}");
    let report: Value = serde_json::from_str(lines[0]).expect("JSON");
    for key in ["ingest_rows_per_s", "train_s", "predict_rows_per_s"] {
        assert!(
            report[key].as_f64().is_some_and(|v| v > 0.0),
            "{key} in {report}"
        );
    }
    assert_eq!(report["ingest_rows"], 2000, "{report}");
    assert_eq!(report["train_rows"], 1600, "{report}");
    // Without the baseline its figures are null, not made up.
    assert!(report["pyarrow_rows_per_s"].is_null(), "{report}");
    assert!(report["ratio_train_time"].is_null(), "{report}");
}
