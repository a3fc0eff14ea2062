//! The `jobfleet` binary as a user runs it: the whole dev fleet to idle, a broken
//! configuration, and the shared-service commands refusing the embedded backend.

use std::path::PathBuf;
use std::process::{Command, Output};

fn jobfleet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jobfleet"))
        .args(args)
        // The test must not pick up a developer's configuration or services.
        .env_remove("JOBFLEET_CONFIG")
        .env_remove("JOBFLEET_BROKER")
        .env_remove("JOBFLEET_STORE")
        .env_remove("RUST_LOG")
        .env_remove("TRACEPARENT")
        .env_remove("TRACESTATE")
        .output()
        .expect("run jobfleet")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jobfleet-cli-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write");
    path
}

#[test]
fn dev_until_idle_runs_every_job_to_a_terminal_state() {
    let out = jobfleet(&[
        "dev",
        "--until-idle",
        "--jobs",
        "150",
        "--timeout",
        "90s",
        "--http",
        "127.0.0.1:0",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let json = stdout
        .lines()
        .find_map(|l| l.strip_prefix("summary: "))
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"));
    let summary: serde_json::Value = serde_json::from_str(json).expect("summary is JSON");
    let n = |key: &str| {
        summary[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {summary}"))
    };
    // 150 jobs hold 5 `fail` jobs (one per 30): exactly those end dead.
    assert_eq!(n("total"), 150);
    assert!(n("completed") > 0, "{summary}");
    assert_eq!(n("dead"), 5, "{summary}");
    assert!(n("retried") > 0, "{summary}");
    assert_eq!(
        n("completed") + n("dead") + n("cancelled"),
        n("total"),
        "{summary}"
    );
    assert_eq!(n("unfinished"), 0, "{summary}");
    let dashboard = summary["dashboard"].as_str().unwrap_or_default();
    assert!(dashboard.starts_with("http://127.0.0.1:"), "{summary}");
    assert!(
        stderr.contains(&format!("dashboard, API and /metrics at {dashboard}")),
        "{stderr}"
    );
}

#[test]
fn a_broken_config_exits_2_naming_the_key() {
    let path = temp_file("jobfleet.toml", "[worker]\nconcurrency = 0\n");
    let out = jobfleet(&["--config", path.to_str().expect("utf8 path"), "queues"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains("config key `worker.concurrency`"),
        "stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "stderr:\n{stderr}"
    );
}

#[test]
fn an_unknown_key_from_the_environment_config_variable_is_refused() {
    let path = temp_file("jobfleet.toml", "brokr = \"embedded\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_jobfleet"))
        .arg("worker")
        .env("JOBFLEET_CONFIG", &path)
        .output()
        .expect("run jobfleet");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("brokr"), "{}", text(&out.stderr));
}

#[test]
fn shared_service_commands_refuse_the_embedded_backend() {
    let id = "0190b3a4-0000-7000-8000-000000000000";
    let commands: [&[&str]; 6] = [
        &["worker"],
        &["scheduler"],
        &["enqueue", "--queue", "q", "--kind", "echo"],
        &["status", id],
        &["dlq", "list"],
        &["cancel", id],
    ];
    for args in commands {
        let out = jobfleet(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("the embedded backend lives inside one process; use `jobfleet dev`"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn bad_flag_values_are_usage_errors() {
    let out = jobfleet(&["dev", "--timeout", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("\"soon\" is not a duration"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn purging_everything_needs_all() {
    let out = jobfleet(&["dlq", "purge"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("add --all"),
        "{}",
        text(&out.stderr)
    );
}

/// A password in a broker or store URL, in the user info or the query, never reaches the
/// output, whatever fails (needs the test Redis: the broker is tried after the store).
#[test]
fn a_canary_password_never_shows_in_errors() {
    const CANARY: &str = "S3cretCanary";
    let redis = jobfleet_testkit::redis_url();
    let brokers = [
        format!("kafka://u:{CANARY}@127.0.0.1:1"),
        format!("kafka://127.0.0.1:1?password={CANARY}"),
        format!("amqp://u:{CANARY}@127.0.0.1:1/%2f"),
        format!("nats://u:{CANARY}@127.0.0.1:1"),
    ];
    for broker in &brokers {
        let out = Command::new(env!("CARGO_BIN_EXE_jobfleet"))
            .args(["worker", "--broker", broker, "--store", &redis])
            .env_remove("JOBFLEET_CONFIG")
            .env("JOBFLEET_REDIS__REQUIRE_PERSISTENCE", "false")
            .output()
            .expect("run jobfleet");
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(!out.status.success(), "{broker}: {stderr}");
        assert!(
            !stdout.contains(CANARY) && !stderr.contains(CANARY),
            "{broker} leaked:\n{stdout}\n{stderr}"
        );
        assert!(
            stderr.contains("***"),
            "{broker}: the URL is shown redacted: {stderr}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_jobfleet"))
        .args(["queues", "--broker", "amqp://127.0.0.1:1/%2f"])
        .args(["--store", &format!("redis://:{CANARY}@127.0.0.1:1/")])
        .env_remove("JOBFLEET_CONFIG")
        .output()
        .expect("run jobfleet");
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success() && !stderr.contains(CANARY),
        "{stderr}"
    );
}

/// Flags whose values make an invalid job are usage errors: exit 2, the flag named, and
/// nothing connects (no services are configured here).
#[test]
fn invalid_enqueue_flags_exit_2_naming_the_flag() {
    for (flag, value, named) in [
        ("--max-attempts", "0", "--max-attempts: "),
        ("--timeout", "0s", "--timeout: "),
        ("--delay", "400days", "--delay: "),
        ("--queue", "bad queue!", "--queue: "),
        ("--kind", "", "--kind: "),
        ("--traceparent", "00-abc-01", "--traceparent: "),
    ] {
        let mut args = vec!["enqueue", "--broker", "amqp://127.0.0.1:1/%2f"];
        args.extend(["--store", "redis://127.0.0.1:1/"]);
        if flag != "--queue" {
            args.extend(["--queue", "emails"]);
        }
        if flag != "--kind" {
            args.extend(["--kind", "send"]);
        }
        let arg = format!("{flag}={value}");
        args.push(&arg);
        let out = jobfleet(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}={value}: {stderr}");
        assert!(stderr.contains(named), "{flag}={value}: {stderr}");
    }
}

/// An invalid schedule is refused before anything connects, naming the field, exit 2:
/// at `schedule add` and in the config file.
#[test]
fn invalid_schedules_exit_2_naming_the_field() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--cron", "61 * * * *"],
            "cron: \"61 * * * *\" is not a cron expression",
        ),
        (
            &["--cron", "* * *"],
            "cron: \"* * *\" is not a cron expression",
        ),
        (
            &["--cron", "* * * * *", "--timezone", "Mars/Olympus"],
            "timezone: \"Mars/Olympus\" is not an IANA time zone",
        ),
        (
            &["--cron", "* * * * *", "--payload", "{nope"],
            "--payload is not JSON",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["schedule", "add", "s", "--queue", "q", "--kind", "echo"];
        args.extend_from_slice(flags);
        // A store that does not exist: refusing must not need one.
        args.extend_from_slice(&[
            "--broker",
            "amqp://127.0.0.1:1",
            "--store",
            "redis://127.0.0.1:1",
        ]);
        let out = jobfleet(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
    }
    let files = [
        (
            "[schedules.nightly]\ncron = \"30 25 * * *\"\nqueue = \"q\"\nkind = \"echo\"\n",
            "config key `schedules.nightly.cron`",
        ),
        (
            "[schedules.nightly]\ncron = \"@daily\"\ntimezone = \"Europe/Nowhere\"\nqueue = \"q\"\nkind = \"echo\"\n",
            "config key `schedules.nightly.timezone`",
        ),
        (
            "[schedules.nightly]\ncron = \"@daily\"\nqueue = \"q\"\nkind = \"echo\"\nmissed = \"never\"\n",
            "missed",
        ),
        (
            "[schedules.\"bad name\"]\ncron = \"@daily\"\nqueue = \"q\"\nkind = \"echo\"\n",
            "config key `schedules.bad name`",
        ),
    ];
    for (contents, expected) in files {
        let path = temp_file("jobfleet.toml", contents);
        let out = jobfleet(&["--config", path.to_str().expect("utf8 path"), "scheduler"]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{contents}: {stderr}");
        assert!(stderr.contains(expected), "{contents}: {stderr}");
    }
}

#[test]
fn an_invalid_pipeline_file_is_refused_naming_the_field() {
    let file = temp_file(
        "p.toml",
        "[[steps]]\nname = \"a\"\nqueue = \"q\"\nkind = \"k\"\nfan_out = []\n",
    );
    let file = file.to_str().expect("utf8 path");
    let out = jobfleet(&[
        "pipeline",
        "submit",
        file,
        "--broker",
        "amqp://127.0.0.1:1",
        "--store",
        "redis://127.0.0.1:1",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("steps[0].fan_out: must not be empty"),
        "{stderr}"
    );
}
