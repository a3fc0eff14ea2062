//! The embedded delayed set: jobs ordered by due time, and the leased releasing set.
//!
//! Claiming moves due jobs into the releasing set under a lease instead of deleting them,
//! so a scheduler that dies mid-release loses nothing: its expired lease puts the jobs
//! back on the next claim. Times are passed in, so this table never reads a clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use crate::job::JobId;
use crate::store::ScheduledJob;

/// Waiting and leased jobs; at most one entry per id across both.
#[derive(Debug, Default)]
pub(super) struct DelayedTable {
    waiting: HashMap<JobId, ScheduledJob>,
    by_due: BTreeSet<(i64, JobId)>,
    /// Claimed jobs and when their lease runs out (Unix ms).
    leased: HashMap<JobId, (ScheduledJob, i64)>,
}

impl DelayedTable {
    /// Adds or moves a job. A new schedule supersedes a lease on the same id: the job
    /// has started a new wait, and the old release must not bring back the old copy.
    pub fn schedule(&mut self, job: ScheduledJob) {
        self.leased.remove(&job.id);
        self.remove_waiting(job.id);
        self.by_due.insert((job.due_ms, job.id));
        self.waiting.insert(job.id, job);
    }

    pub fn claim_due(&mut self, now_ms: i64, limit: usize, lease_ms: u64) -> Vec<ScheduledJob> {
        let expired: Vec<JobId> = self
            .leased
            .iter()
            .filter(|(_, (_, until))| *until <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some((job, _)) = self.leased.remove(&id) {
                self.by_due.insert((job.due_ms, job.id));
                self.waiting.insert(job.id, job);
            }
        }

        let due: Vec<JobId> = self
            .by_due
            .iter()
            .take_while(|(due_ms, _)| *due_ms <= now_ms)
            .take(limit)
            .map(|(_, id)| *id)
            .collect();
        let until = now_ms.saturating_add(i64::try_from(lease_ms).unwrap_or(i64::MAX));
        let mut claimed = Vec::with_capacity(due.len());
        for id in due {
            if let Some(job) = self.remove_waiting(id) {
                claimed.push(job.clone());
                self.leased.insert(id, (job, until));
            }
        }
        claimed
    }

    pub fn release_done(&mut self, ids: &[JobId]) {
        for id in ids {
            self.leased.remove(id);
        }
    }

    /// Removes the job wherever it is; true only if it was still waiting (a leased job
    /// may already have been published).
    pub fn unschedule(&mut self, id: JobId) -> Option<Bytes> {
        self.leased.remove(&id);
        self.remove_waiting(id).map(|job| job.body)
    }

    pub fn next_due_ms(&self) -> Option<i64> {
        self.by_due.first().map(|(due_ms, _)| *due_ms)
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        let leased = self.leased.values().map(|(job, _)| job);
        for job in self.waiting.values().chain(leased) {
            *counts.entry(job.queue.clone()).or_insert(0) += 1;
        }
        counts
    }

    fn remove_waiting(&mut self, id: JobId) -> Option<ScheduledJob> {
        let job = self.waiting.remove(&id)?;
        self.by_due.remove(&(job.due_ms, id));
        Some(job)
    }
}
