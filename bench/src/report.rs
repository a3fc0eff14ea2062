//! The bench's figures and the one JSON line they are printed as.
//!
//! Field order is the report's contract (scripts compare runs by it), so the structs are
//! serialised as declared. Rates are rounded to one decimal, latencies to two, the
//! ratio to three: the machines this runs on are too noisy for more.

use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::{per_second, Plan};

/// What the jobfleet measurement found.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FleetFigures {
    /// The broker's name, e.g. `rabbitmq`.
    pub broker: &'static str,
    /// Jobs over the time to enqueue them all.
    pub enqueue_per_s: f64,
    /// Jobs over first handler start → last job settled.
    pub process_per_s: f64,
    /// Jobs over first enqueue → last job settled.
    pub e2e_per_s: f64,
    /// Enqueue → handler start, median, ms.
    pub latency_p50_ms: f64,
    /// Enqueue → handler start, 99th percentile, ms.
    pub latency_p99_ms: f64,
}

/// What the bare broker did with the same load.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Baseline {
    /// Messages over first publish → last ack.
    pub raw_e2e_per_s: f64,
    /// Messages over first publish → last confirm.
    pub raw_publish_per_s: f64,
}

impl Baseline {
    /// Waits (within what is left of `plan.timeout`) for the consumer task `drain`, which
    /// returns how many messages it acked and when the last ack was, and computes the
    /// rates from the first publish at `began`; `published` is how long publishing took.
    pub(crate) async fn from_drain(
        plan: &Plan,
        began: Instant,
        published: Duration,
        drain: JoinHandle<Result<(usize, Instant)>>,
    ) -> Result<Self> {
        let expected = plan.jobs;
        let wait = plan.timeout.saturating_sub(began.elapsed());
        let (acked, last_ack) = match tokio::time::timeout(wait, drain).await {
            Ok(joined) => joined.map_err(|e| Error::Task(format!("baseline consumer: {e}")))??,
            Err(_) => return Err(Error::Task(format!("baseline not drained within {wait:?}"))),
        };
        if acked < expected {
            return Err(Error::Task(format!(
                "baseline consumer ended after {acked} of {expected} messages"
            )));
        }
        Ok(Self {
            raw_e2e_per_s: per_second(expected, last_ack.duration_since(began)),
            raw_publish_per_s: per_second(expected, published),
        })
    }
}

/// Latency percentiles, ms.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Latency {
    pub p50: f64,
    pub p99: f64,
}

/// The line printed to stdout.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Report {
    pub broker: &'static str,
    pub jobs: usize,
    pub concurrency: usize,
    pub payload_bytes: usize,
    pub enqueue_per_s: f64,
    pub process_per_s: f64,
    pub e2e_per_s: f64,
    pub latency_ms: Latency,
    pub baseline: Baseline,
    /// `e2e_per_s / baseline.raw_e2e_per_s`.
    pub ratio_e2e: f64,
}

impl Report {
    pub fn new(plan: &Plan, fleet: FleetFigures, baseline: Baseline) -> Self {
        // No baseline (skipped): no ratio rather than an absurd one.
        let ratio = if baseline.raw_e2e_per_s > 0.0 {
            fleet.e2e_per_s / baseline.raw_e2e_per_s
        } else {
            0.0
        };
        Self {
            broker: fleet.broker,
            jobs: plan.jobs,
            concurrency: plan.concurrency,
            payload_bytes: plan.payload_bytes,
            enqueue_per_s: round(fleet.enqueue_per_s, 1),
            process_per_s: round(fleet.process_per_s, 1),
            e2e_per_s: round(fleet.e2e_per_s, 1),
            latency_ms: Latency {
                p50: round(fleet.latency_p50_ms, 2),
                p99: round(fleet.latency_p99_ms, 2),
            },
            baseline: Baseline {
                raw_e2e_per_s: round(baseline.raw_e2e_per_s, 1),
                raw_publish_per_s: round(baseline.raw_publish_per_s, 1),
            },
            ratio_e2e: round(ratio, 3),
        }
    }
}

/// The `q`-quantile (0–1) of `samples` by the nearest-rank method; 0 when empty.
pub(crate) fn percentile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let rank = (q * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

pub(crate) fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut samples, 0.5), 50.0);
        assert_eq!(percentile(&mut samples, 0.99), 99.0);
        assert_eq!(percentile(&mut samples, 1.0), 100.0);
        assert_eq!(percentile(&mut [7.0], 0.99), 7.0);
        assert_eq!(percentile(&mut [], 0.5), 0.0);
    }

    #[test]
    fn the_report_is_one_json_object_in_the_documented_order() {
        let plan = Plan {
            workers: 1,
            jobs: 1000,
            concurrency: 8,
            prefetch: 8,
            payload_bytes: 64,
            batch: 100,
            in_flight: 2,
            timeout: Duration::from_secs(1),
        };
        let fleet = FleetFigures {
            broker: "rabbitmq",
            enqueue_per_s: 2000.04,
            process_per_s: 1500.0,
            e2e_per_s: 1200.0,
            latency_p50_ms: 1.234,
            latency_p99_ms: 9.0,
        };
        let baseline = Baseline {
            raw_e2e_per_s: 1600.0,
            raw_publish_per_s: 3000.0,
        };
        let line = serde_json::to_string(&Report::new(&plan, fleet, baseline)).expect("serialises");
        assert_eq!(
            line,
            r#"{"broker":"rabbitmq","jobs":1000,"concurrency":8,"payload_bytes":64,"enqueue_per_s":2000.0,"process_per_s":1500.0,"e2e_per_s":1200.0,"latency_ms":{"p50":1.23,"p99":9.0},"baseline":{"raw_e2e_per_s":1600.0,"raw_publish_per_s":3000.0},"ratio_e2e":0.75}"#
        );
    }
}
