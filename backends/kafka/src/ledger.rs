//! One consumer stream's bookkeeping, free of I/O: what was fetched and not yet handed
//! out (one buffer per priority band), what is running, which offsets may be committed.
//!
//! [`Ledger::pick`] decides what the stream yields next:
//!
//! 1. nothing while `limit` deliveries are unsettled (the prefetch), or while a new
//!    assignment is still catching up (see [`Ledger::caught_up_to`]), so the first pick
//!    after an assignment sees every band's backlog and not whichever fetch came first;
//! 2. within a band, the earliest fetched entry that is *eligible*: one whose key is not
//!    the key of an unsettled delivery of the same partition. Jobs with one key are
//!    published to one partition, so this runs them one at a time, in partition order;
//! 3. across bands, the highest band with an eligible entry, except that a band passed
//!    over by [`STARVATION_LIMIT`] deliveries in a row (while it had an eligible entry)
//!    is served next: low bands slow down under load but are never starved.
//!
//! It is generic over the fetched item so the rules are tested without a broker.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::offsets::OffsetTracker;

/// A band passed over by this many deliveries in a row is served next: at most
/// `STARVATION_LIMIT` deliveries from higher bands separate two from a waiting band.
pub(super) const STARVATION_LIMIT: u32 = 7;

/// One partition of one topic.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Partition {
    pub topic: Arc<str>,
    pub partition: i32,
}

/// A fetched message waiting to be handed out.
#[derive(Debug)]
pub(super) struct Entry<T> {
    pub partition: Partition,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub item: T,
}

/// What settling a delivery needs to find its partition's state again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Ticket {
    pub partition: Partition,
    pub offset: i64,
    key: Option<Vec<u8>>,
    /// Which assignment of the partition it came from: a delivery from before a
    /// revocation must not touch the state of a later assignment.
    epoch: u64,
}

/// A picked entry, and a partition the caller should resume fetching.
#[derive(Debug)]
pub(super) struct Picked<T> {
    pub entry: Entry<T>,
    pub ticket: Ticket,
    pub resume: Option<Partition>,
}

/// Whether a new assignment has fetched its backlog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CatchUp {
    /// The backlog's end is not known yet.
    Unknown,
    /// Waiting for this offset (the last one at assignment time).
    Until(i64),
    Done,
}

/// The state of one partition assigned to this consumer.
#[derive(Debug)]
struct Assigned {
    epoch: u64,
    offsets: OffsetTracker,
    /// Keys of unsettled deliveries (at most one delivery per key runs at a time).
    running: HashSet<Vec<u8>>,
    buffered: usize,
    paused: bool,
    catch_up: CatchUp,
}

/// The bookkeeping of one consumer stream.
#[derive(Debug)]
pub(super) struct Ledger<T> {
    /// Index = band, 0 lowest; each in fetch order.
    bands: Vec<VecDeque<Entry<T>>>,
    /// Deliveries in a row that passed over each band while it had an eligible entry.
    passed: Vec<u32>,
    assigned: HashMap<Partition, Assigned>,
    unsettled: usize,
    next_epoch: u64,
    /// Entries buffered per partition before the caller should pause fetching it
    /// (`kafka.buffer_records`).
    high: usize,
    /// A paused partition is resumed once its buffer is down to this, half of `high`:
    /// enough to keep the stream busy while librdkafka, which drops a paused partition's
    /// fetched records, fetches again (256 and 64 held one partition to 2,300 jobs/s on
    /// Apache Kafka 4.1; docs/kafka.md, "Priority bands").
    low: usize,
}

impl<T> Ledger<T> {
    /// An empty ledger for `bands` bands (at least one) that pauses a partition at
    /// `buffer` buffered entries (at least 2) and resumes it at half.
    pub fn new(bands: u8, buffer: usize) -> Self {
        let bands = usize::from(bands.max(1));
        Self {
            bands: (0..bands).map(|_| VecDeque::new()).collect(),
            passed: vec![0; bands],
            assigned: HashMap::new(),
            unsettled: 0,
            next_epoch: 0,
            high: buffer.max(2),
            low: buffer.max(2) / 2,
        }
    }

    /// Partitions newly assigned; picks wait until each has caught up.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = Partition>) {
        for partition in partitions {
            self.next_epoch += 1;
            let state = Assigned {
                epoch: self.next_epoch,
                offsets: OffsetTracker::default(),
                running: HashSet::new(),
                buffered: 0,
                paused: false,
                catch_up: CatchUp::Unknown,
            };
            self.assigned.insert(partition, state);
        }
    }

    /// Partitions taken away: their buffered entries are dropped (the next owner fetches
    /// them from the committed offset). Deliveries still running may be settled; they
    /// no longer move any offset. Returns those of them that were paused, for the caller
    /// to resume: librdkafka keeps a partition paused across a revocation, and a later
    /// assignment of it starts unpaused here.
    pub fn revoke(&mut self, partitions: &[Partition]) -> Vec<Partition> {
        let mut paused = Vec::new();
        for partition in partitions {
            if self.assigned.remove(partition).is_some_and(|s| s.paused) {
                paused.push(partition.clone());
            }
        }
        for band in &mut self.bands {
            band.retain(|e| !partitions.contains(&e.partition));
        }
        paused
    }

    /// The partitions currently assigned.
    #[cfg(test)]
    pub fn assigned(&self) -> Vec<Partition> {
        self.assigned.keys().cloned().collect()
    }

    /// The end of `partition`'s backlog at assignment time: `None` when it has none,
    /// else its last offset. Picks wait until every assigned partition has fetched its
    /// backlog's end (or filled its buffer).
    pub fn caught_up_to(&mut self, partition: &Partition, last: Option<i64>) {
        if let Some(state) = self.assigned.get_mut(partition) {
            if state.catch_up == CatchUp::Unknown {
                state.catch_up = match last {
                    Some(last) if state.offsets.highest().is_none_or(|h| h < last) => {
                        CatchUp::Until(last)
                    }
                    _ => CatchUp::Done,
                };
            }
        }
    }

    /// Stops waiting for backlogs (they took too long): picks start.
    pub fn stop_catching_up(&mut self) {
        for state in self.assigned.values_mut() {
            state.catch_up = CatchUp::Done;
        }
    }

    /// Whether picks wait for a backlog.
    pub fn is_catching_up(&self) -> bool {
        self.assigned.values().any(|s| s.catch_up != CatchUp::Done)
    }

    /// Buffers a fetched entry in `band`. Returns whether the caller should pause its
    /// partition (buffer full); an entry of a partition not assigned is dropped.
    pub fn push(&mut self, band: u8, entry: Entry<T>) -> bool {
        let Some(state) = self.assigned.get_mut(&entry.partition) else {
            return false;
        };
        state.offsets.received(entry.offset);
        state.buffered += 1;
        if let CatchUp::Until(last) = state.catch_up {
            if entry.offset >= last {
                state.catch_up = CatchUp::Done;
            }
        }
        let pause = state.buffered >= self.high && !state.paused;
        if state.buffered >= self.high {
            // A full buffer is as caught up as this consumer will get.
            state.paused = true;
            state.catch_up = CatchUp::Done;
        }
        let band = usize::from(band).min(self.bands.len() - 1);
        self.bands[band].push_back(entry);
        pause
    }

    /// The next entry to hand out, if any may go now (see the module documentation).
    pub fn pick(&mut self, limit: usize) -> Option<Picked<T>> {
        if self.unsettled >= limit || self.is_catching_up() {
            return None;
        }
        let eligible: Vec<Option<usize>> =
            (0..self.bands.len()).map(|b| self.eligible(b)).collect();
        let highest = (0..self.bands.len())
            .rev()
            .find(|&b| eligible[b].is_some())?;
        let starved = (0..highest)
            .rev()
            .find(|&b| eligible[b].is_some() && self.passed[b] >= STARVATION_LIMIT);
        let band = starved.unwrap_or(highest);
        for (b, found) in eligible.iter().enumerate() {
            if b == band || found.is_none() {
                self.passed[b] = 0;
            } else if b < band {
                self.passed[b] += 1;
            }
        }
        let index = eligible[band]?;
        let entry = self.bands[band].remove(index)?;
        let state = self.assigned.get_mut(&entry.partition)?;
        state.buffered -= 1;
        if let Some(key) = &entry.key {
            state.running.insert(key.clone());
        }
        let resume = (state.paused && state.buffered <= self.low).then(|| {
            state.paused = false;
            entry.partition.clone()
        });
        self.unsettled += 1;
        let ticket = Ticket {
            partition: entry.partition.clone(),
            offset: entry.offset,
            key: entry.key.clone(),
            epoch: state.epoch,
        };
        Some(Picked {
            entry,
            ticket,
            resume,
        })
    }

    /// The index of `band`'s first eligible entry.
    fn eligible(&self, band: usize) -> Option<usize> {
        self.bands[band].iter().position(|e| {
            let Some(key) = &e.key else { return true };
            self.assigned
                .get(&e.partition)
                .is_some_and(|s| !s.running.contains(key))
        })
    }

    /// Settles a delivery: `finished` when it is done with (acked, or requeued by a
    /// confirmed re-publish), not when it must be fetched again. Returns the position
    /// to store for its partition if it moved.
    pub fn settle(&mut self, ticket: &Ticket, finished: bool) -> Option<i64> {
        self.unsettled = self.unsettled.saturating_sub(1);
        let state = self
            .assigned
            .get_mut(&ticket.partition)
            .filter(|s| s.epoch == ticket.epoch)?;
        if let Some(key) = &ticket.key {
            state.running.remove(key);
        }
        if finished {
            state.offsets.finish(ticket.offset)
        } else {
            None
        }
    }

    /// Deliveries handed out and not settled.
    pub fn unsettled(&self) -> usize {
        self.unsettled
    }

    /// Entries buffered across all bands.
    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.bands.iter().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
