//! The end state of a crash test: for each job, whether its effect happened, its
//! completion marker exists and its record says `completed`; and whether the test's
//! routes, delayed set and dead letters are empty.

use jobfleet_common::store::JobState;
use jobfleet_common::JobId;

/// Where a set of jobs and the test's routes stand.
#[derive(Debug)]
pub struct Audit {
    /// Jobs audited.
    pub jobs: usize,
    /// Distinct effects recorded in the namespace.
    pub effects: u64,
    /// Executions that recorded an effect, re-runs included.
    pub executions: u64,
    /// Audited jobs whose effect is missing.
    pub missing_effects: Vec<JobId>,
    /// Audited jobs without a completion marker.
    pub missing_markers: Vec<JobId>,
    /// Audited jobs whose record is not `completed`, with the state it has.
    pub not_completed: Vec<(JobId, Option<JobState>)>,
    /// Ready messages per route of the test.
    pub route_messages: Vec<(String, u64)>,
    /// Entries in the delayed set (held jobs included).
    pub delayed_set: u64,
    /// Dead letters filed.
    pub dead_letters: u64,
}

impl Audit {
    /// Executions beyond one per job: at-least-once re-runs the idempotent effect absorbed.
    pub fn reruns(&self) -> u64 {
        self.executions.saturating_sub(self.effects)
    }

    /// Everything came to rest: every job's effect happened exactly once and its
    /// completion marker exists; no route holds a message, the delayed set is empty,
    /// nothing is dead. Records are checked apart, by [`Audit::assert_records_completed`],
    /// so a wrong record is reported as such, not as a time-out.
    pub fn is_settled(&self) -> bool {
        self.effects == self.jobs as u64
            && self.missing_effects.is_empty()
            && self.missing_markers.is_empty()
            && self.route_messages.iter().all(|(_, n)| *n == 0)
            && self.delayed_set == 0
            && self.dead_letters == 0
    }

    /// Panics unless every audited job's state record says `completed`, as its completion
    /// marker does.
    pub fn assert_records_completed(&self) {
        assert!(
            self.not_completed.is_empty(),
            "{} of {} jobs have their completion marker and effect, but a record that is not \
             `completed`: {:?}. A record written for an earlier stage of the job just before \
             it was published again (`pending`, by a release whose lease expired or by an \
             enqueue retried with the same ids) replaced the final one, and the duplicate \
             delivery that followed was acked on the marker without restoring it",
            self.not_completed.len(),
            self.jobs,
            self.not_completed
        );
    }
}
