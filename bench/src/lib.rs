//! `jobfleet bench` (a crate of its own, so the bare clients it measures against stay out of
//! the operator CLI's library and the role crates): how fast jobfleet moves no-op jobs end to end, next to what the bare
//! broker does on the same machine in the same run.
//!
//! Two measurements, one after the other, each on names nobody else uses:
//!
//! 1. **jobfleet** ([`fleet`]): a producer enqueues `--jobs` no-op jobs in batches while
//!    an in-process worker (concurrency `--concurrency`, prefetch the same unless
//!    `--prefetch`) runs them with every guarantee: completion marker, cancel flag,
//!    state records, outcome recorded before the ack. The producer and the worker each
//!    get their own connections, as separate processes would.
//! 2. **baseline** ([`raw_amqp`] on RabbitMQ, [`raw_kafka`] on Kafka, [`raw_broker`] for
//!    the embedded broker): the same number of messages of `--payload-bytes` bytes
//!    published with pipelined confirms (delivery reports on Kafka) to a queue (topic)
//!    set up like a ready route, and consumed concurrently with manual acks (stored
//!    offsets on Kafka): the ceiling jobfleet is measured against.
//!
//! Both start their clocks warm: the jobfleet worker has run one warm-up job and the
//! baseline consumer has received one warm-up message first, so neither figure includes
//! connecting or (on Kafka) the consumer group's first rebalance.
//!
//! Exactly one JSON line goes to stdout ([`report::Report`]); progress and notes go to
//! stderr. Queues and store keys are deleted afterwards ([`cleanup`]), also when a
//! measurement fails.
//!
//! # Layout
//!
//! - this file: the flags ([`BenchArgs`]), the plan, and running each mode.
//! - `fleet`: the jobfleet half: a producer and an in-process worker on the configured
//!   backends.
//! - `raw_amqp`, `raw_kafka`, `raw_broker`: the baselines, the same load on bare lapin, bare
//!   rdkafka, or the embedded broker through its trait.
//! - `open_loop` (`--mode latency`), `delayed` (`--mode delayed`), `memory`
//!   (`--mode memory`): the other modes.
//! - `report`: the figures and the one JSON line; `error`: why a run failed; `cleanup`:
//!   deleting what the run left on the shared services.

mod cleanup;
mod delayed;
mod error;
mod fleet;
mod memory;
mod open_loop;
mod raw_amqp;
mod raw_broker;
mod raw_kafka;
mod report;

use std::time::Duration;

use clap::Args;
use jobfleet_common::{BrokerAddr, Config, JobId};

pub use error::{Error, Result};
use report::{Baseline, Report};

/// What `jobfleet bench` measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Throughput end to end, `--jobs` no-op jobs as fast as they go, beside the bare
    /// client.
    #[default]
    Throughput,
    /// Throughput first, then latency with jobs offered at a fixed rate (open loop) at
    /// each `--load` fraction of the measured maximum, `--duration` each.
    Latency,
    /// Throughput first, then `--jobs` delayed jobs due at random over `--spread`, then
    /// `--jobs` due at one instant: lateness, early starts and the burst's drain rate.
    Delayed,
    /// `--jobs` delayed jobs waiting in Redis: its memory per job beyond the payload (no
    /// throughput run).
    Memory,
    /// Throughput with each number of worker instances in `--workers` (each with its
    /// own connections and `--concurrency`), beside one baseline.
    Scale,
}

/// `jobfleet bench` flags (the broker and store are the global `--broker`/`--store`).
#[derive(Clone, Debug, Args)]
pub struct BenchArgs {
    /// What to measure; each mode prints one JSON line (docs/benchmarks.md).
    #[arg(long, value_enum, default_value_t = Mode::Throughput)]
    pub mode: Mode,
    /// No-op jobs to run (and messages in the baseline).
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// Jobs the worker runs at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Payload size of each job (and body size of each baseline message), in bytes.
    #[arg(long, default_value_t = 256)]
    pub payload_bytes: usize,
    /// Unsettled deliveries the worker (and the baseline consumer) may hold; defaults to
    /// the concurrency.
    #[arg(long)]
    pub prefetch: Option<u16>,
    /// Jobs per `enqueue_many` call.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// `enqueue_many` calls under way at once. The default 2 × 500 matches the
    /// baseline's window of 1000 unconfirmed messages.
    #[arg(long, default_value_t = 2)]
    pub in_flight: usize,
    /// Give up on a measurement after this long.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Measure jobfleet only (for profiling it alone); the baseline figures are then 0.
    #[arg(long, hide = true)]
    pub skip_baseline: bool,
    /// `--mode latency`: the offered rates, as fractions of the measured maximum.
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.5,0.8")]
    pub load: Vec<f64>,
    /// `--mode latency`: how long each rate is offered.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// `--mode scale`: the numbers of workers to measure with.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub workers: Vec<usize>,
    /// `--mode delayed`: the spread load's jobs are due at random over this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub spread: Duration,
}

/// What every measurement of one run shares.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub jobs: usize,
    /// Worker instances (each with its own connections).
    pub workers: usize,
    pub concurrency: usize,
    pub prefetch: u16,
    pub payload_bytes: usize,
    pub batch: usize,
    pub in_flight: usize,
    pub timeout: Duration,
}

/// Runs both measurements and prints the report line.
pub async fn run(args: BenchArgs, mut config: Config) -> Result<()> {
    if [args.jobs, args.concurrency, args.batch, args.in_flight].contains(&0) {
        return Err(Error::Usage(
            "--jobs, --concurrency, --batch and --in-flight must be at least 1".into(),
        ));
    }
    if args.load.is_empty() || args.load.iter().any(|&l| !(l > 0.0 && l.is_finite())) {
        return Err(Error::Usage("--load fractions must be above 0".into()));
    }
    if args.workers.is_empty() || args.workers.contains(&0) {
        return Err(Error::Usage("--workers counts must be at least 1".into()));
    }
    let embedded = config.broker.is_embedded();
    if embedded != config.store.is_embedded() {
        return Err(Error::Usage(
            "the embedded broker and store only run together: set both or neither".into(),
        ));
    }
    if args.payload_bytes > config.limits.max_payload_bytes {
        return Err(Error::Usage(format!(
            "--payload-bytes {} is over limits.max_payload_bytes ({})",
            args.payload_bytes, config.limits.max_payload_bytes
        )));
    }
    // A fresh namespace: nothing from another run or fleet can mix in, and cleanup
    // deletes exactly what this run made. The tail of a v7 UUID is its random part.
    let id = JobId::new().0.simple().to_string();
    config.namespace = format!("bench-{}", &id[id.len() - 12..]);
    config.worker.queues = vec![fleet::QUEUE.to_string()];
    config.worker.concurrency = args.concurrency;
    config.worker.prefetch = args.prefetch;
    let plan = Plan {
        jobs: args.jobs,
        workers: 1,
        concurrency: args.concurrency,
        prefetch: config.worker.effective_prefetch(),
        payload_bytes: args.payload_bytes,
        batch: args.batch,
        in_flight: args.in_flight,
        timeout: args.timeout,
    };
    eprintln!(
        "bench: {} jobs, concurrency {}, prefetch {}, {} payload bytes, namespace {}",
        plan.jobs, plan.concurrency, plan.prefetch, plan.payload_bytes, config.namespace
    );

    if args.mode == Mode::Memory {
        let measured = memory::measure(&config, &plan).await;
        if !embedded {
            cleanup::fleet(&config).await;
        }
        let line = serde_json::to_string(&MemoryReport {
            mode: "memory",
            broker: match config.broker {
                BrokerAddr::Embedded => "embedded",
                BrokerAddr::Amqp(_) => "rabbitmq",
                BrokerAddr::Kafka(_) => "kafka",
            },
            memory: measured?,
        })
        .map_err(|e| Error::Task(format!("cannot write the report: {e}")))?;
        println!("{line}");
        return Ok(());
    }
    let cpu = process_cpu();
    let measured = fleet::measure(&config, &plan).await;
    let cpu = cpu_since(cpu, plan.jobs, "jobfleet");
    if !embedded {
        cleanup::fleet(&config).await;
    }
    let fleet = measured?;
    eprintln!("bench: jobfleet {fleet:?}");
    let baseline = if args.skip_baseline {
        Baseline::default()
    } else {
        match &config.broker {
            BrokerAddr::Embedded => raw_broker::measure(&plan).await?,
            BrokerAddr::Kafka(url) => {
                raw_kafka::measure(url, &config.namespace, &config.kafka, &plan).await?
            }
            BrokerAddr::Amqp(url) => raw_amqp::measure(url, &config.namespace, &plan).await?,
        }
    };
    cpu_since(cpu, plan.jobs, "baseline");
    eprintln!("bench: baseline {baseline:?}");

    let report = Report::new(&plan, fleet, baseline);
    let line = match args.mode {
        // Memory returned above.
        Mode::Throughput | Mode::Memory => serde_json::to_string(&report),
        Mode::Latency => {
            let loads =
                open_loop::measure(&config, &plan, report.e2e_per_s, &args.load, args.duration)
                    .await;
            if !embedded {
                cleanup::fleet(&config).await;
            }
            serde_json::to_string(&LatencyReport {
                mode: "latency",
                throughput: report,
                duration_s: args.duration.as_secs_f64(),
                loads: loads?,
            })
        }
        Mode::Scale => {
            let raw = report.baseline.raw_e2e_per_s;
            let mut scale = Vec::with_capacity(args.workers.len());
            for &workers in &args.workers {
                let plan = Plan {
                    workers,
                    ..plan.clone()
                };
                let measured = fleet::measure(&config, &plan).await;
                if !embedded {
                    cleanup::fleet(&config).await;
                }
                let fleet = measured?;
                eprintln!("bench: {workers} workers: {fleet:?}");
                scale.push(Scaled {
                    workers,
                    e2e_per_s: report::round(fleet.e2e_per_s, 1),
                    ratio_e2e: report::round(fleet.e2e_per_s / raw.max(f64::EPSILON), 3),
                    latency_ms: report::Latency {
                        p50: report::round(fleet.latency_p50_ms, 2),
                        p99: report::round(fleet.latency_p99_ms, 2),
                    },
                });
            }
            serde_json::to_string(&ScaleReport {
                mode: "scale",
                throughput: report,
                workers: scale,
            })
        }
        Mode::Delayed => {
            let measured = delayed::measure(&config, &plan, args.spread).await;
            if !embedded {
                cleanup::fleet(&config).await;
            }
            let (spread, burst) = measured?;
            let ready = report.e2e_per_s;
            serde_json::to_string(&DelayedReport {
                mode: "delayed",
                spread_s: args.spread.as_secs_f64(),
                ratio_burst: report::round(burst.drain_per_s / ready.max(f64::EPSILON), 3),
                throughput: report,
                spread,
                burst,
            })
        }
    }
    .map_err(|e| Error::Task(format!("cannot write the report: {e}")))?;
    println!("{line}");
    Ok(())
}

/// `--mode latency`'s line: the throughput run it took the maximum from, and each load.
#[derive(serde::Serialize)]
struct LatencyReport {
    mode: &'static str,
    throughput: Report,
    duration_s: f64,
    loads: Vec<open_loop::Load>,
}

/// `--mode scale`'s line: the throughput run (one worker, and the baseline), then each
/// number of workers.
#[derive(serde::Serialize)]
struct ScaleReport {
    mode: &'static str,
    throughput: Report,
    workers: Vec<Scaled>,
}

/// Throughput with `workers` worker instances.
#[derive(serde::Serialize)]
struct Scaled {
    workers: usize,
    e2e_per_s: f64,
    /// Over the throughput run's baseline.
    ratio_e2e: f64,
    latency_ms: report::Latency,
}

/// `--mode memory`'s line.
#[derive(serde::Serialize)]
struct MemoryReport {
    mode: &'static str,
    broker: &'static str,
    memory: memory::Memory,
}

/// `--mode delayed`'s line: the throughput run (the ready path), the spread and the
/// burst, and the burst's drain rate over the ready path's.
#[derive(serde::Serialize)]
struct DelayedReport {
    mode: &'static str,
    throughput: Report,
    spread_s: f64,
    spread: delayed::Punctuality,
    burst: delayed::Punctuality,
    ratio_burst: f64,
}

/// CPU time this process has used so far (user + system), where `/proc` tells.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 10))
}

/// Reports on stderr the CPU this process used since `before` for `jobs` jobs of `phase`
/// (the server processes' share is not included), and returns the reading now: with
/// noisy neighbours, CPU per job moves much less than throughput does.
fn cpu_since(before: Option<Duration>, jobs: usize, phase: &str) -> Option<Duration> {
    let now = process_cpu()?;
    let used = now.saturating_sub(before?);
    let per_job_us = used.as_secs_f64() * 1e6 / jobs.max(1) as f64;
    eprintln!("bench: {phase}: {used:?} CPU in this process, {per_job_us:.0} µs per job");
    Some(now)
}

/// `n` events over `elapsed`, per second.
pub(crate) fn per_second(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(jobs: usize) -> Plan {
        Plan {
            jobs,
            workers: 1,
            concurrency: 8,
            prefetch: 8,
            payload_bytes: 32,
            batch: 50,
            in_flight: 2,
            timeout: Duration::from_secs(60),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_embedded_bench_runs_every_job_and_its_baseline() {
        let mut config = Config::default();
        config.worker.queues = vec![fleet::QUEUE.to_string()];
        config.worker.concurrency = 8;
        let plan = plan(300);
        let fleet = fleet::measure(&config, &plan).await.expect("measured");
        assert_eq!(fleet.broker, "embedded");
        for rate in [fleet.enqueue_per_s, fleet.process_per_s, fleet.e2e_per_s] {
            assert!(rate.is_finite() && rate > 0.0, "{fleet:?}");
        }
        assert!(fleet.e2e_per_s <= fleet.process_per_s * 1.001, "{fleet:?}");
        assert!(
            0.0 <= fleet.latency_p50_ms && fleet.latency_p50_ms <= fleet.latency_p99_ms,
            "{fleet:?}"
        );
        let baseline = raw_broker::measure(&plan).await.expect("baseline");
        assert!(baseline.raw_e2e_per_s > 0.0, "{baseline:?}");
        assert!(baseline.raw_publish_per_s > 0.0, "{baseline:?}");
    }

    #[tokio::test]
    async fn nonsense_flags_are_refused_before_anything_runs() {
        let args = BenchArgs {
            jobs: 0,
            concurrency: 1,
            payload_bytes: 1,
            prefetch: None,
            batch: 1,
            in_flight: 1,
            timeout: Duration::from_secs(1),
            skip_baseline: false,
            mode: Mode::Throughput,
            load: vec![0.5],
            duration: Duration::from_secs(1),
            spread: Duration::from_secs(1),
            workers: vec![1],
        };
        let e = run(args.clone(), Config::default())
            .await
            .expect_err("refused");
        assert!(matches!(e, Error::Usage(_)), "{e}");
        for (load, workers) in [
            (vec![0.0], vec![1]),
            (vec![0.5], vec![0]),
            (vec![], vec![1]),
        ] {
            let bad = BenchArgs {
                jobs: 1,
                load,
                workers,
                ..args.clone()
            };
            let e = run(bad, Config::default()).await.expect_err("refused");
            assert!(matches!(e, Error::Usage(_)), "{e}");
        }
        let half = Config {
            store: "redis://127.0.0.1:6379/".parse().expect("a Redis URL"),
            ..Config::default()
        };
        let e = run(BenchArgs { jobs: 1, ..args }, half)
            .await
            .expect_err("refused");
        assert!(e.to_string().contains("only run together"), "{e}");
    }
}
