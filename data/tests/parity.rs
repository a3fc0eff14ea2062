//! The quality bar: `train` matches scikit-learn on two datasets that ship with it
//! (breast cancer: logistic regression; diabetes: linear regression and ridge), on the
//! same split and preprocessing. `fixtures/reference.py` wrote the CSVs and
//! scikit-learn's figures (`fixtures/reference.json`); here the CSVs go through ingest's
//! reader into Parquet and through `train::fit`, and the metrics must be within 1
//! percentage point of accuracy (classification) and 2% of RMSE (regression).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jobfleet_data::ingest::{self, Format};
use jobfleet_data::manifest::{Algorithm, DatasetManifest, Mode};
use jobfleet_data::schema::{ColumnSpec, ColumnType, Schema};
use jobfleet_data::storage::Scratch;
use jobfleet_data::train::{self, TrainSpec};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixture("reference.json")).expect("reference.json");
    serde_json::from_str(&text).expect("reference.json is JSON")
}

/// The CSV as a one-file dataset: every column a float but the target.
fn dataset(csv: &str, target: &str, target_kind: ColumnType, data: &Scratch) -> DatasetManifest {
    let path = fixture(csv);
    let header = std::fs::read_to_string(&path).expect("fixture");
    let header = header.lines().next().expect("a header");
    let columns = header
        .split(',')
        .map(|name| ColumnSpec {
            name: name.into(),
            kind: if name == target {
                target_kind
            } else {
                ColumnType::Float
            },
            nullable: false,
            min: None,
            max: None,
            categories: None,
        })
        .collect();
    let schema = Schema { columns };
    let quarantine = Scratch::new("parity-quarantine.csv");
    let counts = ingest::read_source(
        &path,
        Format::Csv,
        &schema,
        65_536,
        data.path(),
        quarantine.path(),
        &tokio_util::sync::CancellationToken::new(),
    )
    .expect("the fixture ingests");
    assert_eq!(counts.rejected, 0, "{:?}", counts.reasons);
    DatasetManifest {
        dataset: csv.into(),
        version: 1,
        schema,
        files: vec![],
        rows: counts.rows,
        rejected: 0,
        fingerprint: String::new(),
        source: csv.into(),
        mode: Mode::Replace,
        job_id: String::new(),
        created_at_ms: 0,
        quarantine: None,
    }
}

fn spec(target: &str, algorithm: Algorithm) -> TrainSpec {
    serde_json::from_value(serde_json::json!({
        "model": "parity",
        "target": target,
        "algorithm": algorithm,
    }))
    .expect("a train spec")
}

/// A token nobody cancels.
fn never() -> tokio_util::sync::CancellationToken {
    tokio_util::sync::CancellationToken::new()
}

fn metric(m: &Value, name: &str) -> f64 {
    m[name].as_f64().unwrap_or_else(|| panic!("{name} in {m}"))
}

#[test]
fn logistic_regression_matches_scikit_learn_on_breast_cancer() {
    let reference = reference();
    let data = Scratch::new("parity-cancer.parquet");
    let manifest = dataset("breast_cancer.csv", "benign", ColumnType::Bool, &data);
    assert_eq!(manifest.rows, 569);
    let model = train::fit(
        &spec("benign", Algorithm::LogisticRegression),
        &manifest,
        &[data.path().to_path_buf()],
        &never(),
    )
    .expect("fit");
    let ours = &model.metrics;
    let theirs = &reference["breast_cancer"];
    eprintln!("jobfleet {ours}\nscikit-learn {theirs}");
    assert_eq!(model.rows_test, 114, "the split's size");
    for name in ["accuracy", "f1", "roc_auc"] {
        let gap = (metric(ours, name) - metric(theirs, name)).abs();
        assert!(
            gap <= 0.01,
            "{name}: jobfleet {ours}, scikit-learn {theirs}"
        );
    }
    let gap = (metric(ours, "log_loss") / metric(theirs, "log_loss") - 1.0).abs();
    assert!(
        gap <= 0.05,
        "log loss: jobfleet {ours}, scikit-learn {theirs}"
    );

    // Five folds, each held out once, as scikit-learn runs them on the same folds.
    let mut five: TrainSpec = spec("benign", Algorithm::LogisticRegression);
    five.folds = Some(5);
    let model = train::fit(&five, &manifest, &[data.path().to_path_buf()], &never()).expect("fit");
    let cv = model.cross_validation.expect("cross-validation");
    let theirs = metric(&reference["breast_cancer_5_fold"], "accuracy");
    let ours = metric(&cv["mean"], "accuracy");
    eprintln!("5-fold accuracy: jobfleet {ours}, scikit-learn {theirs}");
    assert_eq!(cv["per_fold"].as_array().map(Vec::len), Some(5), "{cv}");
    assert!(
        (ours - theirs).abs() <= 0.01,
        "jobfleet {cv}, scikit-learn {theirs}"
    );
}

#[test]
fn linear_models_match_scikit_learn_on_diabetes() {
    let reference = reference();
    let data = Scratch::new("parity-diabetes.parquet");
    let manifest = dataset("diabetes.csv", "progression", ColumnType::Float, &data);
    assert_eq!(manifest.rows, 442);
    let mut figures = BTreeMap::new();
    for (algorithm, key) in [
        (Algorithm::LinearRegression, "diabetes_linear_regression"),
        (Algorithm::Ridge, "diabetes_ridge"),
    ] {
        let model = train::fit(
            &spec("progression", algorithm),
            &manifest,
            &[data.path().to_path_buf()],
            &never(),
        )
        .expect("fit");
        let (ours, theirs) = (&model.metrics, &reference[key]);
        eprintln!("{key}: jobfleet {ours}\nscikit-learn {theirs}");
        let gap = (metric(ours, "rmse") / metric(theirs, "rmse") - 1.0).abs();
        assert!(
            gap <= 0.02,
            "{key} RMSE: jobfleet {ours}, scikit-learn {theirs}"
        );
        let gap = (metric(ours, "r2") - metric(theirs, "r2")).abs();
        assert!(
            gap <= 0.01,
            "{key} R²: jobfleet {ours}, scikit-learn {theirs}"
        );
        figures.insert(key, metric(ours, "rmse"));
    }
    // Ridge's penalty shows: its fit differs from least squares'.
    assert_ne!(
        figures["diabetes_linear_regression"],
        figures["diabetes_ridge"]
    );
}
