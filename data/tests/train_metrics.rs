//! What `train` reports when it cannot measure everything: with `test_fraction` 0 every
//! labelled row trains, and the manifest says there are no held-out metrics and gives the
//! training split's, labelled as such; a metric the test rows cannot give (ROC AUC over a
//! one-row test split, R² over a constant one) is `null` with its reason beside it.

use jobfleet_data::ingest::{self, Format};
use jobfleet_data::manifest::{DatasetManifest, Mode, ModelManifest};
use jobfleet_data::sample::Numeric;
use jobfleet_data::schema::{ColumnSpec, ColumnType, Schema};
use jobfleet_data::storage::Scratch;
use jobfleet_data::train::{self, TrainSpec};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

fn manifest(schema: Schema, rows: u64) -> DatasetManifest {
    DatasetManifest {
        dataset: "d".into(),
        version: 1,
        schema,
        files: vec![],
        rows,
        rejected: 0,
        fingerprint: String::new(),
        source: "d".into(),
        mode: Mode::Replace,
        job_id: String::new(),
        created_at_ms: 0,
        quarantine: None,
    }
}

fn spec(payload: Value) -> TrainSpec {
    serde_json::from_value(payload).expect("a train spec")
}

fn fit(spec: &TrainSpec, data: &DatasetManifest, file: &Scratch) -> ModelManifest {
    train::fit(
        spec,
        data,
        &[file.path().to_path_buf()],
        &CancellationToken::new(),
    )
    .expect("the fit")
}

#[test]
fn test_fraction_0_trains_on_every_row_and_says_there_are_no_held_out_metrics() {
    let file = Scratch::new("every-row.parquet");
    let table = Numeric {
        features: 4,
        seed: 3,
    };
    table
        .write_parquet(file.path(), 2_000, 65_536)
        .expect("write the table");
    let data = manifest(table.schema(), 2_000);
    let payload = json!({"model": "m", "target": "label", "exclude": ["id"],
        "algorithm": "logistic_regression", "test_fraction": 0.0, "folds": 5});
    let model = fit(&spec(payload), &data, &file);

    assert_eq!((model.rows_train, model.rows_test), (2_000, 0));
    assert_eq!(model.metrics, Value::Null, "no held-out metrics");
    let why = &model.metrics_unavailable["metrics"];
    assert!(
        why.starts_with("test_fraction is 0: every labelled row was trained on"),
        "{why}"
    );
    let auc = model.training_metrics["roc_auc"].as_f64().unwrap_or(0.0);
    assert!(auc > 0.6, "training split's ROC AUC {auc}: {model:?}");
    // Cross-validation still holds each fold out in turn.
    let cv = model.cross_validation.as_ref().expect("cross-validation");
    assert!(cv["mean"]["accuracy"].as_f64().is_some(), "{cv}");

    // A manifest from before these fields reads as one without them.
    let mut old = serde_json::to_value(&model).expect("JSON");
    for key in ["training_metrics", "metrics_unavailable"] {
        old.as_object_mut().map(|o| o.remove(key));
    }
    let read: ModelManifest = serde_json::from_value(old).expect("an older manifest");
    assert_eq!(read.training_metrics, Value::Null);
    assert!(read.metrics_unavailable.is_empty());
}

#[test]
fn a_metric_a_one_row_test_split_cannot_give_is_null_with_its_reason() {
    let column = |name: &str, kind| ColumnSpec {
        name: name.into(),
        kind,
        nullable: false,
        min: None,
        max: None,
        categories: None,
    };
    let schema = Schema {
        columns: vec![
            column("x", ColumnType::Float),
            column("y", ColumnType::Bool),
            column("z", ColumnType::Float),
        ],
    };
    // Five rows, 0.2 held out: one test row, and both classes among the four others
    // whichever row it is.
    let csv = Scratch::new("one-row.csv");
    std::fs::write(
        csv.path(),
        "x,y,z\n0.1,true,1\n0.9,true,3\n0.2,false,2\n0.8,false,5\n0.5,true,4\n",
    )
    .expect("write the CSV");
    let file = Scratch::new("one-row.parquet");
    let quarantine = Scratch::new("one-row-quarantine.csv");
    let counts = ingest::read_source(
        csv.path(),
        Format::Csv,
        &schema,
        1_000,
        file.path(),
        quarantine.path(),
        &CancellationToken::new(),
    )
    .expect("the CSV ingests");
    assert_eq!(counts.rows, 5, "{:?}", counts.reasons);
    let data = manifest(schema, 5);

    let payload = json!({"model": "m", "target": "y", "features": ["x"],
        "algorithm": "logistic_regression", "test_fraction": 0.2});
    let model = fit(&spec(payload), &data, &file);
    assert_eq!(model.rows_test, 1);
    assert!(model.metrics["accuracy"].is_number(), "{}", model.metrics);
    assert_eq!(model.metrics["roc_auc"], Value::Null);
    let why = &model.metrics_unavailable["metrics.roc_auc"];
    assert!(why.contains("all 1 row(s) are of the"), "{why}");
    assert!(why.contains("needs rows of both"), "{why}");
    // Every null has its reason, and nothing else has one.
    for (name, value) in model.metrics.as_object().expect("an object") {
        let reason = model.metrics_unavailable.get(&format!("metrics.{name}"));
        assert_eq!(value.is_null(), reason.is_some(), "{name}: {model:?}");
    }
    assert!(model.training_metrics["roc_auc"].is_number());

    let payload = json!({"model": "m", "target": "z", "features": ["x"],
        "algorithm": "linear_regression", "test_fraction": 0.2});
    let model = fit(&spec(payload), &data, &file);
    assert_eq!(model.metrics["r2"], Value::Null);
    assert!(model.metrics["rmse"].is_number(), "{}", model.metrics);
    let why = &model.metrics_unavailable["metrics.r2"];
    assert!(why.contains("in all 1 row(s)"), "{why}");
}
