//! `jobfleet bench` as a user runs it, on each shared broker: one JSON line with the
//! jobfleet figures and the bare client's baseline from the same run, and nothing left
//! behind on the services afterwards. (The figures' sizes are not checked: these machines
//! are too noisy for that; `docs/benchmarks.md` has measured ones.)
//!
//! Services as for the rest of the suite: `TEST_AMQP_URL`, `TEST_REDIS_URL` and
//! `TEST_KAFKA_BROKERS`, started by `scripts/test.sh`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use jobfleet_testkit::{amqp_url, redis_url, require_kafka_url};

/// The Kafka bootstrap servers (`host:port`), or a panic that says how to start Kafka.
fn kafka_brokers() -> String {
    require_kafka_url()
        .trim_start_matches("kafka://")
        .to_string()
}

/// Runs `jobfleet --config <file> bench <args>` and returns the report and the run's
/// namespace (from stderr).
fn bench(config: &str, args: &[&str]) -> (serde_json::Value, String) {
    let dir = std::env::temp_dir().join(format!("jobfleet-bench-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path: PathBuf = dir.join("jobfleet.toml");
    std::fs::write(&path, config).expect("write the config");
    let out = Command::new(env!("CARGO_BIN_EXE_jobfleet"))
        .arg("--config")
        .arg(&path)
        .arg("bench")
        .args(args)
        .env_remove("JOBFLEET_CONFIG")
        .env_remove("JOBFLEET_BROKER")
        .env_remove("JOBFLEET_STORE")
        .env_remove("RUST_LOG")
        // The test Redis may keep nothing on disk.
        .env("JOBFLEET_REDIS__REQUIRE_PERSISTENCE", "false")
        .output()
        .expect("run jobfleet bench");
    let (stdout, stderr) = succeeded(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stdout:\n{stdout}");
    let report: serde_json::Value = serde_json::from_str(lines[0]).expect("the line is JSON");
    let namespace = stderr
        .split_whitespace()
        .skip_while(|w| *w != "namespace")
        .nth(1)
        .unwrap_or_else(|| panic!("no namespace in stderr:\n{stderr}"))
        .to_string();
    (report, namespace)
}

/// The stdout and stderr of a command that must have succeeded (else a panic showing
/// both).
fn succeeded(out: &std::process::Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// The checks both brokers' reports must pass.
fn check_report(report: &serde_json::Value, broker: &str, jobs: u64) {
    assert_eq!(report["broker"], broker, "{report}");
    assert_eq!(report["jobs"].as_u64(), Some(jobs), "{report}");
    let rate = |path: &[&str]| {
        let value = path.iter().fold(report, |v, key| &v[*key]);
        value
            .as_f64()
            .unwrap_or_else(|| panic!("{path:?} in {report}"))
    };
    for path in [
        &["enqueue_per_s"][..],
        &["process_per_s"],
        &["e2e_per_s"],
        &["baseline", "raw_e2e_per_s"],
        &["baseline", "raw_publish_per_s"],
        &["ratio_e2e"],
    ] {
        let value = rate(path);
        assert!(
            value.is_finite() && value > 0.0,
            "{path:?} = {value} in {report}"
        );
    }
    // End to end includes the enqueue and the processing.
    assert!(
        rate(&["e2e_per_s"]) <= rate(&["process_per_s"]) * 1.001,
        "{report}"
    );
    let expected_ratio = rate(&["e2e_per_s"]) / rate(&["baseline", "raw_e2e_per_s"]);
    assert!(
        (rate(&["ratio_e2e"]) - expected_ratio).abs() < 0.01,
        "ratio_e2e is e2e over the baseline's: {report}"
    );
    let (p50, p99) = (rate(&["latency_ms", "p50"]), rate(&["latency_ms", "p99"]));
    assert!(0.0 <= p50 && p50 <= p99, "{report}");
}

/// How many Redis keys are left under `namespace`.
fn redis_keys_left(namespace: &str) -> usize {
    let client = redis::Client::open(redis_url()).expect("redis URL");
    let mut conn = client.get_connection().unwrap_or_else(|e| {
        panic!(
            "Redis at {} is unreachable ({e}): start it (scripts/test.sh does)",
            redis_url()
        )
    });
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}:*"))
        .query(&mut conn)
        .expect("KEYS");
    keys.len()
}

/// `bench <args>` on the shared RabbitMQ and Redis: the report, after checking the run
/// left no store keys behind.
fn bench_on_rabbitmq(args: &[&str]) -> serde_json::Value {
    let config = format!("broker = {:?}\nstore = {:?}\n", amqp_url(), redis_url());
    let (report, namespace) = bench(&config, args);
    assert_eq!(
        redis_keys_left(&namespace),
        0,
        "store keys left under {namespace}"
    );
    report
}

#[test]
fn bench_on_rabbitmq_reports_jobfleet_beside_raw_lapin_and_cleans_up() {
    let report = bench_on_rabbitmq(&["--jobs", "400", "--concurrency", "16"]);
    check_report(&report, "rabbitmq", 400);
}

#[test]
fn bench_on_kafka_reports_jobfleet_beside_raw_rdkafka_and_cleans_up() {
    let brokers = kafka_brokers();
    // A short heartbeat, as the suite's Kafka factory sets, so the group forms quickly.
    let config = format!(
        "broker = \"kafka://{brokers}\"\nstore = {:?}\n\n[kafka.properties]\n\
         \"heartbeat.interval.ms\" = \"100\"\n",
        redis_url()
    );
    let (report, namespace) = bench(&config, &["--jobs", "400", "--concurrency", "16"]);
    check_report(&report, "kafka", 400);
    assert_eq!(
        redis_keys_left(&namespace),
        0,
        "store keys left under {namespace}"
    );
    let metadata_client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("metadata client");
    let metadata = metadata_client
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let left: Vec<&str> = metadata
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|name| name.starts_with(&format!("{namespace}.")))
        .collect();
    assert!(left.is_empty(), "topics left under {namespace}: {left:?}");
}

/// A latency tail's percentiles, checked to be ordered and finite.
fn check_tail(tail: &serde_json::Value, report: &serde_json::Value) {
    let at = |q: &str| {
        tail[q]
            .as_f64()
            .unwrap_or_else(|| panic!("{q} of {tail} in {report}"))
    };
    let (p50, p99, p999, max) = (at("p50"), at("p99"), at("p999"), at("max"));
    assert!(
        p50.is_finite() && p50 <= p99 && p99 <= p999 && p999 <= max,
        "{tail} in {report}"
    );
}

#[test]
fn bench_latency_mode_offers_each_load_open_loop() {
    let report = bench_on_rabbitmq(&[
        "--mode",
        "latency",
        "--jobs",
        "400",
        "--concurrency",
        "16",
        "--load",
        "0.1,0.5",
        "--duration",
        "1s",
    ]);
    assert_eq!(report["mode"], "latency", "{report}");
    check_report(&report["throughput"], "rabbitmq", 400);
    let max = report["throughput"]["e2e_per_s"]
        .as_f64()
        .expect("a maximum");
    let loads = report["loads"].as_array().expect("loads");
    assert_eq!(loads.len(), 2, "{report}");
    for (load, fraction) in loads.iter().zip([0.1, 0.5]) {
        assert_eq!(load["load"].as_f64(), Some(fraction), "{report}");
        let offered = load["offered_per_s"].as_f64().expect("offered");
        assert!((offered - fraction * max).abs() <= 0.1 + 1e-9, "{report}");
        let jobs = load["jobs"].as_u64().expect("jobs");
        assert!(
            jobs >= 1 && jobs.abs_diff(offered.round() as u64) <= 1,
            "{report}"
        );
        check_tail(&load["start_ms"], &report);
        check_tail(&load["done_ms"], &report);
        // A job is done after it started.
        assert!(
            load["done_ms"]["p50"].as_f64() >= load["start_ms"]["p50"].as_f64(),
            "{report}"
        );
    }
}

#[test]
fn bench_delayed_mode_reports_lateness_and_the_bursts_drain() {
    let report = bench_on_rabbitmq(&[
        "--mode",
        "delayed",
        "--jobs",
        "300",
        "--concurrency",
        "16",
        "--spread",
        "2s",
    ]);
    assert_eq!(report["mode"], "delayed", "{report}");
    check_report(&report["throughput"], "rabbitmq", 300);
    for load in ["spread", "burst"] {
        let figures = &report[load];
        assert_eq!(figures["jobs"].as_u64(), Some(300), "{report}");
        // The one assertion on timing: the scheduler never releases a job early.
        assert_eq!(figures["early"].as_u64(), Some(0), "{load} in {report}");
        check_tail(&figures["late_ms"], &report);
        assert!(figures["drain_per_s"].as_f64() > Some(0.0), "{report}");
    }
    let expected = report["burst"]["drain_per_s"].as_f64().expect("drain")
        / report["throughput"]["e2e_per_s"].as_f64().expect("e2e");
    assert!(
        (report["ratio_burst"].as_f64().expect("ratio") - expected).abs() < 0.01,
        "{report}"
    );
}

#[test]
fn bench_memory_mode_reports_redis_bytes_per_delayed_job() {
    let report = bench_on_rabbitmq(&["--mode", "memory", "--jobs", "500", "--payload-bytes", "64"]);
    assert_eq!(report["mode"], "memory", "{report}");
    assert_eq!(report["broker"], "rabbitmq", "{report}");
    let memory = &report["memory"];
    assert_eq!(memory["jobs"].as_u64(), Some(500), "{report}");
    let per_job = memory["bytes_per_job"].as_f64().expect("bytes per job");
    let beyond = memory["beyond_payload"]
        .as_f64()
        .expect("beyond the payload");
    // No bound on the figure itself: the suite's other tests share this Redis and move
    // its memory at the same time; docs/benchmarks.md has a measured one.
    assert!(
        per_job.is_finite() && (per_job - 64.0 - beyond).abs() < 0.2,
        "{report}"
    );
    let (before, after) = (
        memory["used_before"].as_u64(),
        memory["used_after"].as_u64(),
    );
    assert!(before > Some(0) && after > Some(0), "{report}");
    assert!(memory["process_rss_kib"].as_u64() > Some(0), "{report}");
}

#[test]
fn bench_scale_mode_runs_each_number_of_workers() {
    let report = bench_on_rabbitmq(&[
        "--mode",
        "scale",
        "--jobs",
        "300",
        "--concurrency",
        "8",
        "--workers",
        "1,3",
    ]);
    assert_eq!(report["mode"], "scale", "{report}");
    check_report(&report["throughput"], "rabbitmq", 300);
    let raw = report["throughput"]["baseline"]["raw_e2e_per_s"]
        .as_f64()
        .expect("a baseline");
    let runs = report["workers"].as_array().expect("workers");
    assert_eq!(runs.len(), 2, "{report}");
    for (run, workers) in runs.iter().zip([1, 3]) {
        assert_eq!(run["workers"].as_u64(), Some(workers), "{report}");
        let e2e = run["e2e_per_s"].as_f64().expect("e2e");
        assert!(e2e > 0.0, "{report}");
        let ratio = run["ratio_e2e"].as_f64().expect("ratio");
        assert!((ratio - e2e / raw).abs() < 0.01, "{report}");
    }
}

#[test]
fn the_worker_processes_script_times_each_count_and_cleans_up() {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench-worker-processes.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(["300", "1", "2"])
        .env("BENCH_BIN", env!("CARGO_BIN_EXE_jobfleet"))
        .env("JOBFLEET_BROKER", amqp_url())
        .env("JOBFLEET_STORE", redis_url())
        .env_remove("JOBFLEET_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run scripts/bench-worker-processes.sh");
    let (stdout, _) = succeeded(&out);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (line, workers) in lines.iter().zip([1, 2]) {
        assert_eq!(line["workers"].as_u64(), Some(workers), "{line}");
        assert_eq!(line["jobs"].as_u64(), Some(300), "{line}");
        assert!(line["jobs_per_sec"].as_f64() > Some(0.0), "{line}");
        let namespace = line["namespace"].as_str().expect("namespace");
        assert_eq!(redis_keys_left(namespace), 0, "keys left under {namespace}");
    }
}
