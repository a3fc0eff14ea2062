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

#[cfg(test)]
mod tests {

    use super::*;
    use crate::store::fixtures::scheduled as job;

    fn ids(jobs: &[ScheduledJob]) -> Vec<JobId> {
        jobs.iter().map(|j| j.id).collect()
    }

    #[test]
    fn claims_due_jobs_earliest_first_up_to_the_limit() {
        let mut t = DelayedTable::default();
        let (a, b, c, later) = (job("q", 30), job("q", 10), job("r", 20), job("q", 500));
        for j in [&a, &b, &c, &later] {
            t.schedule(j.clone());
        }
        assert_eq!(t.next_due_ms(), Some(10));
        assert_eq!(ids(&t.claim_due(100, 2, 1_000)), [b.id, c.id]);
        assert_eq!(ids(&t.claim_due(100, 10, 1_000)), [a.id]);
        assert!(
            t.claim_due(100, 10, 1_000).is_empty(),
            "claimed jobs are not claimed again"
        );
        assert_eq!(t.next_due_ms(), Some(500));
        assert_eq!(
            t.counts(),
            BTreeMap::from([("q".into(), 3), ("r".into(), 1)])
        );
        t.release_done(&[a.id, b.id, c.id]);
        assert_eq!(t.counts(), BTreeMap::from([("q".into(), 1)]));
    }

    #[test]
    fn an_expired_lease_returns_its_jobs() {
        let mut t = DelayedTable::default();
        let a = job("q", 10);
        t.schedule(a.clone());
        assert_eq!(ids(&t.claim_due(100, 10, 50)), [a.id]);
        assert!(t.claim_due(149, 10, 50).is_empty(), "lease still holds");
        assert_eq!(ids(&t.claim_due(150, 10, 50)), [a.id]);
        t.release_done(&[a.id]);
        assert!(t.claim_due(1_000, 10, 50).is_empty());
        assert!(t.counts().is_empty());
    }

    #[test]
    fn schedule_moves_an_existing_id_and_unschedule_removes_it() {
        let mut t = DelayedTable::default();
        let mut a = job("q", 10);
        t.schedule(a.clone());
        a.due_ms = 300;
        t.schedule(a.clone());
        assert!(t.claim_due(100, 10, 50).is_empty());
        assert_eq!(t.counts(), BTreeMap::from([("q".into(), 1)]));
        assert!(t.unschedule(a.id).is_some());
        assert!(t.unschedule(a.id).is_none());
        assert_eq!(t.next_due_ms(), None);
    }

    #[test]
    fn rescheduling_a_claimed_job_supersedes_its_lease() {
        let mut t = DelayedTable::default();
        let mut a = job("q", 10);
        t.schedule(a.clone());
        t.claim_due(100, 10, 50);
        a.due_ms = 1_000;
        t.schedule(a.clone());
        t.release_done(&[a.id]);
        assert_eq!(t.claim_due(1_000, 10, 50), [a]);
    }
}
