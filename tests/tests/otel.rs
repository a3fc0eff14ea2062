//! OpenTelemetry export, end to end: a worker process on RabbitMQ + Redis with
//! `log.otlp_endpoint` set exports the span of a job a producer enqueued with a
//! `traceparent`, as a child of the producer's span, over OTLP/HTTP (JSON). The
//! collector is this test's own HTTP endpoint (no OpenTelemetry Collector is packaged for
//! these machines): it takes `POST /v1/traces` as a collector does and keeps the bodies.
//! The worker's JSON log lines name the same trace.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use jobfleet_common::store::JobState;
use jobfleet_common::Job;
use jobfleet_producer::Producer;
use jobfleet_testkit::{delete_routes, purge_store, HOW_TO_START};
use jobfleet_testkit::{shared_config, wait_state};
use jobfleet_tests::processes::{Processes, Role};
use serde_json::Value;

/// An OTLP/HTTP receiver: every JSON body posted to `/v1/traces`.
struct Collector {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Collector {
    async fn start() -> Self {
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let kept = bodies.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            post(move |body: axum::body::Bytes| {
                let kept = kept.clone();
                async move {
                    let value: Value = serde_json::from_slice(&body).expect("OTLP JSON");
                    kept.lock().expect("not poisoned").push(value);
                    // An empty ExportTraceServiceResponse: everything accepted.
                    ([("content-type", "application/json")], "{}")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, bodies }
    }

    /// Every span received so far, with its resource's service name.
    fn spans(&self) -> Vec<(String, Value)> {
        let bodies = self.bodies.lock().expect("not poisoned");
        let mut spans = Vec::new();
        for body in bodies.iter() {
            for resource in body["resourceSpans"].as_array().into_iter().flatten() {
                let service = attribute(&resource["resource"]["attributes"], "service.name")
                    .unwrap_or_default();
                for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                    for span in scope["spans"].as_array().into_iter().flatten() {
                        spans.push((service.clone(), span.clone()));
                    }
                }
            }
        }
        spans
    }
}

/// A string attribute's value from an OTLP attribute list.
fn attribute(attributes: &Value, key: &str) -> Option<String> {
    attributes
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .and_then(|a| a["value"]["stringValue"].as_str())
        .map(str::to_string)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_job_span_is_exported_as_a_child_of_the_producers_span() {
    let collector = Collector::start().await;
    let mut config = shared_config("otel");
    let queue = format!("{}-q", config.namespace);
    config.worker.queues = vec![queue.clone()];
    let backends = match jobfleet_connect::connect(&config).await {
        Ok(b) => b,
        Err(e) => panic!("{e}\nThis test needs RabbitMQ and Redis: {HOW_TO_START}"),
    };
    let mut fleet = Processes::new(env!("CARGO_BIN_EXE_testfleet"), &config);
    fleet.spawn_with(
        Role::Worker,
        &[
            ("JOBFLEET_LOG__OTLP_ENDPOINT", collector.url.as_str()),
            ("JOBFLEET_LOG__OTLP_PROTOCOL", "http/json"),
            ("JOBFLEET_LOG__FORMAT", "json"),
            // Export every 100 ms instead of every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );

    // The producer's span: a trace and a span id of the caller's own.
    let trace_id = hex(&rand::random::<[u8; 16]>());
    let caller_span = hex(&rand::random::<[u8; 8]>());
    let job =
        Job::new(&queue, "echo", "{}").with_trace(format!("00-{trace_id}-{caller_span}-01"), "");
    let producer = Producer::new(&backends, &config);
    let id = producer.enqueue(job).await.expect("enqueued").id;
    wait_state(
        backends.store.as_ref(),
        id,
        JobState::Completed,
        Duration::from_secs(60),
        "rabbitmq+redis",
    )
    .await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (service, span) = loop {
        let found = collector
            .spans()
            .into_iter()
            .find(|(_, span)| span["traceId"] == trace_id.as_str());
        if let Some(found) = found {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no span of trace {trace_id} within 30 s; received: {:?}",
            collector.spans()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(service, "jobfleet-worker");
    assert_eq!(span["parentSpanId"], caller_span.as_str(), "{span}");
    assert_eq!(span["name"], format!("process {queue}"), "{span}");
    // SPAN_KIND_CONSUMER is 5.
    assert!(
        span["kind"] == 5 || span["kind"] == "SPAN_KIND_CONSUMER",
        "{span}"
    );
    assert_eq!(
        attribute(&span["attributes"], "job_id"),
        Some(id.to_string()),
        "{span}"
    );
    let own_span = span["spanId"].as_str().expect("a span id").to_string();
    assert_ne!(own_span, caller_span);

    // The worker's log lines inside the attempt name the trace and the exported span.
    let named = fleet.count_in_logs(Role::Worker, &format!("\"trace_id\":\"{trace_id}\""));
    assert!(named >= 1, "no log line names trace {trace_id}");
    let lines = fleet.count_in_logs(Role::Worker, &format!("\"span_id\":\"{own_span}\""));
    assert!(lines >= 1, "no log line names the exported span {own_span}");

    fleet.kill_all();
    backends.broker.close().await;
    delete_routes(&config, &[queue]).await;
    purge_store(&config).await;
}
