//! Backing off after a failed backend call: a doubling pause, cut short by shutdown.
//!
//! Every loop in the scheduler keeps going through broker and store outages; this is how
//! it waits between tries without spinning and without delaying shutdown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The first pause after a success.
const FIRST: Duration = Duration::from_millis(100);
/// The longest pause, so a recovered backend is noticed soon.
const LONGEST: Duration = Duration::from_secs(5);

/// A pause that doubles on every failure in a row and resets on success.
#[derive(Debug)]
pub(crate) struct Pause {
    next: Duration,
}

impl Pause {
    /// A pause starting at its shortest.
    pub(crate) fn new() -> Self {
        Self { next: FIRST }
    }

    /// Waits the current pause (or until shutdown), then doubles it.
    pub(crate) async fn wait(&mut self, shutdown: &CancellationToken) {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(self.next) => {}
        }
        self.next = (self.next * 2).min(LONGEST);
    }

    /// Back to the shortest pause after a success.
    pub(crate) fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn doubles_up_to_the_cap_and_resets() {
        let shutdown = CancellationToken::new();
        let mut pause = Pause::new();
        let mut waited = Vec::new();
        for _ in 0..8 {
            let start = tokio::time::Instant::now();
            pause.wait(&shutdown).await;
            waited.push(start.elapsed().as_millis());
        }
        assert_eq!(waited, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        pause.reset();
        let start = tokio::time::Instant::now();
        pause.wait(&shutdown).await;
        assert_eq!(start.elapsed(), FIRST);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cuts_the_pause_short() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let start = tokio::time::Instant::now();
        Pause::new().wait(&shutdown).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
