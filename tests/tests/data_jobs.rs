//! The data kinds on RabbitMQ + Redis with real worker processes: sample game logs
//! ingested and a model trained by a worker process, then a `predict` whose worker is
//! `kill -9`ed mid-run; redelivered to a new worker it resumes from its checkpoints and
//! writes the very bytes an uninterrupted run of the same prediction writes; and the same
//! prediction fanned out over three shards writes them too. One scenario runs on a data
//! directory and on a bucket, the store a fleet spread over machines shares: an `s3://`
//! bucket of moto and a `gs://` bucket of fake-gcs-server, emulators the test starts. On a
//! bucket the store's own promises are checked too: a manifest is created once, and a file
//! goes up in parts and comes back whole.
//!
//! fake-gcs-server refuses object_store's uploads (`jobfleet_tests::gcs` says which
//! requests), so the scenario and the round trip cannot run on `gs://` yet
//! (`tests/pending/README.md`); what the emulator does serve (reads, listings, deletes) is
//! checked on objects put there through its JSON API, and that check fails, saying so,
//! once the emulator takes the uploads.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use jobfleet_common::store::{JobRecord, JobState};
use jobfleet_common::{Job, JobId};
use jobfleet_tests::gcs::GcsServer;
use jobfleet_tests::processes::world::World;
use jobfleet_tests::processes::{ProcId, Role};
use jobfleet_tests::s3::S3Server;
use serde_json::{json, Value};

/// Sample rows: enough chunks that the kill lands mid-run.
const ROWS: usize = 120_000;
/// Rows per predict chunk (and checkpoint).
const CHUNK_ROWS: usize = 1_000;

/// A data directory removed when the test ends, pass or fail.
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("jobfleet-data-{}", uuid::Uuid::now_v7())))
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A bucket, and the emulator serving it (stopped when the test ends).
enum Bucket {
    S3(S3Server),
    Gs(GcsServer),
}

impl Bucket {
    /// `scheme://bucket[/prefix]`.
    fn url(&self, prefix: &str) -> String {
        let (scheme, name) = match self {
            Self::S3(s3) => ("s3", &s3.bucket),
            Self::Gs(gcs) => ("gs", &gcs.bucket),
        };
        match prefix {
            "" => format!("{scheme}://{name}"),
            _ => format!("{scheme}://{name}/{prefix}"),
        }
    }

    /// The object_store settings that reach the emulator.
    fn options(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::S3(s3) => s3.options(),
            Self::Gs(gcs) => gcs.options(),
        }
    }

    /// The same, as environment variables for the fleet's processes.
    fn env(&self) -> Vec<(String, String)> {
        match self {
            Self::S3(s3) => s3.env(),
            Self::Gs(gcs) => gcs.env(),
        }
    }

    /// The bucket under `prefix`, opened with the emulator's settings.
    fn open(&self, prefix: &str) -> jobfleet_data::Storage {
        let options = self.options();
        let options: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
        jobfleet_data::Storage::open_with(&self.url(prefix), &options).expect("open the bucket")
    }
}

/// Where a store's objects are.
enum Place {
    /// A directory, removed when the test ends.
    Dir {
        _dir: DataDir,
    },
    Bucket(Bucket),
}

/// The fleet's data store, and the test's own handle on it.
struct Store {
    storage: jobfleet_data::Storage,
    url: String,
    place: Place,
}

impl Store {
    fn dir() -> Self {
        let dir = DataDir::new();
        let url = dir.0.display().to_string();
        Self {
            storage: jobfleet_data::Storage::open(&url).expect("open the directory"),
            url,
            place: Place::Dir { _dir: dir },
        }
    }

    /// `bucket`, under `prefix` (so keys are not at the bucket's root).
    fn bucket(bucket: Bucket, prefix: &str) -> Self {
        Self {
            storage: bucket.open(prefix),
            url: bucket.url(prefix),
            place: Place::Bucket(bucket),
        }
    }

    /// The same bucket seen from its root, without the prefix.
    fn root(&self) -> jobfleet_data::Storage {
        match &self.place {
            Place::Bucket(bucket) => bucket.open(""),
            Place::Dir { .. } => panic!("a directory store has no bucket"),
        }
    }

    /// What the fleet's processes need in their environment to reach the store.
    fn env(&self) -> Vec<(String, String)> {
        match &self.place {
            Place::Bucket(bucket) => bucket.env(),
            Place::Dir { .. } => Vec::new(),
        }
    }

    /// The object at `key`.
    async fn read(&self, key: &str) -> Bytes {
        self.storage
            .get(key)
            .await
            .expect("read the store")
            .unwrap_or_else(|| panic!("no object {key}"))
    }
}

fn spawn(world: &mut World, store: &Store, role: Role) -> ProcId {
    let env = store.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    world.procs.spawn_with(role, &env)
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
    scenario(Store::dir()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_predict_resumes_and_writes_the_same_bytes_on_s3() {
    let bucket = Bucket::S3(S3Server::start("jobfleet-test"));
    scenario(Store::bucket(bucket, "fleet-data")).await;
}

async fn scenario(store: Store) {
    let url = store.url.clone();
    let mut world = World::new(env!("CARGO_BIN_EXE_testfleet"), |c| {
        c.data.url = url.clone();
        c.data.chunk_rows = CHUNK_ROWS;
    })
    .await;
    // The sample files go into the store, and the jobs name them by key.
    let samples = DataDir::new();
    let files = jobfleet_data::sample::write(&samples.0, ROWS, 11).expect("sample data");
    for (key, file) in [
        ("samples/games.csv", &files.csv),
        ("samples/games.schema.json", &files.schema),
    ] {
        store
            .storage
            .upload(file, key)
            .await
            .expect("upload a sample file");
    }
    spawn(&mut world, &store, Role::Scheduler);
    let first = spawn(&mut world, &store, Role::Worker);

    let ingested = run_to_end(
        &mut world,
        "ingest",
        json!({
            "dataset": "games",
            "source": "samples/games.csv",
            "schema_ref": "samples/games.schema.json",
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
    spawn(&mut world, &store, Role::Worker);
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
    let (a, b) = (
        store.read("predictions/killed.parquet").await,
        store.read("predictions/whole.parquet").await,
    );
    assert!(a.len() > 1000, "{} bytes", a.len());
    assert!(
        a == b,
        "the resumed output differs from the uninterrupted one ({} vs {} bytes)",
        a.len(),
        b.len()
    );

    // The same prediction spread over three shards on two workers: the children take
    // chunks the parent then finds done, and the merged bytes are the same.
    spawn(&mut world, &store, Role::Worker);
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
        store.read("predictions/parallel.parquet").await == b,
        "the parallel output differs from the single worker's"
    );
    // Everything is in the store: datasets, models, outputs; and the checkpoints of the
    // finished runs are gone.
    let keys = store.storage.list("").await.expect("list the store");
    eprintln!("{} objects in {}", keys.len(), store.url);
    for wanted in [
        "datasets/games/",
        "models/win/",
        "predictions/whole.parquet",
    ] {
        assert!(
            keys.iter().any(|k| k.starts_with(wanted)),
            "no {wanted} in the store: {keys:?}"
        );
    }
    assert!(
        !keys.iter().any(|k| k.contains("part-")),
        "checkpoint parts left behind: {keys:?}"
    );
    if let Place::Bucket(_) = store.place {
        let local = keys.iter().filter(|k| k.starts_with("samples/")).count();
        assert_eq!(local, 2, "the samples were read from the bucket: {keys:?}");
    }
}

/// Where the round trips keep their objects in the bucket.
const PREFIX: &str = "a/b";
/// The manifest a round trip creates once.
const MANIFEST: &str = "datasets/d/v000001/manifest.json";

/// The store's own promises on a bucket: a version's manifest is created once (a
/// conditional put), a file larger than one upload part goes up in parts and comes back
/// whole, and readers get a local copy that goes when dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_store_creates_once_and_round_trips_files_in_parts() {
    round_trip(Bucket::S3(S3Server::start("jobfleet-store"))).await;
}

/// What fake-gcs-server serves to object_store's GCS client: objects put there through
/// its JSON API are read whole and as a local copy, listed under the store's prefix and
/// deleted. Its refusal of object_store's uploads is checked last, so this fails once a
/// release takes them, and the `gs` scenario and round trip can join the suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gs_store_reads_lists_and_deletes_what_the_emulator_holds() {
    let gcs = GcsServer::start("jobfleet-store");
    let big = big_file();
    gcs.insert(&format!("{PREFIX}/{MANIFEST}"), br#"{"n": 1}"#);
    gcs.insert(&format!("{PREFIX}/outputs/big.bin"), &big);
    let store = Store::bucket(Bucket::Gs(gcs), PREFIX);
    read_back(&store, &big).await;

    let scratch = DataDir::new();
    std::fs::write(&scratch.0, b"x").expect("write the file");
    let put = store
        .storage
        .put("outputs/put", Bytes::from_static(b"x"))
        .await;
    let upload = store.storage.upload(&scratch.0, "outputs/upload").await;
    for (what, result) in [("put", put), ("upload", upload)] {
        match result {
            Err(e) if e.to_string().contains("invalid uploadType") => {}
            other => panic!(
                "fake-gcs-server answered object_store's {what} with {other:?}, not the \
                 400 invalid uploadType that keeps the gs scenario and round trip out of the \
                 suite: add them (tests/pending/README.md) and drop this check"
            ),
        }
    }
}

/// 20 MiB + 3 bytes: three upload parts of 8 MiB.
fn big_file() -> Vec<u8> {
    (0..20 * 1024 * 1024 + 3).map(|i| (i % 251) as u8).collect()
}

/// Creates the manifest twice (the second is refused) and uploads a big file through the
/// store, then reads them back.
async fn round_trip(bucket: Bucket) {
    let store = Store::bucket(bucket, PREFIX);
    let storage = &store.storage;
    assert!(storage
        .create_json(MANIFEST, &json!({"n": 1}))
        .await
        .expect("create"));
    assert!(
        !storage
            .create_json(MANIFEST, &json!({"n": 2}))
            .await
            .expect("create again"),
        "a second create of the same key must be refused"
    );
    let big = big_file();
    let scratch = DataDir::new();
    std::fs::write(&scratch.0, &big).expect("write the file");
    storage
        .upload(&scratch.0, "outputs/big.bin")
        .await
        .expect("upload");
    read_back(&store, &big).await;
}

/// The store holds the manifest `{"n": 1}` and `big` at `outputs/big.bin`, under
/// [`PREFIX`]: reads them, lists and deletes the outputs, and finds the manifest alone
/// under the prefix from the bucket's root.
async fn read_back(store: &Store, big: &[u8]) {
    let storage = &store.storage;
    let kept: Value = storage
        .get_json(MANIFEST)
        .await
        .expect("get")
        .expect("there");
    assert_eq!(kept, json!({"n": 1}));
    let copy = storage
        .local_copy("outputs/big.bin")
        .await
        .expect("download")
        .expect("there");
    assert!(std::fs::read(copy.path()).expect("read the copy") == big);
    let copied = copy.path().to_path_buf();
    drop(copy);
    assert!(!copied.exists(), "the downloaded copy goes when dropped");
    assert!(storage
        .local_copy("outputs/none")
        .await
        .expect("get")
        .is_none());

    assert_eq!(
        storage.list("outputs").await.expect("list"),
        vec!["outputs/big.bin".to_owned()]
    );
    storage.delete_prefix("outputs").await.expect("delete");
    assert!(!storage.exists("outputs/big.bin").await.expect("head"));
    assert_eq!(
        store.root().list("").await.expect("list the bucket"),
        vec![format!("{PREFIX}/{MANIFEST}")]
    );
}
