//! One consumer stream over a ready route's band queues (quorum queues, which have no
//! priorities), handing out the highest band's deliveries first.
//!
//! Each band queue has a consumer of its own (`consume`), on its own channel, with a
//! prefetch of [`band_prefetch`]. Whatever the bands' consumers have received waits in a
//! buffer per band; each time the worker asks for a delivery, the merge first takes in
//! everything that has arrived, then hands out the oldest delivery of the highest band
//! that has one. Bands are strict, as classic priority queues are: a lower band waits
//! while a higher one has jobs.
//!
//! Two things could still let a lower band run before a higher one, and both are bounded:
//!
//! - **Start-up.** The bands' consumers attach one after another and their first
//!   deliveries arrive in any order. A band whose queue held jobs when its consumer
//!   attached (the declare's message count) is *awaited*: nothing from a lower band is
//!   handed out until it has delivered, or for at most [`CATCH_UP`] (its jobs may have
//!   gone to another worker). After a reconnect the bands resume without this wait.
//! - **Refill.** A band's server-side prefetch is twice the stream's (at least 4 more),
//!   so while the worker runs `prefetch` jobs of a band, as many more wait in the buffer. When
//!   that buffer runs dry faster than the server refills it (a settle, a Raft commit,
//!   a delivery), the band's [`Window`] knows: a settle that freed a slot of a *full*
//!   window means the server may be sending the next job of the band right now. Until it
//!   arrives, or [`REFILL`] passes (the band's queue was empty), no lower band is handed
//!   out. A band whose window is not full has been sent everything its queue held.
//!
//! What is left: a job published to a higher band after a lower band's delivery was
//! handed out runs after it (it was not there yet), and the first jobs after a
//! reconnect come in arrival order.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use super::lock;

use jobfleet_common::broker::{BrokerError, Consumer, Delivery};

/// Longest wait, at start, for a band that held jobs to deliver before a lower band may.
pub(super) const CATCH_UP: Duration = Duration::from_secs(2);

/// The server-side prefetch of each band queue's consumer for a stream of `prefetch`
/// (0: unlimited, as in AMQP): twice as many, and at least 4 more, so a band's next
/// jobs are already here when its running ones finish.
pub(super) fn band_prefetch(prefetch: u16) -> u16 {
    prefetch.saturating_mul(2).max(prefetch.saturating_add(4))
}

/// Longest wait for the next delivery of a band after a settle freed a slot of its full
/// window: a quorum queue's settle and next delivery go through its Raft log (a disk
/// write), a few milliseconds on a local disk.
pub(super) const REFILL: Duration = Duration::from_millis(250);

/// One band queue's consumer and what its queue held when the consumer attached.
pub(super) struct Band {
    pub stream: Consumer,
    pub backlog: u32,
    /// Its prefetch window; `None` for a stream that is not a band.
    pub window: Option<Arc<Window>>,
}

/// A band consumer's prefetch window: its deliveries not settled yet, and the refills
/// the server may owe it (settles that freed a slot of the full window).
pub(super) struct Window {
    prefetch: u16,
    unsettled: AtomicU32,
    owed: Mutex<Owed>,
}

/// Deliveries a band may be about to receive, and when the last one became owed.
#[derive(Default)]
struct Owed {
    count: u32,
    since: Option<Instant>,
}

impl Window {
    /// A window of `prefetch` deliveries (0: unlimited, never full).
    pub fn new(prefetch: u16) -> Self {
        Self {
            prefetch,
            unsettled: AtomicU32::new(0),
            owed: Mutex::default(),
        }
    }

    /// One more delivery arrived from the band's queue.
    fn delivered(&self) {
        self.unsettled.fetch_add(1, Ordering::SeqCst);
        let mut owed = lock(&self.owed);
        owed.count = owed.count.saturating_sub(1);
    }

    /// One of the band's deliveries was settled (acked, given back or dropped).
    pub fn settled(&self) {
        let before = self
            .unsettled
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(1))
            })
            .unwrap_or(0);
        if self.prefetch > 0 && before >= u32::from(self.prefetch) {
            let mut owed = lock(&self.owed);
            owed.count += 1;
            owed.since = Some(Instant::now());
        }
    }

    /// Until when a lower band must wait for this band's next delivery, if it must.
    fn refill_until(&self, now: Instant) -> Option<Instant> {
        let mut owed = lock(&self.owed);
        let until = owed.since.map(|t| t + REFILL).filter(|until| *until > now);
        if owed.count == 0 || until.is_none() {
            // Nothing owed, or the server had nothing more to send.
            *owed = Owed::default();
            return None;
        }
        until
    }
}

/// One stream over `bands`, lowest band first.
pub(super) fn merge(bands: Vec<Band>, catch_up: Duration) -> Consumer {
    let awaited: Vec<bool> = bands.iter().map(|b| b.backlog > 0).collect();
    let sleep = awaited
        .contains(&true)
        .then(|| Box::pin(tokio::time::sleep(catch_up)));
    Box::pin(Merge {
        buffers: bands.iter().map(|_| VecDeque::new()).collect(),
        windows: bands.iter().map(|b| b.window.clone()).collect(),
        streams: bands.into_iter().map(|b| Some(b.stream)).collect(),
        awaited,
        catch_up: sleep,
        refill: Box::pin(tokio::time::sleep(Duration::ZERO)),
    })
}

/// The merge's state; index = band.
struct Merge {
    /// `None` once a band's stream ended (the broker closed).
    streams: Vec<Option<Consumer>>,
    /// Received, not handed out yet. Dropped with the merge, each gives its message back.
    buffers: Vec<VecDeque<Delivery>>,
    /// Bands that held jobs at start and have delivered nothing yet.
    awaited: Vec<bool>,
    /// The end of the start-up wait, while any band is awaited.
    catch_up: Option<Pin<Box<Sleep>>>,
    windows: Vec<Option<Arc<Window>>>,
    /// Wakes the merge when a band's refill wait is over.
    refill: Pin<Box<Sleep>>,
}

impl Merge {
    /// Moves everything the bands' streams have ready into the buffers; an error item is
    /// passed on at once (the next poll carries on).
    fn take_in(&mut self, cx: &mut Context<'_>) -> Option<BrokerError> {
        for (band, slot) in self.streams.iter_mut().enumerate() {
            while let Some(stream) = slot.as_mut() {
                match stream.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(delivery))) => {
                        if let Some(window) = &self.windows[band] {
                            window.delivered();
                        }
                        self.buffers[band].push_back(delivery);
                        self.awaited[band] = false;
                    }
                    Poll::Ready(Some(Err(e))) => return Some(e),
                    Poll::Ready(None) => {
                        *slot = None;
                        self.awaited[band] = false;
                    }
                    Poll::Pending => break,
                }
            }
        }
        None
    }

    /// Ends the start-up wait when every awaited band delivered or the time is up.
    fn poll_catch_up(&mut self, cx: &mut Context<'_>) {
        let Some(sleep) = self.catch_up.as_mut() else {
            return;
        };
        if !self.awaited.contains(&true) || sleep.as_mut().poll(cx).is_ready() {
            self.awaited.fill(false);
            self.catch_up = None;
        }
    }
}

impl Stream for Merge {
    type Item = Result<Delivery, BrokerError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(e) = this.take_in(cx) {
            return Poll::Ready(Some(Err(e)));
        }
        this.poll_catch_up(cx);
        let now = Instant::now();
        for band in (0..this.buffers.len()).rev() {
            if this.awaited[band] {
                // Its jobs are on their way; a lower band must not overtake them.
                return Poll::Pending;
            }
            if let Some(delivery) = this.buffers[band].pop_front() {
                return Poll::Ready(Some(Ok(delivery)));
            }
            let refill = this.windows[band]
                .as_ref()
                .and_then(|w| w.refill_until(now));
            if let Some(until) = refill {
                if this.buffers[..band].iter().any(|b| !b.is_empty()) {
                    // The server may be sending this band's next job: wait for it.
                    this.refill.as_mut().reset(until);
                    if this.refill.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
            }
        }
        if this.streams.iter().all(Option::is_none) {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use bytes::Bytes;
    use futures::channel::mpsc;
    use jobfleet_common::broker::Acker;

    struct NoAcker;

    #[async_trait]
    impl Acker for NoAcker {
        async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
            Ok(())
        }
        async fn requeue(self: Box<Self>) -> Result<(), BrokerError> {
            Ok(())
        }
    }

    type Sender = mpsc::UnboundedSender<Result<Delivery, BrokerError>>;

    /// `n` bands with the given backlogs, and a sender into each.
    fn bands(backlogs: &[u32], catch_up: Duration) -> (Consumer, Vec<Sender>) {
        let (senders, bands): (Vec<_>, Vec<_>) = backlogs
            .iter()
            .map(|&backlog| {
                let (tx, rx) = mpsc::unbounded();
                let stream: Consumer = Box::pin(rx);
                let window = None;
                (
                    tx,
                    Band {
                        stream,
                        backlog,
                        window,
                    },
                )
            })
            .unzip();
        (merge(bands, catch_up), senders)
    }

    fn send(tx: &Sender, body: &str) {
        let delivery = Delivery::new(
            Bytes::from(body.to_string()),
            None,
            None,
            false,
            Box::new(NoAcker),
        );
        tx.unbounded_send(Ok(delivery)).expect("merge alive");
    }

    async fn next(merged: &mut Consumer) -> String {
        let item = tokio::time::timeout(Duration::from_secs(5), merged.next()).await;
        let delivery = item.expect("in time").expect("open").expect("a delivery");
        String::from_utf8_lossy(&delivery.body).into_owned()
    }

    #[tokio::test]
    async fn what_has_arrived_goes_out_highest_band_first() {
        let (mut merged, tx) = bands(&[0, 0, 0], CATCH_UP);
        send(&tx[0], "low-1");
        send(&tx[1], "mid-1");
        send(&tx[0], "low-2");
        send(&tx[2], "high-1");
        send(&tx[1], "mid-2");
        let mut order = Vec::new();
        for _ in 0..5 {
            order.push(next(&mut merged).await);
        }
        assert_eq!(order, ["high-1", "mid-1", "mid-2", "low-1", "low-2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_band_that_held_jobs_at_start_is_waited_for_then_given_up_on() {
        // Band 2 held jobs when it attached; band 0's delivery arrives first.
        let (mut merged, tx) = bands(&[1, 0, 1], Duration::from_secs(2));
        send(&tx[0], "low");
        let early = tokio::time::timeout(Duration::from_millis(500), merged.next()).await;
        assert!(early.is_err(), "band 0 overtook awaited band 2");
        send(&tx[2], "high");
        assert_eq!(next(&mut merged).await, "high");
        assert_eq!(next(&mut merged).await, "low");
        // Awaited band that never delivers (another worker took its jobs): given up on.
        let (mut merged, tx) = bands(&[1, 1], Duration::from_secs(2));
        send(&tx[0], "low");
        let started = tokio::time::Instant::now();
        assert_eq!(next(&mut merged).await, "low");
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "no wait at all"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_settle_of_a_full_window_holds_lower_bands_until_the_refill_or_refill_time() {
        let (tx_low, rx_low) = mpsc::unbounded();
        let (tx_high, rx_high) = mpsc::unbounded();
        let window = Arc::new(Window::new(1));
        let bands = vec![
            Band {
                stream: Box::pin(rx_low),
                backlog: 0,
                window: None,
            },
            Band {
                stream: Box::pin(rx_high),
                backlog: 0,
                window: Some(window.clone()),
            },
        ];
        let mut merged = merge(bands, CATCH_UP);
        send(&tx_high, "high-1");
        assert_eq!(next(&mut merged).await, "high-1");
        send(&tx_low, "low");
        // high-1 settled while its window (1) was full: high-2 may be on its way.
        window.settled();
        let early = tokio::time::timeout(REFILL / 2, merged.next()).await;
        assert!(early.is_err(), "the low band overtook a refilling band");
        send(&tx_high, "high-2");
        assert_eq!(next(&mut merged).await, "high-2");
        // high-2 settled, and the band's queue is empty: the low band waits REFILL once.
        window.settled();
        let started = Instant::now();
        assert_eq!(next(&mut merged).await, "low");
        assert!(started.elapsed() >= REFILL, "no refill wait");
        // A settle of a window that was not full means nothing more is coming.
        let roomy = Window::new(2);
        roomy.delivered();
        roomy.settled();
        assert_eq!(roomy.refill_until(Instant::now()), None);
        roomy.delivered();
        roomy.delivered();
        roomy.settled();
        assert!(
            roomy.refill_until(Instant::now()).is_some(),
            "a full window refills"
        );
    }

    #[tokio::test]
    async fn errors_pass_through_and_the_stream_ends_when_every_band_ended() {
        let (mut merged, tx) = bands(&[0, 0], CATCH_UP);
        tx[1]
            .unbounded_send(Err(BrokerError::Connection("lost".into())))
            .expect("alive");
        let item = merged.next().await.expect("an item");
        assert!(matches!(item, Err(BrokerError::Connection(_))));
        send(&tx[0], "after");
        assert_eq!(next(&mut merged).await, "after");
        drop(tx);
        assert!(merged.next().await.is_none());
    }
}
