//! The worker keeps time by the store's clock (Redis `TIME`), as the scheduler does.
//!
//! Due times are compared across processes: the scheduler releases a delayed job when it
//! is due by the store's clock, and a producer elsewhere may publish a job straight to a
//! ready route with a `run_at_ms` ahead. A worker judging "due" by its own clock would
//! start such a job early if its clock ran ahead, and send released jobs back to the
//! delayed route until it caught up if its clock ran behind.
//!
//! So the worker samples the store's time at start-up and every [`RESYNC`]: each round
//! asks [`SAMPLES`] times, keeps the reply with the shortest round trip, and pins a
//! [`StoreClock`] to it, which advances by the monotonic clock in between. Everything in
//! the worker that reads "now" reads that clock: the due-time check, records' times
//! (progress reports' too), the heartbeat's report, hold leases, requeue delays, spawned
//! children's due times. Its error is at most one round trip late (never early) plus the
//! rate drift between samples; see docs/architecture.md. A skew over [`SKEW_WARNING_MS`]
//! is logged as a warning once (again only after it was back under): clocks that far
//! apart usually mean NTP is not running on one of the machines.

use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::clock::{Clock, SharedClock, StoreClock};
use jobfleet_common::store::{StoreError, StoreResult, StoreTime};
use jobfleet_common::telemetry;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::error::WorkerError;

/// How often the store's time is sampled again after start-up.
const RESYNC: Duration = Duration::from_secs(5);
/// Round trips per sample; the shortest one wins (the least time for the reply to wait).
const SAMPLES: usize = 3;
/// A skew between this machine's clock and the store's that is worth a warning.
const SKEW_WARNING_MS: i64 = 1_000;

/// What one round trip to the store's clock said.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// The store's time in its reply, Unix ms.
    store_ms: i64,
    /// When the reply arrived.
    received: Instant,
    round_trip: Duration,
    /// This machine's wall clock when the reply arrived, Unix ms.
    local_ms: i64,
}

impl Sample {
    /// The store's clock minus this machine's: positive when this machine runs behind.
    fn offset_ms(&self) -> i64 {
        self.store_ms.saturating_sub(self.local_ms)
    }
}

/// Asks the store's time [`SAMPLES`] times and keeps the reply with the shortest round
/// trip.
async fn sample<S: StoreTime + ?Sized>(store: &S, local: &dyn Clock) -> StoreResult<Sample> {
    let mut best = round_trip(store, local).await?;
    for _ in 1..SAMPLES {
        let next = round_trip(store, local).await?;
        if next.round_trip < best.round_trip {
            best = next;
        }
    }
    Ok(best)
}

/// One request for the store's time.
async fn round_trip<S: StoreTime + ?Sized>(store: &S, local: &dyn Clock) -> StoreResult<Sample> {
    let sent = Instant::now();
    let store_ms = store.store_time_ms().await?;
    let received = Instant::now();
    Ok(Sample {
        store_ms,
        received,
        round_trip: received - sent,
        local_ms: local.now_ms(),
    })
}

/// Keeps the worker's clock pinned to the store's: [`Follower::run`] resamples it.
pub(crate) struct Follower {
    clock: Arc<StoreClock>,
    /// This machine's clock, only to report the skew.
    local: SharedClock,
    store: Arc<dyn StoreTime>,
    /// Whether the skew was last reported as large, so it is warned about once.
    skewed: bool,
}

/// Samples `store`'s time and returns a clock that follows it (in place of `local`, this
/// machine's), with the [`Follower`] that keeps it following. A store that cannot tell
/// its time now stops the start: nothing could run without it anyway.
pub(crate) async fn follow(
    store: Arc<dyn StoreTime>,
    local: SharedClock,
) -> Result<(SharedClock, Follower), WorkerError> {
    let first = sample(&*store, &*local)
        .await
        .map_err(WorkerError::StoreTime)?;
    let clock = Arc::new(StoreClock::new(first.store_ms, first.received));
    let mut follower = Follower {
        clock: clock.clone(),
        local,
        store,
        skewed: false,
    };
    follower.report(&first, true);
    Ok((clock, follower))
}

impl Follower {
    /// Samples the store's time every [`RESYNC`] until `stop`. A failed sample keeps the
    /// last one: the clock goes on by the monotonic clock, and only drift accumulates.
    pub(crate) async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval_at(Instant::now() + RESYNC, RESYNC);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            // A store that hangs must not hold up the worker's stop, nor the next round.
            let asked = tokio::time::timeout(RESYNC, sample(&*self.store, &*self.local));
            let result = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                asked = asked => asked.unwrap_or_else(|_| {
                    Err(StoreError::Connection(format!("TIME: no answer within {RESYNC:?}")))
                }),
            };
            match result {
                Ok(sample) => {
                    self.clock.pin(sample.store_ms, sample.received);
                    self.report(&sample, false);
                }
                Err(e) => telemetry::backend_error("worker", "store_time", &e),
            }
        }
    }

    /// Logs the skew: at start-up always, afterwards when it crosses [`SKEW_WARNING_MS`].
    fn report(&mut self, sample: &Sample, first: bool) {
        let offset = sample.offset_ms();
        let round_trip_us = u64::try_from(sample.round_trip.as_micros()).unwrap_or(u64::MAX);
        let skewed = offset.abs() > SKEW_WARNING_MS;
        if skewed && !self.skewed {
            tracing::warn!(
                store_offset_ms = offset,
                round_trip_us,
                "{}: the worker keeps time by the store's clock, but clocks this far apart \
                 usually mean NTP is not running on this machine or the store's",
                skew_words(offset)
            );
        } else if !skewed && (first || self.skewed) {
            tracing::info!(
                store_offset_ms = offset,
                round_trip_us,
                "keeping time by the store's clock; {}",
                skew_words(offset)
            );
        }
        self.skewed = skewed;
    }
}

/// "this machine's clock is 1.500 s ahead of the store's", from store − local.
fn skew_words(offset_ms: i64) -> String {
    let direction = match offset_ms.signum() {
        0 => return "this machine's clock agrees with the store's to the millisecond".into(),
        1 => "behind",
        _ => "ahead of",
    };
    let seconds = offset_ms.unsigned_abs() as f64 / 1000.0;
    format!("this machine's clock is {seconds:.3} s {direction} the store's")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use jobfleet_common::clock::TokioClock;
    use jobfleet_common::embedded::EmbeddedStore;

    use super::*;

    /// Tokio's clock off by an offset the test may change.
    #[derive(Debug)]
    struct Offset(TokioClock, AtomicI64);

    impl Offset {
        fn new(ms: i64) -> Arc<Self> {
            Arc::new(Self(TokioClock::new(), AtomicI64::new(ms)))
        }
    }

    impl Clock for Offset {
        fn now_ms(&self) -> i64 {
            self.0.now_ms() + self.1.load(Ordering::Relaxed)
        }
    }

    /// An embedded store that keeps `store_clock`.
    fn store(store_clock: SharedClock) -> Arc<dyn StoreTime> {
        Arc::new(EmbeddedStore::new(store_clock))
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_clock_ahead_of_the_store_follows_the_store() {
        let store_clock: SharedClock = Arc::new(TokioClock::new());
        let (followed, follower) = follow(store(store_clock.clone()), Offset::new(120_000))
            .await
            .expect("sample");
        assert_eq!(followed.now_ms(), store_clock.now_ms());
        assert!(follower.skewed, "a 120 s skew is reported");
        let stop = CancellationToken::new();
        let task = tokio::spawn(follower.run(stop.clone()));
        tokio::time::sleep(RESYNC * 3 + Duration::from_millis(700)).await;
        assert_eq!(followed.now_ms(), store_clock.now_ms());
        stop.cancel();
        task.await.expect("follower stops");
    }

    #[tokio::test(start_paused = true)]
    async fn a_resample_moves_the_clock_to_the_stores_new_time() {
        let store_clock = Offset::new(0);
        let local: SharedClock = Arc::new(TokioClock::new());
        let (followed, follower) = follow(store(store_clock.clone()), local.clone())
            .await
            .expect("sample");
        assert!(!follower.skewed);
        assert_eq!(followed.now_ms(), local.now_ms());
        let stop = CancellationToken::new();
        let task = tokio::spawn(follower.run(stop.clone()));
        // The store's time steps back 30 s: the worker's follows at the next sample.
        store_clock.1.store(-30_000, Ordering::Relaxed);
        tokio::time::sleep(RESYNC + Duration::from_millis(1)).await;
        assert_eq!(followed.now_ms(), local.now_ms() - 30_000);
        stop.cancel();
        task.await.expect("follower stops");
    }

    #[test]
    fn skew_words_say_which_way() {
        assert_eq!(
            skew_words(-120_000),
            "this machine's clock is 120.000 s ahead of the store's"
        );
        assert_eq!(
            skew_words(1_500),
            "this machine's clock is 1.500 s behind the store's"
        );
        assert!(skew_words(0).contains("agrees"));
    }
}
