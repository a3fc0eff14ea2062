//! Wall-clock time as the roles see it, swappable so tests can pause time.
//!
//! Due times and lock expiries are Unix milliseconds shared between processes, so
//! production uses [`SystemClock`]. [`TokioClock`] reads tokio's clock from a fixed
//! anchor instead: under `tokio::time::pause()` it jumps as timers auto-advance, which
//! lets a test wait out an hour's delay in microseconds.

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
}
