//! The embedded dead-letter store.

use std::collections::{BTreeMap, HashMap};

use crate::job::JobId;
use crate::store::{DeadFilter, DeadLetter, DeadSummary};

/// The queue name counted for letters whose queue is unknown.
const UNKNOWN_QUEUE: &str = "?";

/// Dead letters by id.
#[derive(Debug, Default)]
pub(super) struct DeadTable {
    letters: HashMap<JobId, DeadLetter>,
}

impl DeadTable {
    pub fn put(&mut self, letter: DeadLetter) {
        self.letters.insert(letter.id, letter);
    }

    /// Newest first; ties broken by id (newest v7 id first) so listings are stable.
    pub fn list(&self, filter: &DeadFilter, limit: usize) -> Vec<DeadSummary> {
        let mut matching: Vec<&DeadLetter> = self
            .letters
            .values()
            .filter(|l| filter.matches_letter(l))
            .collect();
        matching.sort_by_key(|l| std::cmp::Reverse((l.died_at_ms, l.id.0)));
        matching
            .into_iter()
            .take(limit)
            .map(DeadLetter::summary)
            .collect()
    }

    pub fn get(&self, id: JobId) -> Option<DeadLetter> {
        self.letters.get(&id).cloned()
    }

    pub fn remove(&mut self, ids: &[JobId]) -> u64 {
        ids.iter()
            .filter(|id| self.letters.remove(id).is_some())
            .count() as u64
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for letter in self.letters.values() {
            let queue = letter.queue.as_deref().unwrap_or(UNKNOWN_QUEUE);
            *counts.entry(queue.to_string()).or_insert(0) += 1;
        }
        counts
    }
}
