//! The data kinds on RabbitMQ + Redis with real worker processes: sample game logs
//! ingested and a model trained by a worker process, then a `predict` whose worker is
//! `kill -9`ed mid-run; redelivered to a new worker it resumes from its checkpoints and
//! writes the very bytes an uninterrupted run of the same prediction writes; and the same
//! prediction fanned out over three shards writes them too.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use jobfleet_common::store::{JobRecord, JobState};
use jobfleet_common::{Job, JobId};
use jobfleet_tests::processes::world::World;
use jobfleet_tests::processes::Role;
use serde_json::{json, Value};

/// Sample rows: enough chunks that the kill lands mid-run.
const ROWS: usize = 120_000;
/// Rows per predict chunk (and checkpoint).
const CHUNK_ROWS: usize = 1_000;

/// A data directory removed when the test ends, pass or fail.
struct DataDir(PathBuf);

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `id`'s record until `done` says so; panics after `within`.
async fn wait_record(
    world: &mut World,
    id: JobId,
    within: Duration,
    done: impl Fn(&JobRecord) -> bool,
) -> JobRecord {
    let deadline = Instant::now() + within;
    loop {
        world.procs.assert_alive();
        if let Some(record) = world
            .backends
            .store
            .record(id)
            .await
            .expect("read the record")
        {
            if done(&record) {
                return record;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} not there within {within:?}: {record:?}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "job {id} has no record within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run_to_end(world: &mut World, kind: &str, payload: Value) -> Value {
    let job = job(world, kind, payload);
    let id = world.enqueue_all(vec![job]).await[0];
    let record = wait_record(world, id, Duration::from_secs(180), |r| {
        r.state.is_terminal()
    })
    .await;
    assert_eq!(record.state, JobState::Completed, "{record:?}");
    record.result.expect("a result")
}

fn job(world: &World, kind: &str, payload: Value) -> Job {
    Job::new(&world.queue, kind, Bytes::from(payload.to_string()))
        .with_max_attempts(5)
        .with_timeout_ms(300_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_predict_resumes_and_writes_the_same_bytes() {
    let dir = DataDir(std::env::temp_dir().join(format!("jobfleet-data-{}", uuid::Uuid::now_v7())));
    let url = dir.0.display().to_string();
    let mut world = World::new(env!("CARGO_BIN_EXE_testfleet"), |c| {
        c.data.url = url.clone();
        c.data.chunk_rows = CHUNK_ROWS;
    })
    .await;
    let files =
        jobfleet_data::sample::write(&dir.0.join("samples"), ROWS, 11).expect("sample data");
    world.procs.spawn(Role::Scheduler);
    let first = world.procs.spawn(Role::Worker);

    let ingested = run_to_end(
        &mut world,
        "ingest",
        json!({
            "dataset": "games",
            "source": files.csv.display().to_string(),
            "schema_ref": files.schema.display().to_string(),
        }),
    )
    .await;
    let rows = ingested["rows"].as_u64().expect("rows");
    let trained = run_to_end(
        &mut world,
        "train",
        json!({"model": "win", "dataset": "games", "target": "win",
               "exclude": ["game_id", "player_id"], "algorithm": "logistic_regression"}),
    )
    .await;
    eprintln!("ingested {ingested}\ntrained {trained}");

    let predict = |output: &str| json!({"model": "win", "output": output, "id_column": "game_id"});
    let killed = job(&world, "predict", predict("predictions/killed.parquet"));
    let killed_id = world.enqueue_all(vec![killed]).await[0];
    // Kill the worker once a fifth of the chunks are checkpointed.
    let running = wait_record(&mut world, killed_id, Duration::from_secs(120), |r| {
        r.state.is_terminal() || r.progress.is_some_and(|p| p >= 0.2)
    })
    .await;
    world.procs.kill(first);
    assert_eq!(
        running.state,
        JobState::Running,
        "the prediction must still be running when its worker is killed: {running:?}"
    );
    eprintln!(
        "killed at {:?} ({:?})",
        running.progress, running.progress_note
    );
    world.procs.spawn(Role::Worker);
    let record = wait_record(&mut world, killed_id, Duration::from_secs(180), |r| {
        r.state.is_terminal()
    })
    .await;
    assert_eq!(record.state, JobState::Completed, "{record:?}");
    let resumed = record.result.expect("a result");
    eprintln!("resumed {resumed}");
    assert_eq!(resumed["rows"].as_u64(), Some(rows), "{resumed}");
    let chunks = resumed["chunks"].as_u64().unwrap_or(0);
    let skipped = resumed["resumed_chunks"].as_u64().unwrap_or(0);
    assert!(
        skipped >= chunks / 5 && skipped < chunks,
        "the second attempt resumed after the checkpointed chunks: {resumed}"
    );

    let whole = run_to_end(&mut world, "predict", predict("predictions/whole.parquet")).await;
    assert_eq!(whole["resumed_chunks"], 0, "{whole}");
    let read = |name: &str| std::fs::read(dir.0.join("predictions").join(name)).expect("output");
    let (a, b) = (read("killed.parquet"), read("whole.parquet"));
    assert!(a.len() > 1000, "{} bytes", a.len());
    assert!(
        a == b,
        "the resumed output differs from the uninterrupted one ({} vs {} bytes)",
        a.len(),
        b.len()
    );

    // The same prediction spread over three shards on two workers: the children take
    // chunks the parent then finds done, and the merged bytes are the same.
    world.procs.spawn(Role::Worker);
    let mut parallel = predict("predictions/parallel.parquet");
    parallel["parallelism"] = json!(3);
    let parent = job(&world, "predict", parallel);
    let parent_id = parent.id;
    world.enqueue_all(vec![parent]).await;
    let record = wait_record(&mut world, parent_id, Duration::from_secs(180), |r| {
        r.state.is_terminal()
    })
    .await;
    assert_eq!(record.state, JobState::Completed, "{record:?}");
    let result = record.result.expect("a result");
    eprintln!("parallel {result}");
    assert_eq!(result["parallelism"], 3, "{result}");
    assert_eq!(result["rows"].as_u64(), Some(rows), "{result}");
    for child in 0..2 {
        let id = jobfleet_common::pipeline::step_job_id(parent_id, usize::MAX, child);
        let record = wait_record(&mut world, id, Duration::from_secs(60), |r| {
            r.state.is_terminal()
        })
        .await;
        assert_eq!(
            record.state,
            JobState::Completed,
            "child {child}: {record:?}"
        );
        eprintln!("child {child}: {:?} on {:?}", record.result, record.worker);
    }
    assert!(
        read("parallel.parquet") == b,
        "the parallel output differs from the single worker's"
    );
}
