//! Workers whose clocks disagree with the store's, on RabbitMQ + Redis: the real
//! `jobfleet worker` binary under libfaketime (`LD_PRELOAD` + `FAKETIME`), its clock two
//! minutes off, beside an unskewed `jobfleet scheduler`. A job published straight to the
//! ready route with `run_at_ms` a few seconds ahead (as a producer in another language,
//! or one with a skewed clock, may) must not start before `run_at_ms` by the store's
//! clock, and must run soon after that time has come.
//!
//! Needs Debian's `faketime` package (`scripts/test.sh` installs it), or `LIBFAKETIME`
//! naming a `libfaketime.so.1`. libfaketime shifts `CLOCK_MONOTONIC` too by default, by
//! a constant, which tokio's timers do not mind (`FAKETIME_DONT_FAKE_MONOTONIC=1` is not
//! needed).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use jobfleet_common::broker::{Message, Route};
use jobfleet_common::codec::{self, Format};
use jobfleet_common::store::{JobRecord, JobState, Store};
use jobfleet_common::{Config, Job, JobId};
use jobfleet_testkit::{shared_config, wait_for, HOW_TO_START};
use support::Process;

mod support;

/// How often the test looks at the job's record.
const POLL: Duration = Duration::from_millis(10);

/// Two minutes ahead: before the worker kept the store's time, it started the job at once,
/// four seconds early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_clock_runs_ahead_starts_a_job_no_earlier_than_the_stores_clock() {
    let skew = Skew {
        faketime: "+2m",
        ahead_ms: 120_000,
    };
    skew.job_runs_on_time(4_000).await;
}

/// Two minutes behind: before the worker kept the store's time, it sent the job the
/// scheduler released on time back to the delayed route, again and again, for two
/// minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_clock_runs_behind_starts_a_due_job_without_sending_it_back() {
    let skew = Skew {
        faketime: "-2m",
        ahead_ms: -120_000,
    };
    skew.job_runs_on_time(1_000).await;
}

/// A worker clock shifted by libfaketime.
struct Skew {
    /// libfaketime's relative offset (`FAKETIME`).
    faketime: &'static str,
    /// The same in ms: how far the worker's clock runs ahead of the store's.
    ahead_ms: i64,
}

impl Skew {
    /// Starts a scheduler and a worker under this skew, publishes a `sleep` job due in
    /// `due_in_ms` by the store's clock to the ready route, and checks it starts no
    /// earlier than that and completes within 15 s; then that the worker measured the
    /// skew (so libfaketime was in effect).
    async fn job_runs_on_time(&self, due_in_ms: i64) {
        let library = libfaketime();
        let config = shared_config("skew");
        let backends = match jobfleet_connect::connect(&config).await {
            Ok(b) => b,
            Err(e) => panic!("{e}\nThis test needs RabbitMQ and Redis: {HOW_TO_START}"),
        };
        let store = backends.store.clone();
        // `default` is the worker's queue; the namespace is this test's own.
        let queue = "default".to_string();
        backends
            .broker
            .declare(std::slice::from_ref(&queue))
            .await
            .expect("declare");
        let log = std::env::temp_dir().join(format!("{}-worker.log", config.namespace));
        let _scheduler = Process::new(
            command(&config, &["scheduler"])
                .stderr(Stdio::null())
                .spawn()
                .expect("scheduler"),
        );
        let worker = Process::new(
            command(&config, &["worker"])
                .env("LD_PRELOAD", &library)
                .env("FAKETIME", self.faketime)
                .env("JOBFLEET_LOG__FORMAT", "json")
                .stderr(std::fs::File::create(&log).expect("worker log file"))
                .spawn()
                .expect("worker"),
        );
        let up = wait_for(Duration::from_secs(30), || async {
            read(&log).contains("\"worker started\"")
        });
        assert!(up.await, "the worker did not start: {}", read(&log));
        // Listed as live, whichever way its clock is off: heartbeats expire by the
        // server's clock.
        let listed = wait_for(Duration::from_secs(10), || async {
            store.workers().await.is_ok_and(|live| live.len() == 1)
        });
        assert!(listed.await, "the skewed worker is not listed as live");

        let mut job = Job::new(&queue, "sleep", r#"{"ms": 200}"#);
        let run_at = store.store_time_ms().await.expect("TIME") + due_in_ms;
        job.run_at_ms = Some(run_at);
        let body = codec::encode(&job, Format::Binary);
        let content_type = Format::Binary.content_type();
        let message = Message::new(Route::Ready(queue), job.priority, body, content_type);
        backends
            .broker
            .publish(vec![message])
            .await
            .expect("publish");

        let record = watch_until_completed(&*store, job.id, run_at, &log).await;
        let started = record
            .started_at_ms
            .expect("a completed job has a start time");
        assert!(
            started >= run_at,
            "the worker recorded its start at {started}, before run_at_ms {run_at}"
        );
        println!(
            "FAKETIME={}: started {} ms after run_at_ms (the worker's reading)",
            self.faketime,
            started - run_at
        );
        drop(worker);
        let offset = measured_offset(&log);
        assert!(
            (offset + self.ahead_ms).abs() < 2_000,
            "the worker measured the store {offset} ms from its clock, expected about {}",
            -self.ahead_ms
        );
        let _ = std::fs::remove_file(&log);
    }
}

/// The store's clock minus its own, as the worker logged it at start-up.
fn measured_offset(log: &Path) -> i64 {
    let said = read(log);
    said.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|line| line["store_offset_ms"].as_i64())
        .unwrap_or_else(|| panic!("no store_offset_ms in the worker's log:\n{said}"))
}

/// Where Debian (any architecture) or a local build puts libfaketime, unless
/// `LIBFAKETIME` says.
fn libfaketime() -> PathBuf {
    if let Some(path) = std::env::var_os("LIBFAKETIME") {
        return PathBuf::from(path);
    }
    let multiarch = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("faketime/libfaketime.so.1"));
    let plain = ["/usr/lib/faketime", "/usr/local/lib/faketime"]
        .into_iter()
        .map(|dir| PathBuf::from(dir).join("libfaketime.so.1"));
    let found = multiarch.chain(plain).find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "libfaketime.so.1 not found: this test runs the worker under it. Install \
             Debian's `faketime` package (`apt-get install faketime`; scripts/test.sh \
             installs it) or set LIBFAKETIME to the library's path"
        )
    })
}

/// Polls the job's record until it completes. Each poll reads the record first and the
/// store's time after it, so a record seen started at a store time before `run_at`
/// proves the attempt began before `run_at` by the store's clock.
async fn watch_until_completed(store: &dyn Store, id: JobId, run_at: i64, log: &Path) -> JobRecord {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let record = store.record(id).await.expect("record");
        let now = store.store_time_ms().await.expect("TIME");
        if let Some(record) = record.filter(|r| r.started_at_ms.is_some()) {
            assert!(
                now >= run_at,
                "started {} ms before run_at_ms by the store's clock (seen {:?} at store \
                 time {now}, run_at_ms {run_at})\nworker log:\n{}",
                run_at - now,
                record.state,
                read(log)
            );
            if record.state == JobState::Completed {
                return record;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} did not complete within 15 s\nworker log:\n{}",
            read(log)
        );
        tokio::time::sleep(POLL).await;
    }
}

fn command(config: &Config, args: &[&str]) -> std::process::Command {
    support::jobfleet_on(&config.namespace, args)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
