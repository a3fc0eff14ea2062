//! Wall-clock time as the roles see it, swappable so tests can pause time.
//!
//! Due times and lock expiries are Unix milliseconds shared between processes, so
//! production uses [`SystemClock`]. [`TokioClock`] reads tokio's clock from a fixed
//! anchor instead: under `tokio::time::pause()` it jumps as timers auto-advance, which
//! lets a test wait out an hour's delay in microseconds. [`StoreClock`] is the store's
//! clock as a process away from it knows it: pinned by samples, advanced in between by
//! the monotonic clock; workers keep time by it, so their clocks' skew does not matter.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of "now" in Unix milliseconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// A clock shared between roles.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        system_now_ms()
    }
}

/// Unix milliseconds from the system clock.
pub fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Wall time derived from tokio's (pausable) clock, anchored when created.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    wall_anchor_ms: i64,
    anchor: tokio::time::Instant,
}

impl TokioClock {
    /// Anchors at the current system time and tokio instant.
    pub fn new() -> Self {
        Self {
            wall_anchor_ms: system_now_ms(),
            anchor: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        self.wall_anchor_ms + self.anchor.elapsed().as_millis() as i64
    }
}

/// The store's clock, followed from samples of it: a sample pins "the store's now" to the
/// monotonic instant its reply arrived, and between samples the clock advances with
/// tokio's monotonic clock. A step of this machine's wall clock therefore changes
/// nothing, and under `tokio::time::pause()` it moves with paused time.
///
/// A sample is pinned to when its reply *arrived*, so the estimate trails the store's
/// time by at most the round trip and is never ahead of it, except by how far the two
/// clocks' rates drift apart between samples. Whoever asks "is it due yet?" of this clock
/// may answer late by a round trip, never early by one.
#[derive(Debug)]
pub struct StoreClock {
    origin: tokio::time::Instant,
    /// The store's time at `origin`, in Unix microseconds, from the latest sample.
    at_origin_us: AtomicI64,
}

impl StoreClock {
    /// A clock pinned by its first sample: the store said `store_ms` in a reply that
    /// arrived at `received`.
    pub fn new(store_ms: i64, received: tokio::time::Instant) -> Self {
        let clock = Self {
            origin: received,
            at_origin_us: AtomicI64::new(i64::MIN),
        };
        clock.pin(store_ms, received);
        clock
    }

    /// Pins the clock to a new sample: the store said `store_ms` in a reply that arrived
    /// at `received`. Each sample is a lower bound of the store's time (its reply waited
    /// to be read), so one a little behind the clock only waited longer: the clock does
    /// not step back for it (records would read "finished before started"). A step back
    /// of [`StoreClock::STEP_BACK_MS`] or more is the store's own clock stepping: followed.
    pub fn pin(&self, store_ms: i64, received: tokio::time::Instant) {
        let since_origin = micros_between(self.origin, received);
        let at_origin = store_ms.saturating_mul(1000).saturating_sub(since_origin);
        let current = self.at_origin_us.load(Ordering::Relaxed);
        let back_us = current.saturating_sub(at_origin);
        if back_us > 0 && back_us < Self::STEP_BACK_MS * 1000 {
            return;
        }
        self.at_origin_us.store(at_origin, Ordering::Relaxed);
    }

    /// How far back a sample must be to move the clock back: a step of the store's own
    /// clock, not a slow reply.
    pub const STEP_BACK_MS: i64 = 1_000;
}

impl Clock for StoreClock {
    fn now_ms(&self) -> i64 {
        let since_origin = micros_between(self.origin, tokio::time::Instant::now());
        let now_us = self
            .at_origin_us
            .load(Ordering::Relaxed)
            .saturating_add(since_origin);
        now_us.div_euclid(1000)
    }
}

/// Microseconds from `from` to `to`, negative if `to` is earlier.
fn micros_between(from: tokio::time::Instant, to: tokio::time::Instant) -> i64 {
    let micros = |d: std::time::Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    if to >= from {
        micros(to - from)
    } else {
        -micros(from - to)
    }
}

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::new();
        let t0 = clock.now_ms();
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        assert_eq!(clock.now_ms() - t0, 3_600_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_clock_advances_from_its_latest_sample() {
        let clock = StoreClock::new(1_000_000, tokio::time::Instant::now());
        assert_eq!(clock.now_ms(), 1_000_000);
        tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
        assert_eq!(clock.now_ms(), 1_002_500, "advanced by the monotonic clock");
        // A later sample says the store is 40 ms behind that: a slower reply, not a
        // step of the store's clock; the clock does not go back.
        clock.pin(1_002_460, tokio::time::Instant::now());
        assert_eq!(clock.now_ms(), 1_002_500);
        // One 40 ms ahead moves it forward.
        clock.pin(1_002_540, tokio::time::Instant::now());
        assert_eq!(clock.now_ms(), 1_002_540);
        // A sample whose reply arrived 300 ms ago counts from when it arrived.
        let received = tokio::time::Instant::now();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        clock.pin(5_000, received);
        assert_eq!(clock.now_ms(), 5_300);
    }
}
