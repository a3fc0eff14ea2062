//! What the scheduler's tasks share: configuration, the broker, the store narrowed to a
//! [`SchedulerStore`], the clock, the queues already declared and the wake-up the intake
//! gives the release loop.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use jobfleet_common::broker::Broker;
use jobfleet_common::codec::{self, BINARY_MAGIC};
use jobfleet_common::store::SchedulerStore;
use jobfleet_common::{Backends, BrokerError, Config, SharedClock};
use tokio::sync::Notify;

/// Shared by every task of one running scheduler.
pub(crate) struct Context {
    /// The configuration it was started with.
    pub(crate) config: Arc<Config>,
    /// Where jobs travel.
    pub(crate) broker: Arc<dyn Broker>,
    /// The store as the scheduler's loops may use it: their bundle, not the whole store.
    pub(crate) store: Arc<dyn SchedulerStore>,
    /// "Now", from the injected clock.
    pub(crate) clock: SharedClock,
    /// Ready routes declared so far: each is declared once per process.
    declared: Mutex<HashSet<String>>,
    /// Poked when jobs enter the delayed set, so one due now is released without waiting
    /// out the release loop's sleep.
    pub(crate) wake: Notify,
    /// This scheduler's id (host, pid and a random part): its name as leader.
    pub(crate) id: String,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("id", &self.id)
            .field("broker", &self.broker.name())
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context for one scheduler started on `backends`, whose store it keeps narrowed
    /// to a [`SchedulerStore`].
    pub(crate) fn new(config: Arc<Config>, backends: Backends) -> Self {
        let Backends {
            broker,
            store,
            clock,
        } = backends;
        Self {
            config,
            broker,
            store,
            clock,
            declared: Mutex::new(HashSet::new()),
            wake: Notify::new(),
            id: scheduler_id(),
        }
    }

    /// Now, from the injected clock.
    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Declares the ready routes of `queues` not declared before by this process.
    pub(crate) async fn declare_queues<'a>(
        &self,
        queues: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), BrokerError> {
        let fresh: Vec<String> = {
            let declared = self.declared.lock().unwrap_or_else(|e| e.into_inner());
            let mut fresh: Vec<String> = queues
                .into_iter()
                .filter(|q| !declared.contains(*q))
                .map(str::to_string)
                .collect();
            fresh.sort();
            fresh.dedup();
            fresh
        };
        if fresh.is_empty() {
            return Ok(());
        }
        self.broker.declare(&fresh).await?;
        let mut declared = self.declared.lock().unwrap_or_else(|e| e.into_inner());
        declared.extend(fresh);
        Ok(())
    }
}

/// `{host}-{pid}-{random}`: unique per process, readable in logs.
fn scheduler_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "scheduler".into());
    // A v7 id ends in random bits.
    let random = jobfleet_common::JobId::new().0.simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[24..])
}

/// The content type of an encoded job, told from its first bytes: the delayed set holds
/// bodies without their headers.
pub(crate) fn content_type_of(body: &Bytes) -> &'static str {
    if body.starts_with(&BINARY_MAGIC[..2]) {
        codec::POSTCARD_CONTENT_TYPE
    } else {
        codec::JSON_CONTENT_TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobfleet_common::codec::Format;
    use jobfleet_common::Job;

    #[test]
    fn content_type_follows_the_form() {
        let job = Job::new("q", "k", "{}");
        let binary = codec::encode(&job, Format::Binary);
        let json = codec::encode(&job, Format::Json);
        assert_eq!(content_type_of(&binary), codec::POSTCARD_CONTENT_TYPE);
        assert_eq!(content_type_of(&json), codec::JSON_CONTENT_TYPE);
    }
}
