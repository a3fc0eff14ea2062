//! Jobs published from Python (`examples/python_producer.py`, with `pika`) run on a fleet
//! started in-process on RabbitMQ and Redis: the wire format of docs/wire-format.md, checked
//! from the other side of the language boundary.
//!
//! The Python side runs in a throwaway venv made (once, then reused) by
//! `scripts/python-venv.sh` under `target/python-venv`. A machine without Python's venv
//! module, or without access to PyPI, fails these tests with what to install: they never
//! pass without having run the script.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jobfleet_common::store::{DeadFilter, JobState};
use jobfleet_common::{ErrorKind, JobId, Route};
use jobfleet_testkit::recv_job;
use jobfleet_testkit::RabbitRedis;
use jobfleet_testkit::{init_tracing, wait_for, Ctx, Factory, Probe};
use jobfleet_tests::python::{repo_root, show};
use jobfleet_worker::{JobContext, Registry};
use serde_json::{json, Value};
use tokio::process::Command;

/// How long any single outcome may take.
const WITHIN: Duration = Duration::from_secs(30);
/// The kind the Python jobs name.
const KIND: &str = "py-echo";

/// What the handler saw of one run: the job's id, priority and payload bytes.
type Run = (JobId, u8, Bytes);

/// The venv's python, making the venv first if needed.
async fn venv_python() -> PathBuf {
    tokio::task::spawn_blocking(jobfleet_tests::python::venv_python)
        .await
        .expect("the venv helper")
}

/// Runs `python` with `args` (the example script or `-c` code), failing the test if it fails.
async fn run_python(python: &Path, args: &[&str]) -> String {
    let output = Command::new(python)
        .args(args)
        .current_dir(repo_root())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        output.status.success(),
        "python {args:?} failed: {}",
        show(&output)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Publishes `count` jobs of `priority` with `payload` through the example script; returns
/// the ids it printed.
async fn publish(
    python: &Path,
    cx: &Ctx,
    count: usize,
    priority: &str,
    payload: Option<&str>,
) -> Vec<JobId> {
    publish_with(python, cx, count, priority, payload, &[]).await
}

/// [`publish`] with more of the script's flags (`--delay`, `--traceparent`).
async fn publish_with(
    python: &Path,
    cx: &Ctx,
    count: usize,
    priority: &str,
    payload: Option<&str>,
    extra: &[&str],
) -> Vec<JobId> {
    let amqp = jobfleet_testkit::amqp_url();
    let count = count.to_string();
    let mut args = vec![
        "examples/python_producer.py",
        "--amqp-url",
        &amqp,
        "--namespace",
        &cx.config.namespace,
        "--queue",
        &cx.queue,
        "--kind",
        KIND,
        "--count",
        &count,
        "--priority",
        priority,
    ];
    if let Some(payload) = payload {
        args.extend(["--payload", payload]);
    }
    args.extend(extra);
    let stdout = run_python(python, &args).await;
    let ids: Vec<JobId> = stdout
        .lines()
        .map(|line| {
            line.parse()
                .unwrap_or_else(|e| panic!("{line:?} is not a job id: {e}"))
        })
        .collect();
    assert_eq!(
        ids.len().to_string(),
        count,
        "one id per job printed: {stdout}"
    );
    ids
}

/// A registry whose `KIND` handler records every run.
fn recording(runs: &Probe<Run>) -> Registry {
    let mut registry = Registry::new();
    let runs = runs.clone();
    registry.register_fn(KIND, move |ctx: JobContext| {
        let job = ctx.job();
        runs.push((job.id, job.priority.level(), job.payload.clone()));
        async { Ok(()) }
    });
    registry
}

async fn fleet() -> (Ctx, Probe<Run>) {
    init_tracing();
    let factory: Factory = Arc::new(RabbitRedis);
    let mut cx = Ctx::new(&factory, |_| {}).await;
    let runs = Probe::default();
    cx.start_scheduler();
    cx.start_worker(recording(&runs));
    (cx, runs)
}

/// Twenty jobs at four priorities with payloads of every JSON type all complete, and each
/// handler run sees the priority and the payload JSON the script sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_jobs_complete_with_their_payloads() {
    let python = venv_python().await;
    let (mut cx, runs) = fleet().await;
    let batches: [(usize, &str, u8, Option<&str>); 5] = [
        (5, "low", 0, Some("42")),
        (
            5,
            "normal",
            3,
            Some(r#""text with \"quotes\", ünïcode and \n""#),
        ),
        (5, "6", 6, Some("[1, 2.5, null, true, []]")),
        (4, "critical", 9, None),
        (
            1,
            "7",
            7,
            Some(r#"{"to": "ada@example.com", "tags": {"n": [1, 2]}}"#),
        ),
    ];
    // id -> (priority, payload as sent; None for no payload)
    let mut sent: BTreeMap<JobId, (u8, Option<Value>)> = BTreeMap::new();
    for (count, priority, level, payload) in batches {
        let parsed = payload.map(|p| serde_json::from_str::<Value>(p).expect("test JSON"));
        for id in publish(&python, &cx, count, priority, payload).await {
            assert!(
                sent.insert(id, (level, parsed.clone())).is_none(),
                "id {id} repeated"
            );
        }
    }
    assert_eq!(sent.len(), 20);

    for &id in sent.keys() {
        cx.wait_state(id, JobState::Completed, WITHIN).await;
    }
    let runs = runs.items();
    let ran: BTreeSet<JobId> = runs.iter().map(|r| r.0).collect();
    assert_eq!(
        ran,
        sent.keys().copied().collect(),
        "exactly the published jobs ran"
    );
    for (id, level, payload) in runs {
        let (want_level, want_payload) = &sent[&id];
        assert_eq!(level, *want_level, "priority of {id}");
        match want_payload {
            None => assert!(payload.is_empty(), "{id} has no payload, got {payload:?}"),
            Some(want) => {
                let got: Value = serde_json::from_slice(&payload)
                    .unwrap_or_else(|e| panic!("payload of {id} is not JSON ({e}): {payload:?}"));
                assert_eq!(&got, want, "payload of {id}");
            }
        }
    }
    cx.stop().await;
}

/// Publishes, with the example's own functions, a job without `id` and one of priority 42
/// (which the script's command line refuses); prints the second one's id.
const MALFORMED: &str = r#"
import sys
sys.path.insert(0, "examples")
import python_producer as p

url, namespace, queue = sys.argv[1:4]
connection, channel = p.connect(url)
p.declare(channel, namespace, queue)
no_id = p.make_job(queue, "py-echo", {"n": 1})
del no_id["id"]
too_high = p.make_job(queue, "py-echo", {"n": 2}, priority=42)
for job in (no_id, too_high):
    p.publish(channel, namespace, job)
connection.close()
print(too_high["id"])
"#;

/// Malformed jobs from Python are dead letters whose reason names the problem, with the
/// body as sent; a good job after them still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_python_jobs_are_dead_lettered() {
    let python = venv_python().await;
    let (mut cx, runs) = fleet().await;
    let amqp = jobfleet_testkit::amqp_url();
    let args = ["-c", MALFORMED, &amqp, &cx.config.namespace, &cx.queue];
    let stdout = run_python(&python, &args).await;
    let too_high: JobId = stdout.trim().parse().expect("the script prints an id");
    let good = publish(&python, &cx, 1, "high", Some(r#"{"ok": true}"#)).await[0];
    cx.wait_state(good, JobState::Completed, WITHIN).await;

    let store = cx.backends.store.clone();
    let all = DeadFilter::default();
    let two = wait_for(WITHIN, || async {
        store
            .dead_list(&all, 10)
            .await
            .expect("store answers")
            .len()
            == 2
    });
    assert!(two.await, "two dead letters");
    let letters = store.dead_list(&all, 10).await.expect("store answers");
    let find = |kind: ErrorKind| {
        letters
            .iter()
            .find(|l| l.error_kind == kind)
            .unwrap_or_else(|| panic!("a {kind:?} letter among {letters:?}"))
    };

    let no_id = find(ErrorKind::Undecodable);
    assert!(
        no_id.reason.contains("`id`"),
        "reason names the field: {}",
        no_id.reason
    );
    let whole = store.dead_get(no_id.id).await.expect("store answers");
    let body: Value =
        serde_json::from_slice(&whole.expect("the letter").body).expect("body kept as sent");
    assert_eq!(body.get("id"), None);
    assert_eq!(body["payload"], json!({"n": 1}));

    let invalid = find(ErrorKind::Invalid);
    assert_eq!(invalid.id, too_high);
    assert!(
        invalid.reason.contains("priority"),
        "reason names the field: {}",
        invalid.reason
    );
    assert!(
        invalid.reason.contains("42"),
        "reason names the value: {}",
        invalid.reason
    );
    assert_eq!(invalid.queue.as_deref(), Some(cx.queue.as_str()));

    let ran: Vec<JobId> = runs.items().into_iter().map(|r| r.0).collect();
    assert_eq!(ran, [good], "only the good job ran");
    cx.stop().await;
}

/// What the handler saw of a delayed run: the id, when it started and when it was due
/// (Unix ms), and the traceparent it was handed.
type DelayedRun = (JobId, i64, Option<i64>, Option<String>);

/// Jobs published from Python with `--delay` wait on the delayed route and run no earlier
/// than their `run_at_ms`; `--traceparent` reaches the handler as the trace it hands on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_python_jobs_run_when_due_with_the_callers_trace() {
    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let python = venv_python().await;
    init_tracing();
    let factory: Factory = Arc::new(RabbitRedis);
    let mut cx = Ctx::new(&factory, |_| {}).await;
    let runs: Probe<DelayedRun> = Probe::default();
    let mut registry = Registry::new();
    let probe = runs.clone();
    registry.register_fn(KIND, move |ctx: JobContext| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as i64;
        let trace = ctx.trace().map(|t| t.traceparent.clone());
        probe.push((ctx.job().id, now, ctx.job().run_at_ms, trace));
        async { Ok(()) }
    });
    cx.start_scheduler();
    cx.start_worker(registry);

    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    let extra = ["--delay", "2", "--traceparent", &traceparent];
    let sent: BTreeSet<JobId> = publish_with(&python, &cx, 3, "normal", None, &extra)
        .await
        .into_iter()
        .collect();
    assert_eq!(sent.len(), 3);
    for &id in &sent {
        cx.wait_state(id, JobState::Completed, WITHIN).await;
    }
    let runs = runs.items();
    assert_eq!(runs.iter().map(|r| r.0).collect::<BTreeSet<_>>(), sent);
    for (id, started, due, trace) in runs {
        let due = due.expect("the job carries its run_at_ms");
        assert!(started >= due, "{id} started {} ms early", due - started);
        let trace = trace.expect("the handler is handed the caller's trace");
        assert!(trace.starts_with(&format!("00-{TRACE_ID}-")), "{trace}");
        assert_ne!(
            trace, traceparent,
            "the attempt is the parent of what it hands on"
        );
    }
    cx.stop().await;
}

/// The Python examples of docs/wire-format.md ("Publishing from another language over
/// AMQP"), run as written but for the namespace and the server's address: both jobs they
/// publish decode, pass the producer's checks, and land where the docs say (the ready
/// queue, and the delayed route for the one due later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_python_examples_publish_valid_jobs_to_the_routes_they_name() {
    let python = venv_python().await;
    init_tracing();
    let factory: Factory = Arc::new(RabbitRedis);
    let mut cx = Ctx::new(&factory, |_| {}).await;
    let doc = std::fs::read_to_string(repo_root().join("docs/wire-format.md")).expect("the doc");
    let section = &doc[doc.find("Python with `pika`:").expect("the Python section")..];
    let blocks: Vec<&str> = section
        .split("```python\n")
        .skip(1)
        .take(2)
        .map(|b| &b[..b.find("\n```").expect("fence closes")])
        .collect();
    assert_eq!(blocks.len(), 2, "the ready and the delayed example");
    // One script: the first block's close moves to the end, after the second.
    let script = format!(
        "{}\n{}\nconn.close()\n",
        blocks[0].replace("conn.close()", ""),
        blocks[1]
    )
    .replace(
        "amqp://guest:guest@localhost:5672/%2f",
        &jobfleet_testkit::amqp_url(),
    )
    .replace("\"jobfleet.", &format!("\"{}.", cx.config.namespace));
    run_python(&python, &["-c", &script]).await;

    let now = jobfleet_common::clock::system().now_ms();
    let limits = jobfleet_common::limits::Limits::default();
    let mut ready = cx
        .backends
        .broker
        .consume(&Route::Ready("emails".into()), 10)
        .await
        .expect("consume");
    let job = recv_job(&mut ready, WITHIN)
        .await
        .expect("the ready example's job");
    assert_eq!((job.queue.as_str(), job.kind.as_str()), ("emails", "send"));
    assert_eq!(job.priority.level(), 6);
    assert_eq!(&job.payload[..], br#"{"to": "ada@example.com"}"#);
    assert_eq!(limits.validate(&job, now), Ok(()));
    let mut delayed = cx
        .backends
        .broker
        .consume(&Route::Delayed, 10)
        .await
        .expect("consume");
    let later = recv_job(&mut delayed, WITHIN)
        .await
        .expect("the delayed example's job");
    assert!(later.run_at_ms.is_some_and(|t| t > now), "{later:?}");
    assert_ne!(later.id, job.id);
    assert_eq!(limits.validate(&later, now), Ok(()));
    drop((ready, delayed));
    cx.backends
        .broker
        .delete_routes(&["emails".to_string()])
        .await
        .expect("delete the example's queue");
    cx.stop().await;
}
