//! The operator commands that follow a running fleet, on RabbitMQ + Redis: `jobfleet
//! workers` lists a live worker with the job it runs, `jobfleet status ID --watch` prints
//! each change until the job completes, and `jobfleet queues --watch` redraws with the
//! fleet's throughput between draws.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::{Config, Job};
use jobfleet_producer::Producer;
use jobfleet_testkit::{shared_config, HOW_TO_START};
use jobfleet_worker::Registry;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

mod support;

/// `jobfleet <args>` on the test services under the namespace of `config`.
fn command(config: &Config, args: &[&str]) -> Command {
    support::jobfleet_on(&config.namespace, args)
}

fn run(config: &Config, args: &[&str]) -> Output {
    let out = command(config, args).output().expect("run jobfleet");
    assert!(
        out.status.success(),
        "jobfleet {args:?}: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_status_watch_and_queues_watch_follow_a_running_fleet() {
    let mut config = shared_config("ops");
    let queue = format!("{}-q", config.namespace);
    config.worker.queues = vec![queue.clone()];
    config.worker.heartbeat = Duration::from_millis(200);
    let backends = match jobfleet_connect::connect(&config).await {
        Ok(b) => b,
        Err(e) => panic!("{e}\nThese tests need RabbitMQ and Redis: {HOW_TO_START}"),
    };
    let fleet = CancellationToken::new();
    let worker = tokio::spawn(jobfleet_worker::run(
        Arc::new(config.clone()),
        backends.clone(),
        Arc::new(Registry::with_builtins()),
        fleet.clone(),
    ));
    let producer = Producer::new(&backends, &config);
    let slow = Job::new(&queue, "sleep", r#"{"ms": 3000}"#);
    let slow_id = slow.id.to_string();
    producer.enqueue(slow).await.expect("enqueued");

    // The worker reports the job it runs.
    let mut listed = Value::Null;
    for _ in 0..50 {
        let out = run(&config, &["workers", "--json"]);
        listed = serde_json::from_slice(&out.stdout).expect("JSON");
        if listed[0]["running_jobs"][0] == slow_id.as_str() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["running_jobs"][0], slow_id.as_str(), "{listed}");
    let table = String::from_utf8_lossy(&run(&config, &["workers"]).stdout).to_string();
    assert!(table.contains(&format!("runs: {slow_id}")), "{table}");
    assert!(table.ends_with("live workers: 1\n"), "{table}");

    // status --watch: one line per change, ending when the job completes.
    let watch = tokio::task::spawn_blocking({
        let config = config.clone();
        let id = slow_id.clone();
        move || {
            run(
                &config,
                &["status", &id, "--watch", "--json", "--every", "100ms"],
            )
        }
    });
    // queues --watch: two draws, the second with rates.
    let mut queues = command(
        &config,
        &["queues", "--watch", "--json", "--every", "300ms"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn queues --watch");
    let lines: Vec<Value> = {
        let stdout = queues.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout).lines();
        (0..2)
            .map(|_| {
                let line = reader.next().expect("a draw").expect("read");
                serde_json::from_str(&line).expect("one JSON object per line")
            })
            .collect()
    };
    let _ = queues.kill();
    let _ = queues.wait();
    assert!(lines[0].get("rates").is_none(), "{}", lines[0]);
    assert!(
        lines[1]["rates"]["completed_per_sec"].is_number(),
        "{}",
        lines[1]
    );
    assert_eq!(lines[1]["live_workers"], 1);
    let row = lines[1]["queues"]
        .as_array()
        .and_then(|q| q.iter().find(|r| r["queue"] == queue.as_str()))
        .unwrap_or_else(|| panic!("no row for {queue}: {}", lines[1]));
    assert!(row["ready"].is_number(), "{row}");

    let out = tokio::time::timeout(Duration::from_secs(30), watch)
        .await
        .expect("status --watch ends when the job does")
        .expect("no panic");
    let states: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let record: Value = serde_json::from_str(l).expect("JSON per line");
            record["state"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(
        states.last().map(String::as_str),
        Some("completed"),
        "{states:?}"
    );
    assert!(states.iter().any(|s| s == "running"), "{states:?}");

    fleet.cancel();
    worker.await.expect("no panic").expect("worker");
    let _ = backends.broker.delete_routes(&[queue]).await;
    let _ = backends.store.purge().await;
    backends.broker.close().await;
}

/// Operator commands print their answer on stdout and nothing on stderr when they
/// succeed: no persistence summary, no client library's lines, in text or JSON logs, so a
/// script that merges stderr reads the answer (an enqueued job's id, say) and nothing else.
#[test]
fn operator_commands_print_nothing_on_stderr_on_success() {
    let config = shared_config("quiet");
    for format in ["text", "json"] {
        let quiet = |args: &[&str]| {
            let mut args = args.to_vec();
            args.extend(["--log-format", format]);
            let out = run(&config, &args);
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert_eq!(stderr, "", "jobfleet {args:?} wrote to stderr");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let id = quiet(&[
            "enqueue",
            "--queue",
            "default",
            "--kind",
            "noop",
            "--payload",
            "{}",
        ]);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "the job's id: {id:?}");
        quiet(&["status", &id]);
        quiet(&["status", &id, "--json"]);
        quiet(&["queues"]);
        quiet(&["queues", "--json"]);
        quiet(&["workers"]);
        quiet(&["dlq", "list"]);
        let name = format!("quiet-{format}");
        quiet(&[
            "schedule",
            "add",
            &name,
            "--cron",
            "0 0 * * *",
            "--queue",
            "default",
            "--kind",
            "noop",
        ]);
        quiet(&["schedule", "list"]);
        quiet(&["schedule", "pause", &name]);
        quiet(&["schedule", "remove", &name]);
        quiet(&["cancel", &id]);
    }
    // On a namespace nobody declared, the depth probe's expected NOT_FOUND makes lapin
    // log an ERROR: left out, unless --verbose lets the client libraries' lines through.
    let fresh = jobfleet_testkit::unique_namespace("verbose");
    let queues = |verbose: bool| {
        let mut args = vec!["queues"];
        args.extend(verbose.then_some("--verbose"));
        let out = support::jobfleet_on(&fresh, &args)
            .output()
            .expect("run jobfleet");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert_eq!(queues(false), "");
    let verbose = queues(true);
    assert!(
        verbose.contains("lapin"),
        "--verbose lets lapin's lines through:\n{verbose}"
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let backends = jobfleet_connect::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{HOW_TO_START}"));
        let _ = backends
            .broker
            .delete_routes(&["default".to_string()])
            .await;
    });
}
