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

#[cfg(test)]
mod tests {

    use super::*;
    use crate::job::ErrorKind;
    use crate::store::fixtures::letter;

    #[test]
    fn lists_newest_first_through_the_filter() {
        let mut t = DeadTable::default();
        let old = letter(Some("q"), ErrorKind::Failed, 10);
        let new = letter(Some("q"), ErrorKind::Failed, 30);
        let other = letter(Some("r"), ErrorKind::Timeout, 20);
        let unknown = letter(None, ErrorKind::Undecodable, 40);
        for l in [&old, &new, &other, &unknown] {
            t.put(l.clone());
        }
        let all = t.list(&DeadFilter::default(), 10);
        assert_eq!(
            all.iter().map(|l| l.died_at_ms).collect::<Vec<_>>(),
            [40, 30, 20, 10]
        );
        assert_eq!(t.list(&DeadFilter::default(), 2).len(), 2);
        let in_q = DeadFilter {
            queue: Some("q".into()),
            ..DeadFilter::default()
        };
        assert_eq!(t.list(&in_q, 10), [new.summary(), old.summary()]);
        let timeouts = DeadFilter {
            error: Some("timeout".into()),
            ..DeadFilter::default()
        };
        assert_eq!(t.list(&timeouts, 10), [other.summary()]);
        let expected = BTreeMap::from([("?".into(), 1), ("q".into(), 2), ("r".into(), 1)]);
        assert_eq!(t.counts(), expected);
    }

    #[test]
    fn put_replaces_and_remove_counts_what_existed() {
        let mut t = DeadTable::default();
        let mut l = letter(Some("q"), ErrorKind::Failed, 10);
        t.put(l.clone());
        l.reason = "second death".into();
        t.put(l.clone());
        assert_eq!(t.get(l.id), Some(l.clone()));
        assert_eq!(t.remove(&[l.id, JobId::new()]), 1);
        assert_eq!(t.get(l.id), None);
        assert!(t.counts().is_empty());
    }
}
