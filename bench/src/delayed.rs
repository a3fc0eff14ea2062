//! Delayed jobs (`--mode delayed`): how punctual releases are, and how fast a burst of
//! jobs due at one instant drains, next to the ready path measured in the same run.
//!
//! 1. **Spread**: `--jobs` jobs due at random instants over `--spread`, after a lead long
//!    enough to enqueue them all first (so none is due before it is even enqueued).
//! 2. **Burst**: `--jobs` jobs all due at one instant, after the same kind of lead.
//!
//! For each job the lateness is handler start − `run_at_ms` (wall clock, this machine):
//! the release's lateness plus the hop through the ready queue to a worker, so an upper
//! bound on the release's own. A job started before its `run_at_ms` counts as early.
//! The burst's drain rate is its jobs over due instant → last job settled; the report
//! divides it by the ready path's `e2e_per_s` (the throughput mode's measurement, run
//! first in the same process).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use jobfleet_common::{Config, Job};
use jobfleet_worker::Settlement;
use serde::Serialize;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::fleet::{enqueue_in_batches, take, Countdown, Hooks, Rig, KIND, QUEUE};
use crate::open_loop::Tail;
use crate::report::round;
use crate::{per_second, Plan};

/// What one delayed load gave.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Punctuality {
    pub jobs: usize,
    /// Jobs whose handler started before their `run_at_ms`.
    pub early: usize,
    /// Handler start − `run_at_ms`.
    pub late_ms: Tail,
    /// Jobs over the first due instant → last job settled.
    pub drain_per_s: f64,
}

/// The hooks: lateness of each start against the job's `run_at_ms`.
struct Lateness {
    late_ms: Mutex<Vec<f64>>,
    settled: Countdown,
}

fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

impl Hooks for Lateness {
    fn started(&self, job: &Job) {
        let due = job.run_at_ms.unwrap_or(0) as f64;
        self.late_ms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(wall_ms() - due);
    }

    fn settled(&self, _job: &Job, _outcome: Settlement) {
        self.settled.tick();
    }
}

/// A deterministic spread of `n` offsets over `spread_ms`: splitmix64 of the index.
fn offset_ms(k: usize, spread_ms: u64) -> u64 {
    let mut z = (k as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    if spread_ms == 0 {
        0
    } else {
        z % spread_ms
    }
}

/// Enqueues `plan.jobs` jobs due at `lead + offset(k)` and waits for them all.
async fn run(rig: &Rig, plan: &Plan, spread: Duration) -> Result<Punctuality> {
    let jobs = plan.jobs;
    let hooks = Arc::new(Lateness {
        late_ms: Mutex::new(Vec::with_capacity(jobs)),
        settled: Countdown::new(jobs),
    });
    rig.hooks(hooks.clone());
    // Room to enqueue them all before the first is due: at 5,000 jobs/s, at least 2 s.
    let lead_ms = 2_000 + (jobs as f64 / 5.0) as i64;
    let first_due = rig.clock.now_ms() + lead_ms;
    let first_due_at = Instant::now() + Duration::from_millis(lead_ms.unsigned_abs());
    let spread_ms = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX);
    let payload = Bytes::from(vec![b'x'; plan.payload_bytes]);
    let job = |k| {
        let due = first_due + offset_ms(k, spread_ms) as i64;
        Job::new(QUEUE, KIND, payload.clone()).with_run_at_ms(due)
    };
    enqueue_in_batches(&rig.producer, plan, jobs, job, |answer| {
        if answer.delayed {
            Ok(())
        } else {
            Err(Error::Task(format!(
                "job {} was due before it was enqueued: raise the lead",
                answer.id
            )))
        }
    })
    .await?;
    let wait = plan.timeout + spread + Duration::from_millis(lead_ms.unsigned_abs());
    if let Err(settled) = hooks.settled.wait(wait).await {
        return Err(Error::Task(format!(
            "only {settled} of {jobs} delayed jobs settled within {wait:?}"
        )));
    }
    let mut late = take(&hooks.late_ms);
    let early = late.iter().filter(|&&ms| ms < 0.0).count();
    let last = hooks.settled.last().unwrap_or(first_due_at);
    Ok(Punctuality {
        jobs,
        early,
        late_ms: Tail::of(&mut late),
        drain_per_s: round(
            per_second(jobs, last.saturating_duration_since(first_due_at)),
            1,
        ),
    })
}

/// The spread load, then the burst, on one rig with a scheduler.
pub(crate) async fn measure(
    config: &Config,
    plan: &Plan,
    spread: Duration,
) -> Result<(Punctuality, Punctuality)> {
    let rig = Rig::start(config, plan, true).await?;
    let outcome = async {
        let spread_figures = run(&rig, plan, spread).await?;
        eprintln!("bench: spread {spread_figures:?}");
        let burst = run(&rig, plan, Duration::ZERO).await?;
        eprintln!("bench: burst {burst:?}");
        Ok((spread_figures, burst))
    }
    .await;
    rig.stop().await?;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_cover_the_spread_and_repeat() {
        let offsets: Vec<u64> = (0..10_000).map(|k| offset_ms(k, 60_000)).collect();
        assert!(offsets.iter().all(|&o| o < 60_000));
        let (min, max) = (offsets.iter().min(), offsets.iter().max());
        assert!(min < Some(&600) && max > Some(&59_400), "{min:?} {max:?}");
        assert_eq!(offset_ms(7, 60_000), offsets[7]);
        assert_eq!(offset_ms(7, 0), 0);
    }
}
