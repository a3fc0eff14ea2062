//! Durations as the integer milliseconds the store and the records take, saturating
//! rather than wrapping for a duration too long to fit.

use std::time::Duration;

/// `d` in whole milliseconds, `u64::MAX` if it does not fit.
pub(crate) fn ms_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `d` in whole milliseconds, `i64::MAX` if it does not fit.
pub(crate) fn ms_i64(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_saturate_instead_of_wrapping() {
        assert_eq!(ms_u64(Duration::from_millis(1_500)), 1_500);
        assert_eq!(ms_i64(Duration::from_micros(2_999)), 2);
        assert_eq!(ms_u64(Duration::MAX), u64::MAX);
        assert_eq!(ms_i64(Duration::MAX), i64::MAX);
    }
}
