//! Issue 11, item 6: `jobfleet enqueue --file` cut off from RabbitMQ part way through the
//! file. The error says which lines were not confirmed and how many jobs before them
//! were; no job is left recorded `pending` that nothing will move; running the same file
//! again enqueues every job (same ids, so none would run twice).

use std::time::Duration;

use jobfleet::commands::enqueue::jsonl::{enqueue_file, BATCH};
use jobfleet::progress::Mode;
use jobfleet::Error;
use jobfleet_common::codec::{self, Format};
use jobfleet_common::store::JobState;
use jobfleet_common::{Config, Job};
use jobfleet_producer::Producer;
use jobfleet_testkit::{fast_config, unique, wait_for, BackendFactory};
use jobfleet_testkit::{RabbitRedis, HOW_TO_START};
use jobfleet_tests::proxy::Proxy;

/// Eight batches: the cut lands inside the file.
const JOBS: usize = 8 * BATCH;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_cut_off_part_way_says_what_was_confirmed_and_leaves_no_pending_record() {
    jobfleet_testkit::init_tracing();
    let queue = unique("q");
    let mut config = fast_config(&queue);
    RabbitRedis.configure(&mut config);
    let jobs: Vec<Job> = (0..JOBS).map(|_| Job::new(&queue, "echo", "{}")).collect();
    let dir = std::env::temp_dir().join(&config.namespace);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("jobs.jsonl");
    let text: Vec<String> = jobs
        .iter()
        .map(|j| String::from_utf8(codec::encode(j, Format::Json).to_vec()).expect("utf-8"))
        .collect();
    std::fs::write(&path, text.join("\n")).expect("write the file");

    let direct = jobfleet_connect::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}: {HOW_TO_START}"));
    let proxy = Proxy::for_url(config.broker.url())
        .await
        .expect("start the AMQP proxy");
    let proxied = Config {
        broker: proxy.broker(&config.broker),
        ..config.clone()
    };
    let producer = Producer::connect(&proxied)
        .await
        .expect("connect through the proxy");
    let limits = config.limits.clone();
    let file = path.clone();
    let run = tokio::spawn(async move {
        let out = enqueue_file(&file, &producer, &limits, Mode::Hidden).await;
        (out, producer)
    });
    // The third batch is recorded (and being published): cut the broker off for good.
    let first = jobs[2 * BATCH].id;
    let store = direct.store.clone();
    assert!(
        wait_for(Duration::from_secs(15), || {
            let store = store.clone();
            async move { store.record(first).await.ok().flatten().is_some() }
        })
        .await,
        "the third batch is recorded"
    );
    // One step: stop listening and drop every connection. Resetting the connections
    // first left a window in which the producer's reconnect could be accepted and then
    // cut mid-handshake, which costs a 10 s connect timeout per retry (seen once in a
    // loaded CI run, past this test's 60 s).
    proxy.close();

    let (out, producer) = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the enqueue gives up within 60 s")
        .expect("the enqueue task");
    producer.close().await;
    let (confirmed, lines) = match out {
        Err(Error::BatchNotConfirmed {
            confirmed, lines, ..
        }) => (confirmed, lines),
        other => panic!("expected a batch not confirmed, got {other:?}"),
    };
    eprintln!("cut: {confirmed} jobs confirmed, lines {lines:?} not");
    assert_eq!(confirmed % BATCH, 0, "whole batches before the cut");
    assert!(confirmed < JOBS);
    assert_eq!(lines, (confirmed + 1, confirmed + BATCH));
    for (i, job) in jobs.iter().enumerate() {
        let state = direct
            .store
            .record(job.id)
            .await
            .expect("store")
            .map(|r| r.state);
        if i < confirmed {
            assert_eq!(state, Some(JobState::Pending), "job on line {}", i + 1);
        } else {
            assert_eq!(state, None, "job on line {} is not left pending", i + 1);
        }
    }

    // The same file again, on a working connection: every job is enqueued.
    let producer = Producer::new(&direct, &config);
    let report = enqueue_file(&path, &producer, &config.limits, Mode::Hidden)
        .await
        .expect("the rerun enqueues the whole file");
    assert_eq!(report.enqueued, JOBS);
    for job in &jobs {
        let state = direct
            .store
            .record(job.id)
            .await
            .expect("store")
            .map(|r| r.state);
        assert_eq!(state, Some(JobState::Pending));
    }

    let _ = direct.broker.delete_routes(&[queue]).await;
    let _ = direct.store.purge().await;
    direct.broker.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
