//! `train` honours cancellation during a fit: the fit checks its token between batches of
//! the read and before each model fit (held-out, then each fold), so a cancel lands within
//! one model fit, not after all of them.

use std::time::{Duration, Instant};

use jobfleet_data::manifest::{DatasetManifest, Mode};
use jobfleet_data::sample::Numeric;
use jobfleet_data::storage::Scratch;
use jobfleet_data::train::{self, TrainSpec};
use jobfleet_data::DataError;
use tokio_util::sync::CancellationToken;

const ROWS: u64 = 200_000;

/// A numeric dataset of `ROWS` rows in one Parquet file, and a 10-fold logistic spec.
fn setup(file: &Scratch) -> (DatasetManifest, TrainSpec) {
    let table = Numeric {
        features: 20,
        seed: 7,
    };
    table
        .write_parquet(file.path(), ROWS, 65_536)
        .expect("write the table");
    let manifest = DatasetManifest {
        dataset: "numeric".into(),
        version: 1,
        schema: table.schema(),
        files: vec![],
        rows: ROWS,
        rejected: 0,
        fingerprint: String::new(),
        source: "numeric".into(),
        mode: Mode::Replace,
        job_id: String::new(),
        created_at_ms: 0,
        quarantine: None,
    };
    let spec = serde_json::from_value(serde_json::json!({
        "model": "cancel",
        "target": "label",
        "exclude": ["id"],
        "algorithm": "logistic_regression",
        "folds": 10,
    }))
    .expect("a train spec");
    (manifest, spec)
}

#[test]
fn a_cancelled_fit_stops_within_one_model_fit() {
    let file = Scratch::new("cancel.parquet");
    let (manifest, spec) = setup(&file);
    let paths = [file.path().to_path_buf()];

    // Already cancelled: nothing is read.
    let cancel = CancellationToken::new();
    cancel.cancel();
    let began = Instant::now();
    let result = train::fit(&spec, &manifest, &paths, &cancel);
    assert!(matches!(result, Err(DataError::Cancelled)), "{result:?}");
    eprintln!("cancelled before: returned in {:?}", began.elapsed());

    // Cancelled during the fits: 11 model fits (held-out + 10 folds) would run; the fit
    // stops at the next check after the cancel.
    let cancel = CancellationToken::new();
    let canceller = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            cancel.cancel();
            Instant::now()
        })
    };
    let began = Instant::now();
    let result = train::fit(&spec, &manifest, &paths, &cancel);
    let ended = Instant::now();
    let cancelled_at = canceller.join().expect("the canceller");
    assert!(
        matches!(result, Err(DataError::Cancelled)),
        "a 10-fold fit of {ROWS} rows outlasts 300 ms and must stop: {result:?}"
    );
    eprintln!(
        "cancelled after {:?}: returned {:?} after the cancel",
        cancelled_at - began,
        ended - cancelled_at
    );
}
