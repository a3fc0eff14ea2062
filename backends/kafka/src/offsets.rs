//! Which offset of one partition may be committed: the lowest one not yet finished.
//!
//! Kafka commits a position per partition, not per message: committing `n` says "every
//! offset below `n` is done". Jobs finish out of order (concurrency, per-key hold-back),
//! so the position stored for a partition is the lowest offset received and not yet
//! finished; with nothing unfinished, the offset after the highest one received. Offsets
//! arrive in increasing order per partition (a fetch reads the log in order), so gaps
//! between them (compacted records, transaction markers) are simply skipped.

use std::collections::BTreeSet;

/// The unfinished offsets of one assigned partition and the position last stored.
#[derive(Debug, Default)]
pub(super) struct OffsetTracker {
    /// Received (buffered or delivered) and not finished.
    unfinished: BTreeSet<i64>,
    /// The highest offset received, if any.
    highest: Option<i64>,
    /// The position last handed to `store_offsets` (at first, the first offset received).
    stored: Option<i64>,
}

impl OffsetTracker {
    /// Records a received offset; it is unfinished until [`OffsetTracker::finish`].
    pub fn received(&mut self, offset: i64) {
        // Where consumption started is as good as stored: nothing to store before it.
        self.stored.get_or_insert(offset);
        self.unfinished.insert(offset);
        self.highest = Some(self.highest.map_or(offset, |h| h.max(offset)));
    }

    /// Whether `offset` was received and is not finished yet.
    #[cfg(test)]
    pub fn is_unfinished(&self, offset: i64) -> bool {
        self.unfinished.contains(&offset)
    }

    /// Marks `offset` finished; returns the new position to store if it moved forward.
    pub fn finish(&mut self, offset: i64) -> Option<i64> {
        if !self.unfinished.remove(&offset) {
            return None;
        }
        let position = self.position()?;
        if self.stored.is_some_and(|s| s >= position) {
            return None;
        }
        self.stored = Some(position);
        Some(position)
    }

    /// The lowest unfinished offset, or the one after the highest received; `None`
    /// before anything was received.
    pub fn position(&self) -> Option<i64> {
        match self.unfinished.first() {
            Some(&lowest) => Some(lowest),
            None => self.highest.map(|h| h + 1),
        }
    }

    /// The highest offset received, if any.
    pub fn highest(&self) -> Option<i64> {
        self.highest
    }

    /// Whether any received offset is unfinished.
    #[cfg(test)]
    pub fn has_unfinished(&self) -> bool {
        !self.unfinished.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(offsets: &[i64]) -> OffsetTracker {
        let mut t = OffsetTracker::default();
        for &o in offsets {
            t.received(o);
        }
        t
    }

    #[test]
    fn in_order_finishes_advance_one_by_one() {
        let mut t = tracker(&[10, 11, 12]);
        assert_eq!(t.position(), Some(10));
        assert_eq!(t.finish(10), Some(11));
        assert_eq!(t.finish(11), Some(12));
        assert_eq!(t.finish(12), Some(13));
        assert!(!t.has_unfinished());
    }

    #[test]
    fn out_of_order_finishes_wait_for_the_lowest() {
        let mut t = tracker(&[0, 1, 2, 3]);
        assert_eq!(t.finish(2), None, "0 and 1 are still running");
        assert_eq!(t.finish(3), None);
        assert_eq!(t.finish(1), None);
        assert_eq!(t.position(), Some(0));
        assert_eq!(t.finish(0), Some(4), "the whole prefix is done at once");
    }

    #[test]
    fn a_held_back_offset_pins_the_position() {
        // 5 waits (same key as a running job), 6 and 7 overtake it.
        let mut t = tracker(&[5, 6, 7]);
        assert_eq!(t.finish(6), None);
        assert_eq!(t.finish(7), None);
        t.received(8);
        assert_eq!(t.finish(8), None, "never past the unfinished 5");
        assert_eq!(t.finish(5), Some(9));
    }

    #[test]
    fn gaps_between_offsets_are_skipped() {
        let mut t = tracker(&[3, 7, 20]);
        assert_eq!(t.finish(3), Some(7));
        assert_eq!(t.finish(20), None);
        assert_eq!(t.finish(7), Some(21));
    }

    #[test]
    fn unknown_and_repeated_finishes_change_nothing() {
        let mut t = tracker(&[1, 2]);
        assert_eq!(t.finish(9), None);
        assert_eq!(t.finish(1), Some(2));
        assert_eq!(t.finish(1), None);
        assert!(t.is_unfinished(2));
        assert_eq!(OffsetTracker::default().position(), None);
    }
}
