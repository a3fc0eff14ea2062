//! A `jobfleet worker` process on RabbitMQ + Redis told twice to stop (SIGINT, SIGINT)
//! while it runs a slow job: the second signal cuts the drain short, and the job is
//! handed back before the process exits. Right after the exit (long before
//! `worker.lease_ttl` could run out) the job's record says `pending` with a note that the
//! worker was forced to exit, its execution lease is free, and another worker runs it to
//! completion at once without counting an attempt.
//!
//! Then that worker is killed with SIGKILL while it runs another job: the record stays
//! `running` (nothing could write it), and `jobfleet status` says its worker is gone once
//! the heartbeat expires.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use jobfleet_common::store::{JobRecord, JobState};
use jobfleet_common::{Backends, Config, Job, JobId};
use jobfleet_producer::Producer;
use jobfleet_testkit::{redis_url, shared_config, wait_state, HOW_TO_START};
use redis::AsyncCommands;

mod support;
use support::Process;

/// What the workers are given: a drain that would outlast the test (so only the forced
/// exit can end it) and a lease far longer than the test waits for the job to run again
/// (so only a released lease lets it run at once). Short heartbeats, so a killed worker's
/// expires in well under a second.
const WORKER_ENV: &[(&str, &str)] = &[
    ("JOBFLEET_WORKER__GRACE_PERIOD", "60s"),
    ("JOBFLEET_WORKER__LEASE_TTL", "30s"),
    ("JOBFLEET_WORKER__HEARTBEAT", "200ms"),
];
/// How long the test waits for anything to happen: under the lease's 30 s.
const WITHIN: Duration = Duration::from_secs(20);

fn command(config: &Config, args: &[&str]) -> Command {
    let mut cmd = support::jobfleet_on(&config.namespace, args);
    cmd.stdin(Stdio::null());
    cmd
}

/// Starts `jobfleet worker` with its stderr (the log) in `log`.
fn worker(config: &Config, log: &Path) -> Process {
    let file = std::fs::File::create(log).expect("create the worker's log");
    let child = command(config, &["worker"])
        .envs(WORKER_ENV.iter().copied())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("start jobfleet worker");
    Process::new(child)
}

fn signal(name: &str, process: &Process) {
    let pid = process.child.id().to_string();
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}: {status}");
}

/// Waits until the worker's log has a line containing `needle`.
async fn logged(log: &Path, needle: &str) {
    let started = Instant::now();
    while started.elapsed() < WITHIN {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().any(|l| l.contains(needle)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    panic!("the worker did not log {needle:?} within {WITHIN:?}; its log:\n{text}");
}

/// Waits for the process to exit; its exit code.
async fn exited(process: &mut Process, log: &Path) -> Option<i32> {
    let started = Instant::now();
    while started.elapsed() < WITHIN {
        if let Some(status) = process.child.try_wait().expect("try_wait") {
            return status.code();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    panic!("the worker did not exit within {WITHIN:?} of the second signal; log:\n{text}");
}

/// `jobfleet status <id> [more]`, which must succeed.
fn status(config: &Config, id: JobId, more: &[&str]) -> String {
    let id = id.to_string();
    let mut args = vec!["status", id.as_str()];
    args.extend_from_slice(more);
    let out: Output = command(config, &args)
        .output()
        .expect("run jobfleet status");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "jobfleet {args:?}: {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn running(backends: &Backends, id: JobId) -> JobRecord {
    wait_state(
        backends.store.as_ref(),
        id,
        JobState::Running,
        WITHIN,
        "redis",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_exit_hands_the_job_back_and_status_says_when_a_worker_is_gone() {
    let config = shared_config("forced");
    let backends = jobfleet_connect::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}\nThis test needs RabbitMQ and Redis: {HOW_TO_START}"));
    let dir = std::env::temp_dir().join(format!("jobfleet-{}", config.namespace));
    std::fs::create_dir_all(&dir).expect("a directory for the logs");
    let logs: Vec<PathBuf> = (1..=2)
        .map(|n| dir.join(format!("worker-{n}.log")))
        .collect();
    let producer = Producer::new(&backends, &config);
    // `default` is the workers' queue; the namespace is this test's own.
    let slow = Job::new("default", "sleep", r#"{"ms": 5000}"#);
    let id = producer.enqueue(slow).await.expect("enqueued").id;

    let mut first = worker(&config, &logs[0]);
    let first_id = running(&backends, id)
        .await
        .worker
        .expect("names its worker");
    signal("INT", &first);
    logged(&logs[0], "draining").await;
    signal("INT", &first);
    let forced_at = Instant::now();
    let code = exited(&mut first, &logs[0]).await;
    let took = forced_at.elapsed();

    // Read at once: the record, and the lease another worker needs.
    let record = backends
        .store
        .record(id)
        .await
        .expect("store answers")
        .expect("a record");
    let mut redis = redis::Client::open(redis_url())
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis");
    let lease = jobfleet_connect::redis::keys::lease(&config.namespace, id);
    let holder: Option<String> = redis.hget(&lease, "holder").await.expect("HGET");
    println!("forced exit: the worker exited {took:?} after the second SIGINT");
    let log = std::fs::read_to_string(&logs[0]).unwrap_or_default();
    assert_eq!(code, Some(130), "exit status; log:\n{log}");
    assert!(took < Duration::from_secs(5), "took {took:?}; log:\n{log}");
    assert_eq!(record.state, JobState::Pending, "{record:?}");
    let note = record.note.clone().unwrap_or_default();
    assert_eq!(
        note,
        format!(
            "interrupted: worker {first_id} was forced to exit (a second SIGTERM or Ctrl-C) \
             during attempt 1; handed back to the queue, the attempt does not count"
        )
    );
    assert_eq!(holder, None, "the execution lease is free");

    // Another worker runs it now, not once the 30 s lease would have run out.
    let mut second = worker(&config, &logs[1]);
    let done = wait_state(
        backends.store.as_ref(),
        id,
        JobState::Completed,
        WITHIN,
        "redis",
    )
    .await;
    let second_id = done.worker.clone().expect("names its worker");
    assert_ne!(second_id, first_id, "{done:?}");
    assert_eq!(done.attempt, 1, "the interrupted attempt does not count");

    // A worker killed outright: its job's record stays `running`, and `status` says the
    // worker is gone once its heartbeat expires.
    let endless = Job::new("default", "sleep", r#"{"ms": 600000}"#);
    let stuck = producer.enqueue(endless).await.expect("enqueued").id;
    running(&backends, stuck).await;
    let alive = status(&config, stuck, &[]);
    assert!(
        alive.contains(&format!("worker     {second_id}\n")),
        "{alive}"
    );
    signal("KILL", &second);
    let _ = second.child.wait();
    let started = Instant::now();
    let mut shown = String::new();
    while started.elapsed() < WITHIN && !shown.contains("(gone:") {
        tokio::time::sleep(Duration::from_millis(100)).await;
        shown = status(&config, stuck, &[]);
    }
    assert!(shown.contains("state      running\n"), "{shown}");
    assert!(
        shown.contains(&format!(
            "worker     {second_id} (gone: its heartbeat expired;"
        )),
        "{shown}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&status(&config, stuck, &["--json"])).expect("JSON");
    assert_eq!(json["worker_alive"], false, "{json}");

    let _ = backends
        .broker
        .delete_routes(&["default".to_string()])
        .await;
    let _ = backends.store.purge().await;
    backends.broker.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
