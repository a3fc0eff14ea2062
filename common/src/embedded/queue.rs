//! One embedded route: priority bands of waiting messages, the unsettled count, and the
//! acker that settles a delivery.
//!
//! A ready route keeps one FIFO band per priority level and hands out the highest band
//! first, as a RabbitMQ queue declared with `x-max-priority` does; the shared routes use a
//! single band, so they are plain FIFO. A requeued message goes back to the front of its
//! band. Settling also returns credit to the consumer that took the message, which is
//! what lets that consumer pull its next one under its prefetch limit.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;

use super::lock;
use crate::broker::{Acker, BrokerError, Depth, Message, Route};
use crate::job::Priority;

const BANDS: usize = Priority::MAX as usize + 1;

/// A message waiting on a route.
#[derive(Clone, Debug)]
pub(super) struct Stored {
    pub body: Bytes,
    pub content_type: Option<String>,
    pub reason: Option<String>,
    pub redelivered: bool,
    band: usize,
}

#[derive(Debug, Default)]
struct Waiting {
    bands: [VecDeque<Stored>; BANDS],
    unacked: u64,
}

/// A route's messages and the wake-up for consumers waiting on it.
#[derive(Debug)]
pub(super) struct RouteQueue {
    prioritised: bool,
    waiting: Mutex<Waiting>,
    /// Woken whenever a message becomes ready (published or requeued).
    ready: Notify,
}

impl RouteQueue {
    pub fn new(route: &Route) -> Self {
        Self {
            prioritised: matches!(route, Route::Ready(_)),
            waiting: Mutex::default(),
            ready: Notify::new(),
        }
    }

    /// The notification a consumer registers before it looks for a message, so a
    /// publish between its look and its wait is not missed.
    pub fn ready(&self) -> &Notify {
        &self.ready
    }

    /// Appends messages to the back of their bands.
    pub fn push(&self, messages: impl IntoIterator<Item = Message>) {
        {
            let mut waiting = lock(&self.waiting);
            for m in messages {
                let band = self.band(m.priority);
                let stored = Stored {
                    body: m.body,
                    content_type: m.content_type,
                    reason: m.reason,
                    redelivered: false,
                    band,
                };
                waiting.bands[band].push_back(stored);
            }
        }
        self.ready.notify_waiters();
    }

    /// Takes the next message (highest band first) and counts it unsettled.
    pub fn take(&self) -> Option<Stored> {
        let mut waiting = lock(&self.waiting);
        let next = waiting
            .bands
            .iter_mut()
            .rev()
            .find_map(VecDeque::pop_front)?;
        waiting.unacked += 1;
        Some(next)
    }

    /// Settles a taken message: gone for good, or back at the front of its band.
    fn settle(&self, message: Stored, requeue: bool) {
        {
            let mut waiting = lock(&self.waiting);
            waiting.unacked = waiting.unacked.saturating_sub(1);
            if requeue {
                let band = message.band;
                waiting.bands[band].push_front(Stored {
                    redelivered: true,
                    ..message
                });
            }
        }
        if requeue {
            self.ready.notify_waiters();
        }
    }

    pub fn depth(&self) -> Depth {
        let waiting = lock(&self.waiting);
        let ready = waiting.bands.iter().map(|b| b.len() as u64).sum();
        Depth {
            ready,
            unacked: Some(waiting.unacked),
        }
    }

    fn band(&self, priority: Priority) -> usize {
        if self.prioritised {
            usize::from(priority.level()).min(BANDS - 1)
        } else {
            0
        }
    }
}

/// How many deliveries one consumer holds unsettled, and its wake-up when one settles.
#[derive(Debug, Default)]
pub(super) struct Credit {
    in_flight: AtomicUsize,
    settled: Notify,
}

impl Credit {
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn taken(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// The notification a consumer at its prefetch limit waits on.
    pub fn settled(&self) -> &Notify {
        &self.settled
    }

    fn returned(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        // One consumer task waits here; a stored permit only costs a spurious wake.
        self.settled.notify_one();
    }
}

/// Settles one delivery; dropping it unsettled requeues the message, as an AMQP broker
/// does with the unacked messages of a closed channel.
#[derive(Debug)]
pub(super) struct EmbeddedAcker {
    queue: Arc<RouteQueue>,
    credit: Arc<Credit>,
    message: Option<Stored>,
}

impl EmbeddedAcker {
    pub fn new(queue: Arc<RouteQueue>, credit: Arc<Credit>, message: Stored) -> Self {
        Self {
            queue,
            credit,
            message: Some(message),
        }
    }

    fn settle(&mut self, requeue: bool) {
        if let Some(message) = self.message.take() {
            self.queue.settle(message, requeue);
            self.credit.returned();
        }
    }
}

#[async_trait]
impl Acker for EmbeddedAcker {
    async fn ack(mut self: Box<Self>) -> Result<(), BrokerError> {
        self.settle(false);
        Ok(())
    }

    async fn requeue(mut self: Box<Self>) -> Result<(), BrokerError> {
        self.settle(true);
        Ok(())
    }
}

impl Drop for EmbeddedAcker {
    fn drop(&mut self) {
        self.settle(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(route: &Route, level: u8, body: &'static str) -> Message {
        let priority = Priority::new(level).expect("a valid level");
        Message::new(
            route.clone(),
            priority,
            Bytes::from_static(body.as_bytes()),
            "text/plain",
        )
    }

    fn drain(q: &RouteQueue) -> Vec<Bytes> {
        std::iter::from_fn(|| q.take()).map(|m| m.body).collect()
    }

    #[test]
    fn ready_routes_take_highest_priority_first_and_fifo_within_one() {
        let route = Route::Ready("q".into());
        let q = RouteQueue::new(&route);
        q.push([
            msg(&route, 3, "a"),
            msg(&route, 9, "b"),
            msg(&route, 3, "c"),
            msg(&route, 0, "d"),
        ]);
        q.push([msg(&route, 9, "e")]);
        assert_eq!(drain(&q), ["b", "e", "a", "c", "d"]);
        assert_eq!(
            q.depth(),
            Depth {
                ready: 0,
                unacked: Some(5)
            }
        );
    }

    #[test]
    fn shared_routes_ignore_priority() {
        let q = RouteQueue::new(&Route::Failed);
        q.push([msg(&Route::Failed, 0, "a"), msg(&Route::Failed, 9, "b")]);
        assert_eq!(drain(&q), ["a", "b"]);
    }

    #[test]
    fn requeue_goes_to_the_front_of_its_band_marked_redelivered() {
        let route = Route::Ready("q".into());
        let q = Arc::new(RouteQueue::new(&route));
        q.push([
            msg(&route, 5, "a"),
            msg(&route, 5, "b"),
            msg(&route, 9, "c"),
        ]);
        let credit = Arc::new(Credit::default());
        let _c = q.take().expect("a waiting message");
        let a = q.take().expect("a waiting message");
        credit.taken();
        drop(EmbeddedAcker::new(q.clone(), credit, a));
        let next = q.take().expect("a waiting message");
        assert_eq!(next.body, "a");
        assert!(next.redelivered);
        assert_eq!(q.take().expect("a waiting message").body, "b");
    }
}
