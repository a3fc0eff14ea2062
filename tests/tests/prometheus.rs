//! A real Prometheus (Debian's `prometheus`, installed by scripts/test.sh) scrapes a
//! worker process and a scheduler process running on RabbitMQ + Redis: both targets are
//! up, the fleet gauges and the workers' counters arrive, and every query of the Grafana
//! dashboard (deploy/grafana/dashboards/jobfleet.json) and of the KEDA trigger is valid
//! PromQL that Prometheus answers, the ones the autoscaler and the main panels need with
//! data.

use jobfleet_testkit::free_addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jobfleet_common::config::AccessToken;
use jobfleet_common::Job;
use jobfleet_producer::Producer;
use jobfleet_testkit::shared_config;
use jobfleet_testkit::{delete_routes, purge_store, HOW_TO_START};
use jobfleet_tests::browser::http;
use jobfleet_tests::processes::{Processes, Role};
use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";
/// The scheduler's access token: it must show in no log line and no scrape.
const CANARY: &str = "canary-token-5d2e8b1f0a";

/// A Prometheus server of the test's own, killed on drop.
struct Prometheus {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Prometheus {
    fn start(targets: &[(&str, &str)]) -> Self {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: install Debian's prometheus (apt-get install -y \
             prometheus); scripts/test.sh does this itself"
        );
        let dir = std::env::temp_dir().join(format!("jobfleet-prom-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let jobs: String = targets
            .iter()
            .map(|(job, addr)| {
                format!("  - job_name: {job}\n    static_configs:\n      - targets: [\"{addr}\"]\n")
            })
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{jobs}"
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write the config");
        let addr = free_addr();
        let child = Command::new(PROMETHEUS)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {PROMETHEUS}: {e}"));
        Self { child, addr, dir }
    }

    /// Waits until it accepts connections.
    async fn listening(&self) {
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(&self.addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{PROMETHEUS} did not listen on {} within 30 s", self.addr);
    }

    /// `GET path` on its HTTP API, as JSON.
    async fn api(&self, path: &str) -> Value {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let (_, body) = http(&self.addr, request.as_bytes()).await;
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    }

    /// An instant query's result vector; panics unless Prometheus calls it a success.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let encoded: String = expr
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let reply = self.api(&format!("/api/v1/query?query={encoded}")).await;
        assert_eq!(reply["status"], "success", "{expr}: {reply}");
        reply["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `check` every 500 ms for up to `within`; the last value.
async fn eventually<F, Fut, T>(within: Duration, mut check: F) -> (bool, T)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (bool, T)>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (ok, value) = check().await;
        if ok || tokio::time::Instant::now() >= deadline {
            return (ok, value);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_worker_and_a_scheduler_and_answers_every_dashboard_query() {
    let mut config = shared_config("prom");
    let queue = format!("{}-q", config.namespace);
    let idle = format!("{}-idle", config.namespace);
    config.worker.queues = vec![queue.clone()];
    config.worker.heartbeat = Duration::from_millis(500);
    let (scheduler_addr, worker_addr) = (free_addr(), free_addr());
    let backends = match jobfleet_connect::connect(&config).await {
        Ok(b) => b,
        Err(e) => panic!("{e}\nThis test needs RabbitMQ and Redis: {HOW_TO_START}"),
    };
    let mut fleet = Processes::new(env!("CARGO_BIN_EXE_testfleet"), &config);
    let s = scheduler_addr.clone();
    fleet.spawn_tweaked(Role::Scheduler, |c| {
        c.scheduler.http = Some(s);
        c.scheduler.http_token = Some(AccessToken::new(CANARY));
    });
    let w = worker_addr.clone();
    fleet.spawn_tweaked(Role::Worker, |c| c.worker.http = Some(w));

    let producer = Producer::new(&backends, &config);
    let jobs: Vec<Job> = (0..20)
        .map(|i| Job::new(&queue, "echo", format!("{i}")))
        .collect();
    producer.enqueue_many(jobs).await.expect("enqueued");
    // Jobs on a queue nobody consumes: a backlog with an age.
    let waiting: Vec<Job> = (0..3)
        .map(|i| Job::new(&idle, "echo", format!("{i}")))
        .collect();
    producer.enqueue_many(waiting).await.expect("enqueued");

    let prometheus = Prometheus::start(&[
        ("jobfleet-scheduler", &scheduler_addr),
        ("jobfleet-worker", &worker_addr),
    ]);
    prometheus.listening().await;
    let (up, targets) = eventually(Duration::from_secs(60), || async {
        let reply = prometheus.api("/api/v1/targets").await;
        let active = reply["data"]["activeTargets"].clone();
        let all_up = active
            .as_array()
            .is_some_and(|t| t.len() == 2 && t.iter().all(|t| t["health"] == "up"));
        (all_up, active)
    })
    .await;
    assert!(up, "targets not up within 60 s: {targets}");

    let completed =
        format!("sum(jobfleet_attempts_total{{queue=\"{queue}\",outcome=\"completed\"}})");
    let (done, last) = eventually(Duration::from_secs(60), || async {
        let result = prometheus.query(&completed).await;
        let n = result
            .first()
            .and_then(|r| r["value"][1].as_str())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        (n >= 20.0, n)
    })
    .await;
    assert!(done, "Prometheus saw {last} of 20 completed attempts");

    let oldest = format!("jobfleet_queue_oldest_waiting_seconds{{queue=\"{idle}\"}}");
    let (aged, age) = eventually(Duration::from_secs(30), || async {
        let result = prometheus.query(&oldest).await;
        let age = result
            .first()
            .and_then(|r| r["value"][1].as_str())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        (age > 0.0, age)
    })
    .await;
    assert!(aged, "the idle queue's oldest waiting age stayed {age}");
    let live = prometheus.query("jobfleet_live_workers").await;
    assert_eq!(live[0]["value"][1], "1", "{live:?}");

    // Every query the Grafana dashboard and KEDA make is valid PromQL Prometheus answers;
    // those the autoscaler and the main panels need have data now.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/dashboards/jobfleet.json"))
            .expect("the Grafana dashboard"),
    )
    .expect("JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut with_data = 0;
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            if !prometheus.query(expr).await.is_empty() {
                with_data += 1;
            }
        }
    }
    assert!(
        with_data >= 6,
        "only {with_data} dashboard queries returned data"
    );
    let keda = std::fs::read_to_string(root.join("deploy/kubernetes/keda-scaledobject.yaml"))
        .expect("the ScaledObject");
    let queries: Vec<&str> = keda
        .lines()
        .filter_map(|l| l.trim().strip_prefix("query: "))
        .collect();
    assert_eq!(queries.len(), 2, "{keda}");
    for query in queries {
        // The manifest watches queue "default"; ask the same about this test's queue.
        let ours = query.replace("queue=\"default\"", &format!("queue=\"{idle}\""));
        let result = prometheus.query(&ours).await;
        assert!(!result.is_empty(), "{ours} returned nothing");
    }

    // The token never shows: not in what Prometheus scraped, not in any process's log.
    let series = prometheus
        .api("/api/v1/series?match[]=%7B__name__%3D~%22jobfleet_.%2A%22%7D")
        .await;
    assert_eq!(series["status"], "success", "{series}");
    assert!(!series.to_string().contains(CANARY));
    assert_eq!(fleet.count_in_logs(Role::Scheduler, CANARY), 0);
    assert_eq!(fleet.count_in_logs(Role::Worker, CANARY), 0);

    fleet.kill_all();
    drop(prometheus);
    backends.broker.close().await;
    delete_routes(&config, &[queue, idle]).await;
    purge_store(&config).await;
}
