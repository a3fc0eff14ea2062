//! `jobfleet run`: one job in-process with a handler's result printed, as a library call
//! with handlers of the test's own and as the binary with the built-in ones; a failed
//! job's error said once; a payload field its kind does not take refused before anything
//! runs, and failing a queued job once, without retries.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use jobfleet::commands::run::{run_job, RunArgs};
use jobfleet::Error;
use jobfleet_common::job::ErrorKind;
use jobfleet_common::store::{JobState, MAX_RESULT_BYTES};
use jobfleet_common::Config;
use jobfleet_worker::{JobError, Registry};

fn args(kind: &str, payload: &str) -> RunArgs {
    RunArgs {
        kind: kind.into(),
        payload: Some(payload.as_bytes().to_vec().into()),
        max_attempts: 1,
        timeout: Duration::from_secs(30),
    }
}

fn registry() -> Arc<Registry> {
    let mut registry = Registry::new();
    registry
        .register_fn("sum", |ctx| async move {
            let numbers: Vec<i64> = ctx.payload_json()?;
            ctx.set_result(serde_json::json!({ "sum": numbers.iter().sum::<i64>() }))?;
            Ok(())
        })
        .register_fn("huge", |ctx| async move {
            ctx.set_result("x".repeat(MAX_RESULT_BYTES))?;
            Ok::<(), JobError>(())
        });
    Arc::new(registry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handlers_result_is_kept_in_the_completed_record() {
    let record = run_job(&registry(), &args("sum", "[1, 2, 39]"), Config::default())
        .await
        .expect("ran");
    assert_eq!(record.state, JobState::Completed);
    assert_eq!(record.result, Some(serde_json::json!({ "sum": 42 })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_the_bound_fails_the_job_saying_why() {
    let record = run_job(&registry(), &args("huge", "{}"), Config::default())
        .await
        .expect("ran");
    assert_eq!(record.state, JobState::Dead);
    assert_eq!(record.result, None);
    let error = record.last_error.expect("an error");
    assert!(error.message.contains("over 65536"), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kind_is_a_usage_error_naming_the_kinds() {
    let e = run_job(&registry(), &args("nope", "{}"), Config::default())
        .await
        .expect_err("unknown");
    assert!(matches!(e, Error::Usage(_)), "{e}");
    assert!(e.to_string().contains("huge, sum"), "{e}");
}

#[test]
fn the_binary_prints_the_result_and_fails_with_the_jobs_error() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_jobfleet"))
            .arg("run")
            .args(args)
            .env_remove("JOBFLEET_CONFIG")
            .output()
            .expect("run jobfleet")
    };
    let out = run(&["echo", "--payload", r#"{"hello":[1,2]}"#]);
    assert!(out.status.success(), "{out:?}");
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(printed, serde_json::json!({ "hello": [1, 2] }));
    let out = run(&["fail"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ended dead after 1 attempt(s)"), "{stderr}");
    let out = run(&[
        "flaky",
        "--payload",
        r#"{"fail_times":1}"#,
        "--max-attempts",
        "2",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "null");
}

/// `jobfleet run ARGS` with none of the developer's own settings.
fn jobfleet_run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_jobfleet"))
        .arg("run")
        .args(args)
        .env_remove("JOBFLEET_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run jobfleet")
}

#[test]
fn a_failed_jobs_error_is_said_once() {
    let out = jobfleet_run(&["fail", "--max-attempts", "2"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("fail: this kind always fails").count(),
        1,
        "once:\n{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "only the error line:\n{stderr}");
    assert!(
        stderr.starts_with("error: job ") && stderr.contains("ended dead after 2 attempt(s)"),
        "{stderr}"
    );
}

#[test]
fn a_payload_field_the_kind_does_not_take_is_a_usage_error_and_nothing_runs() {
    let out = jobfleet_run(&["sleep", "--payload", r#"{"ms": 1, "msx": 5}"#]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: the sleep payload is wrong, nothing ran: ")
            && stderr.contains("unknown field `msx`"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_with_a_field_its_kind_does_not_take_fails_once_without_retries() {
    let mut queued = args("sleep", r#"{"ms": 1, "msx": 5}"#);
    queued.max_attempts = 3;
    let builtins = Arc::new(Registry::with_builtins());
    let record = run_job(&builtins, &queued, Config::default())
        .await
        .expect("ran");
    assert_eq!(record.state, JobState::Dead, "{record:?}");
    assert_eq!(record.attempt, 1, "no retry: {record:?}");
    let error = record.last_error.expect("an error");
    assert_eq!(error.kind, ErrorKind::Permanent, "{error:?}");
    assert!(error.message.contains("unknown field `msx`"), "{error:?}");
}
