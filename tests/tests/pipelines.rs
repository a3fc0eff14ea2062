//! Pipelines (issue 13): steps in turn, each given the previous result, a fan-out step
//! whose children run on two workers, and a final step that runs once with all their
//! results; a failed step stops the pipeline, naming the step and why. The same checks
//! run on the embedded backend and on RabbitMQ + Redis, with a scheduler and two workers
//! in this process.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::pipeline::{step_job_id, PipelineSpec};
use jobfleet_common::{Backends, Config, JobId};
use jobfleet_scheduler::ops::{self, PipelineView};
use jobfleet_testkit::shared_config;
use jobfleet_testkit::{delete_routes, purge_store, Fleet, HOW_TO_START};
use jobfleet_worker::{JobError, Registry};
use serde::Deserialize;
use serde_json::json;

/// The built-in kinds and the test's; `sums` counts runs of `sum`.
fn registry(sums: Arc<AtomicUsize>) -> Registry {
    #[derive(Deserialize)]
    struct Numbers {
        n: i64,
    }
    #[derive(Deserialize)]
    struct Item {
        item: i64,
    }
    #[derive(Deserialize)]
    struct Previous {
        previous: Vec<i64>,
    }
    let mut registry = Registry::with_builtins();
    registry
        .register_fn("numbers", |ctx| async move {
            let Numbers { n } = ctx.payload_json()?;
            ctx.set_result((1..=n).collect::<Vec<_>>())?;
            Ok(())
        })
        .register_fn("square", |ctx| async move {
            let Item { item } = ctx.payload_json()?;
            ctx.set_result(item * item)?;
            Ok(())
        })
        .register_fn("sum", move |ctx| {
            let sums = sums.clone();
            async move {
                sums.fetch_add(1, Ordering::SeqCst);
                let Previous { previous } = ctx.payload_json()?;
                ctx.set_result(json!({ "sum": previous.iter().sum::<i64>(), "of": previous }))?;
                Ok::<(), JobError>(())
            }
        });
    registry
}

/// numbers → `middle` fanned out over 1..=`width` → sum.
fn pipeline(queue: &str, middle: &str, width: i64) -> PipelineSpec {
    let items: Vec<String> = (1..=width).map(|i| i.to_string()).collect();
    let items = items.join(", ");
    PipelineSpec::parse(&format!(
        r#"
name = "squares"

[[steps]]
name = "numbers"
queue = "{queue}"
kind = "numbers"
payload = {{ n = 4 }}

[[steps]]
name = "{middle}"
queue = "{queue}"
kind = "{middle}"
max_attempts = 1
fan_out = [{items}]

[[steps]]
name = "sum"
queue = "{queue}"
kind = "sum"
"#
    ))
    .expect("parses")
}

/// A scheduler and two workers on `backends`, until [`Fleet::stop_roles`].
fn fleet(config: &Config, backends: &Backends, sums: &Arc<AtomicUsize>) -> Fleet {
    let mut fleet = Fleet::new(config.clone(), backends.clone());
    fleet.start_scheduler();
    for _ in 0..2 {
        fleet.start_worker(registry(sums.clone()));
    }
    fleet
}

async fn settled(backends: &Backends, id: JobId) -> PipelineView {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let view = ops::pipeline_status(&*backends.store, id)
            .await
            .expect("store")
            .expect("the pipeline exists");
        if view.state != "running" {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still running after 30 s: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn check(config: Config, backends: Backends) {
    let queue = config.worker.queues[0].clone();
    let sums = Arc::new(AtomicUsize::new(0));
    let mut fleet = fleet(&config, &backends, &sums);

    let id = ops::pipeline_submit(
        &*backends.store,
        &*backends.clock,
        &config.limits,
        pipeline(&queue, "square", 4),
    )
    .await
    .expect("submitted");
    let view = settled(&backends, id).await;
    assert_eq!(view.state, "completed", "{view:?}");
    assert_eq!(view.result, Some(json!({ "sum": 30, "of": [1, 4, 9, 16] })));
    let counts: Vec<(usize, usize)> = view.steps.iter().map(|s| (s.completed, s.jobs)).collect();
    assert_eq!(counts, [(1, 1), (4, 4), (1, 1)]);
    // The final step got its children's results in order, and ran once.
    let sum = backends
        .store
        .record(step_job_id(id, 2, 0))
        .await
        .expect("store")
        .expect("recorded");
    assert_eq!(sum.attempt, 1);
    let numbers = backends
        .store
        .record(step_job_id(id, 0, 0))
        .await
        .expect("store")
        .expect("recorded");
    assert_eq!(numbers.result, Some(json!([1, 2, 3, 4])));
    assert_eq!(sums.load(Ordering::SeqCst), 1);

    // Wide: 64 children finishing together on two workers; the final step runs once.
    let wide = ops::pipeline_submit(
        &*backends.store,
        &*backends.clock,
        &config.limits,
        pipeline(&queue, "square", 64),
    )
    .await
    .expect("submitted");
    let view = settled(&backends, wide).await;
    assert_eq!(view.state, "completed", "{view:?}");
    let expected: i64 = (1..=64).map(|i| i * i).sum();
    assert_eq!(
        view.result.as_ref().map(|r| r["sum"].clone()),
        Some(json!(expected))
    );
    assert_eq!(
        sums.load(Ordering::SeqCst),
        2,
        "the final step ran once more, not twice"
    );

    // A step that fails stops the pipeline there: the next step is never enqueued.
    let failing = ops::pipeline_submit(
        &*backends.store,
        &*backends.clock,
        &config.limits,
        pipeline(&queue, "fail", 4),
    )
    .await
    .expect("submitted");
    let view = settled(&backends, failing).await;
    assert_eq!(view.state, "failed", "{view:?}");
    let failure = view.failure.clone().expect("a failure");
    assert!(failure.starts_with("step fail: job "), "{failure}");
    assert!(
        failure.contains("fail: this kind always fails"),
        "{failure}"
    );
    let states: Vec<&str> = view.steps.iter().map(|s| s.state).collect();
    assert_eq!(states, ["completed", "failed", "waiting"], "{view:?}");

    fleet.stop_roles().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_with_a_fan_out_step_runs_on_the_embedded_backend() {
    let mut config = Config::default();
    config.worker.queues = vec!["data".into()];
    config.scheduler.tick = Duration::from_millis(20);
    check(config, Backends::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_with_a_fan_out_step_runs_on_rabbitmq_and_redis() {
    let mut config = shared_config("pipeline");
    let queue = jobfleet_testkit::unique_namespace("q");
    config.worker.queues = vec![queue.clone()];
    config.scheduler.tick = Duration::from_millis(20);
    let backends = jobfleet_connect::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}: {HOW_TO_START}"));
    check(config.clone(), backends).await;
    delete_routes(&config, &[queue]).await;
    purge_store(&config).await;
}
