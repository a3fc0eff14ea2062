//! The example kind end to end on RabbitMQ + Redis, as a user would run it: a [`Worker`]
//! with the `checksum` handler (built with the worker's public API only), a scheduler
//! (which files dead letters), a [`Producer`] connected from a configuration, real files
//! on disk.

use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::store::JobState;
use jobfleet_common::{Config, Job, JobId};
use jobfleet_examples::{checksum_path, Checksum, KIND};
use jobfleet_producer::Producer;
use jobfleet_testkit::{shared_config, HOW_TO_START};
use jobfleet_worker::Worker;
use tokio_util::sync::CancellationToken;

const QUEUE: &str = "files";

fn config() -> Config {
    let mut config = shared_config("example");
    config.worker.queues = vec![QUEUE.into()];
    config.validate().expect("a valid configuration");
    config
}

/// Waits until every job has a final state record; returns their states.
async fn final_states(config: &Config, ids: &[JobId]) -> Vec<JobState> {
    let backends = jobfleet_connect::connect(config)
        .await
        .unwrap_or_else(|e| panic!("{e}: {HOW_TO_START}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut states = Vec::new();
        for id in ids {
            let record = backends.store.record(*id).await.expect("store answers");
            states.push(record.map(|r| r.state));
        }
        let finished =
            |s: &Option<JobState>| matches!(s, Some(JobState::Completed | JobState::Dead));
        if states.iter().all(finished) {
            return states.into_iter().flatten().collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs not finished after 30 s: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn checksum_jobs_run_on_a_worker_built_from_the_public_api() {
    let config = config();
    let dir = std::env::temp_dir().join(&config.namespace);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let files: Vec<_> = (0..3)
        .map(|i| {
            let path = dir.join(format!("part-{i}.bin"));
            std::fs::write(&path, vec![b'a' + i; 200_000 + usize::from(i)]).expect("write");
            path
        })
        .collect();

    let shutdown = CancellationToken::new();
    let worker = Worker::new(config.clone()).handler(KIND, Checksum);
    let running = tokio::spawn(worker.run(shutdown.clone()));
    let scheduler_backends = jobfleet_connect::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}: {HOW_TO_START}"));
    let scheduler = tokio::spawn(jobfleet_scheduler::run(
        Arc::new(config.clone()),
        scheduler_backends,
        shutdown.clone(),
    ));

    let producer = Producer::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}: {HOW_TO_START}"));
    let mut jobs: Vec<Job> = files
        .iter()
        .map(|path| {
            let payload = format!(r#"{{"path": {:?}}}"#, path.to_str().expect("utf-8 path"));
            Job::new(QUEUE, KIND, payload)
        })
        .collect();
    // A file that does not exist: bad input, so dead at once, not retried.
    let missing = dir.join("missing.bin");
    jobs.push(Job::new(
        QUEUE,
        KIND,
        format!(r#"{{"path": {:?}}}"#, missing.to_str().expect("utf-8 path")),
    ));
    let enqueued = producer.enqueue_many(jobs).await.expect("enqueued");
    let ids: Vec<JobId> = enqueued.iter().map(|e| e.id).collect();

    let states = final_states(&config, &ids).await;
    assert_eq!(
        states,
        [
            JobState::Completed,
            JobState::Completed,
            JobState::Completed,
            JobState::Dead
        ]
    );
    for path in &files {
        let written = std::fs::read_to_string(checksum_path(path)).expect("a checksum file");
        let want = jobfleet_examples::sha256_file(path, || false)
            .expect("readable")
            .expect("not stopped");
        let name = path.file_name().expect("a name").to_string_lossy();
        assert_eq!(written, format!("{want}  {name}\n"));
    }
    assert!(!checksum_path(&missing).exists());

    shutdown.cancel();
    running
        .await
        .expect("the worker task")
        .expect("the worker stopped cleanly");
    scheduler
        .await
        .expect("the scheduler task")
        .expect("the scheduler stopped cleanly");
    producer.close().await;

    // Leave nothing behind on the shared services.
    let backends = jobfleet_connect::connect(&config).await.expect("connect");
    backends
        .broker
        .delete_routes(&config.worker.queues)
        .await
        .expect("routes deleted");
    assert!(backends.store.purge().await.expect("purged") > 0);
    backends.broker.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_worker_refuses_the_embedded_backend_and_names_the_fix() {
    let e = Worker::new(Config::default())
        .handler(KIND, Checksum)
        .run(CancellationToken::new())
        .await
        .expect_err("embedded alone is refused");
    let text = e.to_string();
    assert!(
        text.contains("embedded") && text.contains("`broker`"),
        "{text}"
    );
    assert!(!e.is_retryable());
}
