//! `[rabbitmq]`: which kind of RabbitMQ queue jobfleet declares, and how quorum queues
//! keep priorities. Classic queues live on one node and order all ten levels natively
//! (`x-max-priority`); quorum queues are replicated over a cluster (Raft) but have no
//! priorities before RabbitMQ 4.0, so a ready route becomes `bands` band queues
//! (docs/high-availability.md, "RabbitMQ quorum queues").

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{err, ConfigError};
use crate::job::Priority;

/// The type of every queue jobfleet declares (RabbitMQ's `x-queue-type`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// One node's queue with native priorities: the default, for one node.
    #[default]
    Classic,
    /// A replicated (Raft) queue: survives the loss of a minority of a cluster's nodes.
    Quorum,
}

impl QueueType {
    /// The value of `x-queue-type`: `classic` or `quorum`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Quorum => "quorum",
        }
    }
}

impl fmt::Display for QueueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RabbitMQ broker settings, used when `broker` is `amqp://…`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RabbitConfig {
    /// `classic` (default) or `quorum`: the type of every ready, delayed, failed and dead
    /// queue. A queue that already exists with the other type is refused at start-up.
    pub queue_type: QueueType,
    /// Priority band queues per ready queue with `quorum` queues, 1–10: priorities 0–9
    /// are split evenly over them ([`Priority::band`]). Classic queues ignore it.
    pub bands: u8,
}

impl Default for RabbitConfig {
    fn default() -> Self {
        Self {
            queue_type: QueueType::Classic,
            bands: 3,
        }
    }
}

impl RabbitConfig {
    /// Band queues per ready queue: `bands` on quorum queues, 1 (the queue itself, with
    /// native priorities) on classic ones.
    pub fn ready_bands(&self) -> u8 {
        match self.queue_type {
            QueueType::Classic => 1,
            QueueType::Quorum => self.bands,
        }
    }

    /// Refuses values that parse but make no sense.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=Priority::MAX + 1).contains(&self.bands) {
            return Err(err(
                "rabbitmq.bands",
                format!(
                    "{} is out of range: must be between 1 and 10 (one band queue per \
                     priority level at most)",
                    self.bands
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn load(env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(None, env, &[])
    }

    #[test]
    fn classic_is_the_default_and_quorum_loads_with_its_bands() {
        let c = load(&[]).expect("defaults");
        assert_eq!(c.rabbitmq, RabbitConfig::default());
        assert_eq!(c.rabbitmq.queue_type, QueueType::Classic);
        assert_eq!(c.rabbitmq.ready_bands(), 1, "classic queues are not banded");
        let c = load(&[
            ("JOBFLEET_RABBITMQ__QUEUE_TYPE", "quorum"),
            ("JOBFLEET_RABBITMQ__BANDS", "10"),
        ])
        .expect("quorum with 10 bands");
        assert_eq!(c.rabbitmq.queue_type, QueueType::Quorum);
        assert_eq!(c.rabbitmq.ready_bands(), 10);
    }

    #[test]
    fn an_unknown_queue_type_or_a_band_count_out_of_range_is_refused_by_key() {
        let e = load(&[("JOBFLEET_RABBITMQ__QUEUE_TYPE", "stream")]).expect_err("stream");
        assert_eq!(e.key, "rabbitmq.queue_type", "{e}");
        assert!(
            e.reason.contains("classic") && e.reason.contains("quorum"),
            "{e}"
        );
        for bands in ["0", "11"] {
            let e = load(&[("JOBFLEET_RABBITMQ__BANDS", bands)]).expect_err("out of range");
            assert_eq!(e.key, "rabbitmq.bands", "{bands}: {e}");
            assert!(e.reason.contains("between 1 and 10"), "{e}");
        }
    }
}
