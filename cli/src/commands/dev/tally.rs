//! Where `jobfleet dev`'s jobs are, read from their state records in the store.
//!
//! Only jobs not yet in a terminal state are read again on each poll, and those reads go
//! out together (a bounded number in flight), so a poll costs one round of store calls
//! however many jobs there are.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use jobfleet_common::store::{JobState, StoreResult};
use jobfleet_common::{JobId, Store};

use crate::dev_summary::DevSummary;

/// Record reads in flight at once during a poll.
const READS_IN_FLIGHT: usize = 64;

/// Counts of jobs by where they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Jobs watched.
    pub total: u64,
    /// Pending, scheduled, or not recorded yet.
    pub waiting: u64,
    /// Running now.
    pub running: u64,
    /// Waiting for their next attempt.
    pub retrying: u64,
    /// Completed.
    pub completed: u64,
    /// Dead.
    pub dead: u64,
    /// Cancelled or skipped.
    pub cancelled: u64,
    /// Finished (completed or dead) after more than one attempt.
    pub retried: u64,
}

impl Tally {
    /// Jobs in a terminal state.
    pub fn finished(&self) -> u64 {
        self.completed + self.dead + self.cancelled
    }

    /// Whether every watched job is in a terminal state.
    pub fn is_idle(&self) -> bool {
        self.finished() == self.total
    }

    /// The counts in one line, for the progress display.
    pub fn describe(&self) -> String {
        format!(
            "completed {} · running {} · retrying {} · dead {} · cancelled {} · waiting {}",
            self.completed, self.running, self.retrying, self.dead, self.cancelled, self.waiting
        )
    }

    /// The summary of this tally over `elapsed` (the schedule, pipeline, data and
    /// dashboard lines are for the caller to fill in).
    pub fn summary(&self, elapsed: Duration) -> DevSummary {
        let secs = elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.finished() as f64 / secs
        } else {
            0.0
        };
        DevSummary {
            total: self.total,
            completed: self.completed,
            retried: self.retried,
            dead: self.dead,
            cancelled: self.cancelled,
            unfinished: self.total - self.finished(),
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            jobs_per_sec: (rate * 10.0).round() / 10.0,
            schedule_fires: 0,
            pipeline: String::new(),
            data: String::new(),
            dashboard: String::new(),
        }
    }
}

/// The state and attempt last read for one job; `None` before its record exists.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    state: Option<JobState>,
    attempt: u32,
}

/// Follows a set of jobs through their state records.
pub struct Watcher {
    store: Arc<dyn Store>,
    seen: HashMap<JobId, Seen>,
}

impl Watcher {
    /// A watcher reading from `store`, watching nothing yet.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            seen: HashMap::new(),
        }
    }

    /// Adds jobs to watch.
    pub fn watch(&mut self, ids: impl IntoIterator<Item = JobId>) {
        self.seen
            .extend(ids.into_iter().map(|id| (id, Seen::default())));
    }

    /// Reads the records of unfinished jobs again and returns the new counts.
    pub async fn poll(&mut self) -> StoreResult<Tally> {
        let unfinished: Vec<JobId> = self
            .seen
            .iter()
            .filter(|(_, s)| !s.state.is_some_and(JobState::is_terminal))
            .map(|(&id, _)| id)
            .collect();
        let store = &self.store;
        let records: Vec<_> = futures::stream::iter(unfinished)
            .map(|id| async move { store.record(id).await })
            .buffer_unordered(READS_IN_FLIGHT)
            .try_collect()
            .await?;
        for record in records.into_iter().flatten() {
            if let Some(seen) = self.seen.get_mut(&record.id) {
                *seen = Seen {
                    state: Some(record.state),
                    attempt: record.attempt,
                };
            }
        }
        Ok(self.tally())
    }

    /// The counts as of the last poll.
    pub fn tally(&self) -> Tally {
        let mut t = Tally {
            total: self.seen.len() as u64,
            ..Tally::default()
        };
        for seen in self.seen.values() {
            match seen.state {
                None | Some(JobState::Pending | JobState::Scheduled) => t.waiting += 1,
                Some(JobState::Running) => t.running += 1,
                Some(JobState::Retrying) => t.retrying += 1,
                Some(JobState::Completed) => t.completed += 1,
                Some(JobState::Dead) => t.dead += 1,
                Some(JobState::Cancelled) => t.cancelled += 1,
            }
            let done = matches!(seen.state, Some(JobState::Completed | JobState::Dead));
            if done && seen.attempt > 1 {
                t.retried += 1;
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(states: &[(Option<JobState>, u32)]) -> Tally {
        let store: Arc<dyn Store> = jobfleet_common::Backends::embedded().store;
        let mut w = Watcher::new(store);
        for &(state, attempt) in states {
            w.seen.insert(JobId::new(), Seen { state, attempt });
        }
        w.tally()
    }

    #[test]
    fn retried_counts_finished_jobs_past_their_first_attempt() {
        let t = tally(&[
            (None, 1),
            (Some(JobState::Completed), 1),
            (Some(JobState::Completed), 2),
            (Some(JobState::Dead), 3),
            (Some(JobState::Retrying), 2),
            (Some(JobState::Cancelled), 1),
        ]);
        assert_eq!(
            (t.total, t.completed, t.dead, t.cancelled, t.retried),
            (6, 2, 1, 1, 2)
        );
        assert_eq!((t.waiting, t.retrying, t.finished()), (1, 1, 4));
        assert!(!t.is_idle());
    }

    #[test]
    fn a_summary_rates_the_finished_jobs_over_the_run() {
        let t = Tally {
            total: 10,
            completed: 8,
            dead: 2,
            retried: 3,
            ..Tally::default()
        };
        let s = t.summary(Duration::from_secs(4));
        assert_eq!((s.unfinished, s.jobs_per_sec, s.retried), (0, 2.5, 3));
        assert_eq!(s.elapsed_ms, 4000);
    }
}
