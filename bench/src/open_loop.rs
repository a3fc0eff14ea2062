//! Latency below saturation (`--mode latency`): jobs offered at a fixed rate, open loop.
//!
//! Each job's intended enqueue time is set by the schedule (job `k` at `k / rate` seconds
//! after the start), not by when the previous enqueue returned, so a slow moment shows up
//! in the latencies instead of lowering the offered rate (no coordinated omission). The
//! intended time rides in the first 8 bytes of the payload (nanoseconds since the run's
//! start), so the hooks need no shared map. Every millisecond the offer loop hands the
//! jobs now due to one `enqueue_many` call of their own, which runs concurrently with the
//! next ones, as a producer serving independent requests would.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use jobfleet_common::{Config, Job};
use jobfleet_worker::Settlement;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::error::{Error, Result};
use crate::fleet::{take, Countdown, Hooks, Rig, KIND, QUEUE};
use crate::report::{percentile, round};
use crate::Plan;

/// Latency percentiles of one load, ms.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Tail {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Tail {
    pub(crate) fn of(samples: &mut [f64]) -> Self {
        Self {
            p50: round(percentile(samples, 0.50), 3),
            p99: round(percentile(samples, 0.99), 3),
            p999: round(percentile(samples, 0.999), 3),
            max: round(percentile(samples, 1.0), 3),
        }
    }
}

/// What one offered rate gave.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Load {
    /// The fraction of the maximum offered.
    pub load: f64,
    /// Jobs per second offered.
    pub offered_per_s: f64,
    pub jobs: usize,
    /// Intended enqueue → handler start.
    pub start_ms: Tail,
    /// Intended enqueue → outcome recorded and delivery acked.
    pub done_ms: Tail,
}

/// The hooks: latencies from the intended enqueue time in each payload.
struct Timings {
    origin: Instant,
    start_ms: Mutex<Vec<f64>>,
    done_ms: Mutex<Vec<f64>>,
    settled: Countdown,
}

impl Timings {
    fn since_intended(&self, job: &Job) -> f64 {
        let mut nanos = [0u8; 8];
        let n = job.payload.len().min(8);
        nanos[..n].copy_from_slice(&job.payload[..n]);
        let intended = self.origin + Duration::from_nanos(u64::from_le_bytes(nanos));
        Instant::now()
            .saturating_duration_since(intended)
            .as_secs_f64()
            * 1e3
    }
}

impl Hooks for Timings {
    fn started(&self, job: &Job) {
        let ms = self.since_intended(job);
        self.start_ms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ms);
    }

    fn settled(&self, job: &Job, _outcome: Settlement) {
        let ms = self.since_intended(job);
        self.done_ms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ms);
        self.settled.tick();
    }
}

/// Offers `rate` jobs per second for `duration` on a warm rig and waits for them all.
pub(crate) async fn offer(
    rig: &Rig,
    plan: &Plan,
    load: f64,
    rate: f64,
    duration: Duration,
) -> Result<Load> {
    let jobs = ((rate * duration.as_secs_f64()).round() as usize).max(1);
    let origin = Instant::now();
    let timings = Arc::new(Timings {
        origin,
        start_ms: Mutex::new(Vec::with_capacity(jobs)),
        done_ms: Mutex::new(Vec::with_capacity(jobs)),
        settled: Countdown::new(jobs),
    });
    rig.hooks(timings.clone());
    let padding = plan.payload_bytes.max(8) - 8;
    let mut calls = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut sent = 0;
    while sent < jobs {
        tick.tick().await;
        let elapsed = origin.elapsed().as_secs_f64();
        let due = ((elapsed * rate) as usize + 1).min(jobs);
        let batch: Vec<Job> = (sent..due)
            .map(|k| {
                let intended = Duration::from_secs_f64(k as f64 / rate).as_nanos() as u64;
                let mut payload = Vec::with_capacity(8 + padding);
                payload.extend_from_slice(&intended.to_le_bytes());
                payload.resize(8 + padding, b'x');
                Job::new(QUEUE, KIND, Bytes::from(payload))
            })
            .collect();
        sent = due;
        if !batch.is_empty() {
            let producer = rig.producer.clone();
            calls.spawn(async move { producer.enqueue_many(batch).await.map(|_| ()) });
        }
        // Reap finished calls as we go: a failed enqueue ends the run at once.
        while let Some(done) = calls.try_join_next() {
            done.map_err(|e| Error::Task(format!("an enqueue task: {e}")))??;
        }
    }
    while let Some(done) = calls.join_next().await {
        done.map_err(|e| Error::Task(format!("an enqueue task: {e}")))??;
    }
    let wait = plan.timeout.saturating_sub(origin.elapsed());
    if let Err(settled) = timings.settled.wait(wait).await {
        return Err(Error::Task(format!(
            "at {rate:.0} jobs/s only {settled} of {jobs} jobs settled within {:?}",
            plan.timeout
        )));
    }
    Ok(Load {
        load,
        offered_per_s: round(rate, 1),
        jobs,
        start_ms: Tail::of(&mut take(&timings.start_ms)),
        done_ms: Tail::of(&mut take(&timings.done_ms)),
    })
}

/// Runs each load in `loads` (fractions of `max_per_s`) for `duration` on one rig.
pub(crate) async fn measure(
    config: &Config,
    plan: &Plan,
    max_per_s: f64,
    loads: &[f64],
    duration: Duration,
) -> Result<Vec<Load>> {
    let rig = Rig::start(config, plan, false).await?;
    let mut figures = Vec::with_capacity(loads.len());
    let mut outcome = Ok(());
    for &load in loads {
        match offer(&rig, plan, load, load * max_per_s, duration).await {
            Ok(figure) => {
                eprintln!("bench: {figure:?}");
                figures.push(figure);
            }
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    rig.stop().await?;
    outcome.map(|()| figures)
}
