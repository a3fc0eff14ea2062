//! Embedded job states: state records, completion markers, cancel requests, execution
//! leases and uniqueness keys. Times are passed in.

use std::collections::{HashMap, HashSet};

use crate::job::JobId;
use crate::store::{Admission, JobRecord, JobState, LeaseRequest};

/// One job's execution lease, kept after release for its token and crash count.
#[derive(Debug, Default)]
struct Lease {
    /// The holder and when its lease expires (Unix ms), while held.
    holder: Option<(String, i64)>,
    token: u64,
    crashes: u32,
}

/// Everything the store knows about individual jobs.
#[derive(Debug, Default)]
pub(super) struct StateTable {
    records: HashMap<JobId, JobRecord>,
    completed: HashSet<JobId>,
    cancels: HashSet<JobId>,
    leases: HashMap<JobId, Lease>,
    /// Uniqueness key → (holder, expiry in Unix ms).
    unique: HashMap<String, (JobId, i64)>,
    /// Queues producers and workers recorded.
    pub queues: std::collections::BTreeSet<String>,
    /// Jobs completed per queue (once per job).
    pub completed_counts: std::collections::BTreeMap<String, u64>,
}

impl StateTable {
    /// Writes a record, unless the job completed: its final record stays.
    pub fn put(&mut self, record: JobRecord) {
        if !self.completed.contains(&record.id) {
            self.records.insert(record.id, record);
        }
    }

    /// Removes the records of `ids` still `pending` or `scheduled`; how many.
    pub fn forget_unpublished(&mut self, ids: &[JobId]) -> u64 {
        let mut removed = 0;
        for id in ids {
            let waiting = self
                .records
                .get(id)
                .is_some_and(|r| matches!(r.state, JobState::Pending | JobState::Scheduled));
            if waiting {
                self.records.remove(id);
                removed += 1;
            }
        }
        removed
    }

    /// The oldest `pending` record's time per queue among `queues`.
    pub fn oldest_pending(&self, queues: &[String]) -> std::collections::BTreeMap<String, i64> {
        let mut oldest = std::collections::BTreeMap::new();
        for r in self.records.values() {
            if r.state == JobState::Pending && queues.contains(&r.queue) {
                let at = oldest.entry(r.queue.clone()).or_insert(r.updated_at_ms);
                *at = (*at).min(r.updated_at_ms);
            }
        }
        oldest
    }

    pub fn record(&self, id: JobId) -> Option<JobRecord> {
        self.records.get(&id).cloned()
    }

    /// The record and its marker under one lock, so no reader sees one without the other.
    pub fn complete(&mut self, record: JobRecord) {
        self.leases.remove(&record.id);
        if self.completed.insert(record.id) {
            *self
                .completed_counts
                .entry(record.queue.clone())
                .or_default() += 1;
        }
        self.records.insert(record.id, record);
    }

    pub fn is_completed(&self, id: JobId) -> bool {
        self.completed.contains(&id)
    }

    pub fn request_cancel(&mut self, id: JobId) {
        self.cancels.insert(id);
    }

    pub fn cancel_requested(&self, ids: &[JobId]) -> Vec<bool> {
        ids.iter().map(|id| self.cancels.contains(id)).collect()
    }

    /// The admission checks and the lease, as the Redis script does them (see
    /// [`crate::store::Executions::admit`]).
    pub fn admit(
        &mut self,
        id: JobId,
        running: Option<&JobRecord>,
        req: &LeaseRequest,
        now_ms: i64,
    ) -> Admission {
        if self.completed.contains(&id) {
            return Admission::Completed;
        }
        if self.cancels.contains(&id) {
            return Admission::CancelRequested;
        }
        let lease = self.leases.entry(id).or_default();
        if let Some((_, until)) = &lease.holder {
            if *until > now_ms {
                let remaining_ms = u64::try_from(until - now_ms).unwrap_or(0);
                return Admission::Busy { remaining_ms };
            }
            lease.crashes += 1;
            lease.holder = None;
        }
        if lease.crashes >= req.max_crashes {
            return Admission::Crashed {
                crashes: lease.crashes,
            };
        }
        lease.token += 1;
        let until = now_ms.saturating_add(i64::try_from(req.ttl_ms).unwrap_or(i64::MAX));
        lease.holder = Some((req.holder.clone(), until));
        let admitted = Admission::Clear {
            token: lease.token,
            crashes: lease.crashes,
        };
        if let Some(record) = running {
            self.records.insert(id, record.clone());
        }
        admitted
    }

    /// Extends `holder`'s lease; false if it holds none.
    pub fn lease_renew(&mut self, id: JobId, holder: &str, ttl_ms: u64, now_ms: i64) -> bool {
        let Some((current, until)) = self.leases.get_mut(&id).and_then(|l| l.holder.as_mut())
        else {
            return false;
        };
        if current != holder {
            return false;
        }
        *until = now_ms.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
        true
    }

    /// Frees `holder`'s lease, if it holds it.
    pub fn lease_release(&mut self, id: JobId, holder: &str) {
        if let Some(lease) = self.leases.get_mut(&id) {
            if lease.holder.as_ref().is_some_and(|(h, _)| h == holder) {
                lease.holder = None;
            }
        }
    }

    /// `None` if `id` now holds the key (or already did), else the live holder. A repeated
    /// claim by the holder keeps the original expiry, as `SET NX` would.
    pub fn unique_claim(
        &mut self,
        key: &str,
        id: JobId,
        ttl_ms: u64,
        now_ms: i64,
    ) -> Option<JobId> {
        if let Some((holder, until)) = self.unique.get(key) {
            if *until > now_ms {
                return (*holder != id).then_some(*holder);
            }
        }
        let until = now_ms.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
        self.unique.insert(key.to_string(), (id, until));
        None
    }

    /// The live holder of a uniqueness key, if any.
    pub fn unique_holder(&self, key: &str, now_ms: i64) -> Option<JobId> {
        self.unique
            .get(key)
            .filter(|(_, until)| *until > now_ms)
            .map(|(holder, _)| *holder)
    }

    pub fn unique_release(&mut self, key: &str, id: JobId) {
        if self
            .unique
            .get(key)
            .is_some_and(|(holder, _)| *holder == id)
        {
            self.unique.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completed_jobs_record_is_never_replaced() {
        let mut t = StateTable::default();
        use crate::store::JobState;
        let job = crate::job::Job::new("q", "k", "{}");
        t.put(JobRecord::of(&job, JobState::Running, 1));
        assert!(t.oldest_pending(&["q".into()]).is_empty());
        let done = JobRecord::of(&job, JobState::Completed, 2);
        t.complete(done.clone());
        t.put(JobRecord::of(&job, JobState::Pending, 3));
        assert_eq!(t.record(job.id), Some(done));
        assert!(t.oldest_pending(&["q".into()]).is_empty());
        let waiting = [
            crate::job::Job::new("q", "k", "{}"),
            crate::job::Job::new("q", "k", "{}"),
        ];
        t.put(JobRecord::of(&waiting[0], JobState::Pending, 40));
        t.put(JobRecord::of(&waiting[1], JobState::Pending, 30));
        let oldest = t.oldest_pending(&["q".into(), "other".into()]);
        assert_eq!(oldest, [("q".to_string(), 30)].into());
    }

    #[test]
    fn uniqueness_keys_hold_until_released_or_expired() {
        let mut t = StateTable::default();
        let (a, b) = (JobId::new(), JobId::new());
        assert_eq!(t.unique_claim("k", a, 100, 0), None);
        assert_eq!(
            t.unique_claim("k", a, 100, 10),
            None,
            "the holder may claim again"
        );
        assert_eq!(t.unique_claim("k", b, 100, 10), Some(a));
        t.unique_release("k", b);
        assert_eq!(
            t.unique_claim("k", b, 100, 20),
            Some(a),
            "only the holder releases"
        );
        t.unique_release("k", a);
        assert_eq!(t.unique_claim("k", b, 100, 20), None);
        assert_eq!(t.unique_claim("k", a, 100, 119), Some(b));
        assert_eq!(
            t.unique_claim("k", a, 100, 120),
            None,
            "b's claim expired at 120"
        );
    }

    #[test]
    fn cancel_flags_answer_in_order() {
        let mut t = StateTable::default();
        let (a, b) = (JobId::new(), JobId::new());
        t.request_cancel(b);
        assert_eq!(t.cancel_requested(&[a, b, a]), [false, true, false]);
    }
}
