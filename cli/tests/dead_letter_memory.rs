//! One 100 MB junk message on a ready queue (RabbitMQ takes up to 128 MB) costs the fleet
//! a bounded dead letter, not its size again and again: `jobfleet worker` and `jobfleet
//! scheduler` processes on RabbitMQ + Redis dead-letter it with a 64 KiB head, its size
//! and its hash; the scheduler's peak RSS, Redis's memory for the letter, and the peak
//! RSS of `jobfleet dlq list` and `dlq show` all stay far below the message's size. The
//! figures are printed (the note quotes them); the bounds asserted are loose
//! enough for any machine and tight enough to catch one copy of the body.
//!
//! A CLI's peak RSS is read by Python's `resource.getrusage(RUSAGE_CHILDREN)` around it
//! (Rust's standard library does not expose a child's rusage).

use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use jobfleet_common::broker::{Message, Route};
use jobfleet_common::store::DeadFilter;
use jobfleet_common::{Config, Priority};
use jobfleet_testkit::{redis_url, shared_config, wait_for, HOW_TO_START};

const BODY_BYTES: usize = 100 * 1024 * 1024;
/// Far below one copy of the body; far above a process's ~20-60 MB at rest.
const RSS_BOUND_KB: u64 = 80 * 1024;

mod support;
use support::Process;

fn command(config: &Config, args: &[&str]) -> Command {
    let mut cmd = support::jobfleet_on(&config.namespace, args);
    cmd.stdin(Stdio::null());
    cmd
}

/// The peak resident set of a live process, in KiB (`VmHWM`).
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Runs `jobfleet <args>` under Python and returns its stdout and its peak RSS in KiB.
fn run_measured(config: &Config, args: &[&str]) -> (String, u64) {
    const MEASURE: &str = "import resource, subprocess, sys\n\
        out = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, check=True).stdout\n\
        sys.stdout.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) + '\\n')\n\
        sys.stdout.buffer.write(out)\n";
    let cmd = command(config, &[]);
    let program = cmd.get_program().to_os_string();
    let mut python = Command::new("python3");
    python.arg("-c").arg(MEASURE).arg(program).args(args);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => python.env(k, v),
            None => python.env_remove(k),
        };
    }
    let out = python
        .output()
        .expect("python3 runs (the machine's CPython; see the README)");
    assert!(
        out.status.success(),
        "jobfleet {args:?} under python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let (rss, rest) = text.split_once('\n').expect("the RSS line");
    (rest.to_string(), rss.trim().parse().expect("KiB"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_junk_message_costs_a_bounded_dead_letter() {
    let config = shared_config("bigdead");
    let backends = match jobfleet_connect::connect(&config).await {
        Ok(b) => b,
        Err(e) => panic!("{e}\nThis test needs RabbitMQ and Redis: {HOW_TO_START}"),
    };
    // `default` is the worker's queue; the namespace is this test's own.
    let queue = "default".to_string();
    backends
        .broker
        .declare(std::slice::from_ref(&queue))
        .await
        .expect("declare");
    let scheduler = Process::new(command(&config, &["scheduler"]).spawn().expect("scheduler"));
    let worker = Process::new(command(&config, &["worker"]).spawn().expect("worker"));

    let junk = Bytes::from(vec![0xA5u8; BODY_BYTES]);
    let message = Message::new(Route::Ready(queue.clone()), Priority::NORMAL, junk, "");
    backends
        .broker
        .publish(vec![message])
        .await
        .expect("RabbitMQ takes a 100 MB message");

    let store = backends.store.clone();
    let all = DeadFilter::default();
    let filed = wait_for(Duration::from_secs(120), || async {
        store.dead_list(&all, 10).await.expect("list").len() == 1
    });
    assert!(
        filed.await,
        "the junk message was not dead-lettered within 120 s"
    );
    let letter = store.dead_list(&all, 1).await.expect("list").remove(0);
    assert!(
        letter.body_bytes <= 64 * 1024,
        "{} bytes kept",
        letter.body_bytes
    );
    assert!(
        letter.reason.contains(&format!("{BODY_BYTES} bytes")),
        "{}",
        letter.reason
    );

    let scheduler_kb = peak_rss_kb(scheduler.child.id());
    let worker_kb = peak_rss_kb(worker.child.id());
    let mut redis = redis::Client::open(redis_url())
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis");
    let mut redis_bytes = 0u64;
    for key in jobfleet_connect::redis::keys::dead(&config.namespace) {
        let used: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .expect("MEMORY USAGE");
        redis_bytes += used.unwrap_or(0);
    }
    let (listed, list_kb) = run_measured(&config, &["dlq", "list", "--limit", "1"]);
    assert!(listed.contains(&letter.id.to_string()), "{listed}");
    let id = letter.id.to_string();
    let (shown, show_kb) = run_measured(&config, &["dlq", "show", &id]);
    assert!(shown.contains("65536 bytes"), "{shown}");
    println!(
        "dead letter of a {BODY_BYTES}-byte message: {} bytes kept; Redis {redis_bytes} bytes \
         for the dead-letter keys; peak RSS: scheduler {scheduler_kb} KiB, worker {worker_kb} \
         KiB (it receives the message whole), dlq list {list_kb} KiB, dlq show {show_kb} KiB",
        letter.body_bytes
    );
    assert!(
        redis_bytes < 1024 * 1024,
        "Redis holds {redis_bytes} bytes for one letter"
    );
    assert!(
        scheduler_kb < RSS_BOUND_KB,
        "scheduler peak {scheduler_kb} KiB"
    );
    assert!(list_kb < RSS_BOUND_KB, "dlq list peak {list_kb} KiB");
    assert!(show_kb < RSS_BOUND_KB, "dlq show peak {show_kb} KiB");

    drop(worker);
    drop(scheduler);
    let _ = backends.broker.delete_routes(&[queue]).await;
    let _ = backends.store.purge().await;
    backends.broker.close().await;
}
