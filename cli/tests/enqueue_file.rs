//! `jobfleet enqueue --file` against an in-process embedded backend: batches are published
//! whole, a bad line stops the run with its number, and nothing from its batch goes out.

use jobfleet::commands::enqueue::jsonl::{enqueue_file, BATCH};
use jobfleet::progress::Mode;
use jobfleet::Error;
use jobfleet_common::{Backends, Config, JobId};
use jobfleet_producer::Producer;

fn write_jobs(lines: &[String]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("jobfleet-enqueue-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("jobs.jsonl");
    std::fs::write(&path, lines.join("\n")).expect("write");
    path
}

fn job_line(id: JobId, priority: u8) -> String {
    format!(r#"{{"v":1,"id":"{id}","queue":"files","kind":"echo","priority":{priority}}}"#)
}

#[tokio::test]
async fn every_line_is_enqueued_and_blank_lines_are_skipped() {
    let backends = Backends::embedded();
    let config = Config::default();
    let producer = Producer::new(&backends, &config);
    let ids: Vec<JobId> = (0..BATCH + 20).map(|_| JobId::new()).collect();
    let mut lines: Vec<String> = ids.iter().map(|&id| job_line(id, 3)).collect();
    lines.insert(10, String::new());
    lines.insert(20, "   ".into());
    let path = write_jobs(&lines);
    let report = enqueue_file(&path, &producer, &config.limits, Mode::Hidden)
        .await
        .expect("ok");
    assert_eq!(report.enqueued, BATCH + 20);
    assert_eq!((report.duplicates, report.delayed), (0, 0));
    for id in [ids[0], ids[BATCH], ids[BATCH + 19]] {
        assert!(
            backends.store.record(id).await.expect("store").is_some(),
            "{id} recorded"
        );
    }
}

#[tokio::test]
async fn a_bad_line_names_its_number_and_holds_back_its_batch() {
    let backends = Backends::embedded();
    let config = Config::default();
    let producer = Producer::new(&backends, &config);
    let ids: Vec<JobId> = (0..BATCH + 10).map(|_| JobId::new()).collect();
    let mut lines: Vec<String> = ids.iter().map(|&id| job_line(id, 3)).collect();
    // Line BATCH + 5 (from 1) of the file is in the second batch, with an invalid priority.
    lines[BATCH + 4] = job_line(ids[BATCH + 4], 12);
    let path = write_jobs(&lines);
    let e = enqueue_file(&path, &producer, &config.limits, Mode::Hidden)
        .await
        .expect_err("bad");
    match &e {
        Error::BadLine {
            line,
            reason,
            published,
        } => {
            assert_eq!(*line, BATCH + 5);
            assert!(reason.contains("priority"), "{reason}");
            assert_eq!(*published, BATCH);
        }
        other => panic!("expected BadLine, got {other}"),
    }
    assert!(backends
        .store
        .record(ids[BATCH - 1])
        .await
        .expect("store")
        .is_some());
    // The good lines of the bad batch, before and after the bad one, were not published.
    for id in [ids[BATCH], ids[BATCH + 9]] {
        assert!(
            backends.store.record(id).await.expect("store").is_none(),
            "{id} held back"
        );
    }
}
