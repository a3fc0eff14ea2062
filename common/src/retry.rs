//! Retry timing: exponential backoff with full jitter and a cap.
//!
//! The ceiling for attempt `n` (the attempt that just failed, from 1) is
//! `min(cap, base * 2^(n-1))`; the delay is drawn uniformly from `[0, ceiling]` ("full
//! jitter", which spreads a thundering herd of failures best). The function is pure: the
//! caller passes the random draw, so tests pin it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::job::Backoff;
use crate::limits::humantime_serde_compat;

/// A queue's retry timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// The ceiling of the first retry's delay.
    #[serde(with = "humantime_serde_compat")]
    pub base: Duration,
    /// The largest delay ever waited.
    #[serde(with = "humantime_serde_compat")]
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(600),
        }
    }
}

impl From<Backoff> for RetryPolicy {
    fn from(b: Backoff) -> Self {
        Self {
            base: Duration::from_millis(b.base_ms),
            cap: Duration::from_millis(b.cap_ms),
        }
    }
}

/// The ceiling of the delay after `failed_attempt` (from 1) fails.
pub fn ceiling(policy: RetryPolicy, failed_attempt: u32) -> Duration {
    let base = policy.base.as_millis() as u64;
    let exp = failed_attempt.saturating_sub(1).min(63);
    let grown = base
        .checked_shl(exp)
        .filter(|v| v >> exp == base)
        .unwrap_or(u64::MAX);
    Duration::from_millis(grown.min(policy.cap.as_millis() as u64))
}

/// The delay after `failed_attempt` fails, given a uniform draw `unit` in `[0, 1)`.
pub fn delay(policy: RetryPolicy, failed_attempt: u32, unit: f64) -> Duration {
    let ceiling = ceiling(policy, failed_attempt).as_millis() as f64;
    Duration::from_millis((ceiling * unit.clamp(0.0, 1.0)).round() as u64)
}

/// The delay with a fresh random draw.
pub fn jittered_delay(policy: RetryPolicy, failed_attempt: u32) -> Duration {
    delay(policy, failed_attempt, rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RetryPolicy = RetryPolicy {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(10),
    };

    #[test]
    fn ceiling_doubles_then_caps() {
        let got: Vec<u64> = (1..=9).map(|n| ceiling(P, n).as_millis() as u64).collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
    }

    #[test]
    fn huge_attempts_do_not_overflow() {
        assert_eq!(ceiling(P, u32::MAX), Duration::from_secs(10));
        assert_eq!(ceiling(P, 0), Duration::from_millis(100));
    }

    #[test]
    fn jitter_spans_zero_to_ceiling() {
        assert_eq!(delay(P, 3, 0.0), Duration::ZERO);
        assert_eq!(delay(P, 3, 0.5), Duration::from_millis(200));
        assert_eq!(delay(P, 3, 1.0), Duration::from_millis(400));
        assert_eq!(delay(P, 3, 7.0), Duration::from_millis(400));
        for _ in 0..1000 {
            assert!(jittered_delay(P, 20) <= P.cap);
        }
    }
}
