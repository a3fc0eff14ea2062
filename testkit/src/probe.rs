//! [`Probe`]: a log a handler appends to and a check reads; [`init_tracing`]: the
//! tests' log subscriber.

use std::sync::{Arc, Mutex, Once};

/// Installs a test log subscriber once (`RUST_LOG` to see more).
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// A shared log a handler appends to and a check reads.
#[derive(Debug)]
pub struct Probe<T>(Arc<Mutex<Vec<T>>>);

impl<T> Clone for Probe<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for Probe<T> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Vec::new())))
    }
}

impl<T: Clone> Probe<T> {
    /// Appends an event.
    pub fn push(&self, item: T) {
        self.0.lock().expect("probe lock").push(item);
    }

    /// Every event so far.
    pub fn items(&self) -> Vec<T> {
        self.0.lock().expect("probe lock").clone()
    }

    /// How many events so far.
    pub fn len(&self) -> usize {
        self.0.lock().expect("probe lock").len()
    }

    /// Whether nothing happened yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
