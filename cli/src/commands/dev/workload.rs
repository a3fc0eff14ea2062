//! The sample workload `jobfleet dev` enqueues: a fixed mix that exercises every path a
//! job can take (priorities, delays, retries, dead letters, lock conflicts) within a few
//! seconds.
//!
//! The mix repeats every [`CYCLE`] jobs, so a run of N jobs always holds the same
//! proportions and the number of `fail` jobs (the ones that must end dead) is known.

use jobfleet_common::cron::ScheduleSpec;
use jobfleet_common::job::{Backoff, ConflictPolicy};
use jobfleet_common::pipeline::PipelineSpec;
use jobfleet_common::{Job, LockMode, LockSpec, Priority};

/// The queue every sample job runs on.
pub const QUEUE: &str = "default";
/// The lock key the locked jobs share.
pub const LOCK_KEY: &str = "dev:shared-report";
/// The sample cron schedule's name.
pub const SCHEDULE: &str = "dev-every-second";

/// The sample schedule: an `echo` job every second on [`QUEUE`].
pub fn schedule() -> ScheduleSpec {
    let mut spec = ScheduleSpec::new("* * * * * *", QUEUE, "echo");
    spec.payload = Some(serde_json::json!({ "from": SCHEDULE }));
    spec
}

/// The sample pipeline: `greet`, then `fan` fanned out over three items, then `gather`,
/// all `echo` jobs (each returns its payload, so `gather`'s result holds the three
/// children's results, each with its item and the previous result).
pub fn pipeline() -> PipelineSpec {
    let step = |name: &str| {
        format!("[[steps]]\nname = \"{name}\"\nqueue = \"{QUEUE}\"\nkind = \"echo\"\n")
    };
    let text = format!(
        "name = \"dev-sample\"\n{}payload = {{ hello = \"fleet\" }}\n{}fan_out = [\"a\", \"b\", \"c\"]\n{}",
        step("greet"),
        step("fan"),
        step("gather")
    );
    PipelineSpec::parse(&text).unwrap_or_else(|e| unreachable!("the sample pipeline parses: {e}"))
}

/// Length of the repeating mix.
pub const CYCLE: usize = 30;

/// Retries in dev are quick: 100 ms doubling up to 1 s.
const QUICK_BACKOFF: Backoff = Backoff {
    base_ms: 100,
    cap_ms: 1_000,
};

/// What one slot of the cycle enqueues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample {
    /// `fail`, 3 attempts: ends dead.
    Fail,
    /// `flaky`, failing its first one or two attempts.
    Flaky,
    /// `echo` due 1–3 s from now.
    Delayed,
    /// `sleep` for 10–200 ms.
    Sleep,
    /// `sleep` holding the shared exclusive lock.
    Locked,
    /// `echo` at a priority level cycling through 0–9.
    Echo,
}

/// The sample for job number `i` (from 0).
pub fn sample(i: usize) -> Sample {
    match i % CYCLE {
        0 => Sample::Fail,
        1..=3 => Sample::Flaky,
        4..=6 => Sample::Delayed,
        7..=12 => Sample::Sleep,
        13 | 14 => Sample::Locked,
        _ => Sample::Echo,
    }
}

/// How many of the first `n` jobs are `kind`.
pub fn count(n: usize, kind: Sample) -> usize {
    (0..n).filter(|&i| sample(i) == kind).count()
}

/// The first `n` sample jobs, with delays measured from `now_ms`.
pub fn jobs(n: usize, now_ms: i64) -> Vec<Job> {
    (0..n).map(|i| job(i, now_ms)).collect()
}

/// Sample job number `i`. Variation comes from the index, not a random source, so two runs
/// of the same size do the same work.
fn job(i: usize, now_ms: i64) -> Job {
    let spread = |modulus: usize| (i.wrapping_mul(7919) % modulus) as u64;
    match sample(i) {
        Sample::Fail => quick(Job::new(QUEUE, "fail", "{}").with_max_attempts(3)),
        Sample::Flaky => {
            let payload = format!(r#"{{"fail_times":{}}}"#, 1 + i % 2);
            quick(Job::new(QUEUE, "flaky", payload).with_max_attempts(5))
        }
        Sample::Delayed => {
            let due = now_ms + 1_000 + spread(2_000) as i64;
            Job::new(QUEUE, "echo", format!(r#"{{"delayed":{i}}}"#)).with_run_at_ms(due)
        }
        Sample::Sleep => {
            let payload = format!(r#"{{"ms":{}}}"#, 10 + spread(190));
            Job::new(QUEUE, "sleep", payload).with_priority(Priority::LOW)
        }
        Sample::Locked => Job::new(QUEUE, "sleep", r#"{"ms":30}"#).with_lock(LockSpec {
            key: LOCK_KEY.into(),
            mode: LockMode::Exclusive,
            on_conflict: ConflictPolicy::Requeue,
        }),
        Sample::Echo => {
            let level = Priority::new((i % 10) as u8).unwrap_or_default();
            Job::new(QUEUE, "echo", format!(r#"{{"n":{i}}}"#)).with_priority(level)
        }
    }
}

fn quick(mut job: Job) -> Job {
    job.backoff = Some(QUICK_BACKOFF);
    job
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobfleet_common::limits::Limits;

    #[test]
    fn the_mix_holds_every_kind_of_path() {
        let jobs = jobs(150, 1_000_000);
        assert_eq!(jobs.len(), 150);
        assert_eq!(count(150, Sample::Fail), 5);
        let fails: Vec<&Job> = jobs.iter().filter(|j| j.kind == "fail").collect();
        assert_eq!(fails.len(), 5);
        assert!(fails
            .iter()
            .all(|j| j.max_attempts == 3 && j.backoff == Some(QUICK_BACKOFF)));
        assert_eq!(jobs.iter().filter(|j| j.kind == "flaky").count(), 15);
        let delays: Vec<i64> = jobs
            .iter()
            .filter_map(|j| j.run_at_ms)
            .map(|t| t - 1_000_000)
            .collect();
        assert_eq!(delays.len(), 15);
        assert!(
            delays.iter().all(|d| (1_000..3_000).contains(d)),
            "{delays:?}"
        );
        assert_eq!(jobs.iter().filter(|j| j.lock.is_some()).count(), 10);
        let levels: std::collections::BTreeSet<u8> = jobs
            .iter()
            .filter(|j| j.kind == "echo")
            .map(|j| j.priority.level())
            .collect();
        assert_eq!(levels.len(), 10, "echo at every level: {levels:?}");
    }

    #[test]
    fn every_sample_job_is_valid_and_unique() {
        let now = 1_000_000;
        let jobs = jobs(CYCLE * 2, now);
        for job in &jobs {
            assert_eq!(Limits::default().validate(job, now), Ok(()), "{job:?}");
        }
        let ids: std::collections::HashSet<_> = jobs.iter().map(|j| j.id).collect();
        assert_eq!(ids.len(), jobs.len());
    }

    #[test]
    fn small_runs_still_have_a_job_that_dies() {
        assert_eq!(count(1, Sample::Fail), 1);
        assert_eq!(count(31, Sample::Fail), 2);
    }
}
