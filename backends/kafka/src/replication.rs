//! How the topics jobfleet uses are replicated: the `min.insync.replicas` a new topic is
//! created with (`kafka.min_insync_replicas`), and a warning, once per topic, when a topic
//! that already existed has another replication factor or `min.insync.replicas` than
//! configured. Such a topic is left as it is: changing replicas moves data between
//! brokers (`kafka-reassign-partitions`), an operator's decision, not a side effect of a
//! publish. The same check warns when the brokers' `__consumer_offsets` topic, where
//! workers commit what they finished, has fewer replicas than jobfleet's topics: losing a
//! broker would then roll groups back and run finished jobs again.

use std::collections::HashSet;
use std::sync::Mutex;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::ClientContext;

use super::{lock, REQUEST_TIMEOUT};

/// The topic the brokers keep consumer groups' committed offsets in.
pub(super) const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The topic configuration key the minimum is set under.
pub(super) const MIN_INSYNC_KEY: &str = "min.insync.replicas";

/// The configured replication and the topics already compared with it.
pub(super) struct Replication {
    factor: i32,
    min_insync: String,
    /// Topics compared (and warned about, if they differ): each at most once per broker.
    checked: Mutex<HashSet<String>>,
}

/// What an existing topic has: replicas of its first partition, and its
/// `min.insync.replicas` (`None` when the cluster did not say).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Found {
    pub factor: i32,
    pub min_insync: Option<i32>,
}

impl Replication {
    pub fn new(factor: i32, min_insync: i32) -> Self {
        Self {
            factor,
            min_insync: min_insync.to_string(),
            checked: Mutex::default(),
        }
    }

    /// The replication factor new topics get.
    pub fn factor(&self) -> i32 {
        self.factor
    }

    /// The `min.insync.replicas` new topics get, as the topic configuration value.
    pub fn min_insync(&self) -> &str {
        &self.min_insync
    }

    /// Compares each of `existing` (topics that were there before jobfleet asked to create
    /// them) and the offsets topic with the configuration, once each, and warns about
    /// those that differ. Advisory: a cluster that does not answer is logged at debug and
    /// asked again next time.
    pub async fn check<C: ClientContext + 'static>(
        &self,
        admin: &std::sync::Arc<AdminClient<C>>,
        existing: &[String],
    ) {
        let todo: Vec<String> = {
            let checked = lock(&self.checked);
            existing
                .iter()
                .map(String::as_str)
                .chain([OFFSETS_TOPIC])
                .filter(|t| !checked.contains(*t))
                .map(str::to_string)
                .collect()
        };
        for topic in todo {
            match found(admin, &topic).await {
                Ok(Some(found)) => {
                    lock(&self.checked).insert(topic.clone());
                    self.warn_if_different(&topic, &found);
                }
                // The offsets topic appears with the first consumer group: ask again later.
                Ok(None) => {}
                Err(reason) => tracing::debug!(topic, reason, "topic replication not checked"),
            }
        }
    }

    /// Logs the [`difference`](Self::difference) of `topic`, if any, as one warning.
    fn warn_if_different(&self, topic: &str, found: &Found) {
        if let Some(difference) = self.difference(topic, found) {
            tracing::warn!(
                topic,
                replication_factor = found.factor,
                min_insync_replicas = ?found.min_insync,
                configured_replication_factor = self.factor,
                configured_min_insync_replicas = %self.min_insync,
                "{difference}"
            );
        }
    }

    /// What is wrong with how `topic` is replicated, naming it and both values, or `None`.
    /// The offsets topic is wrong only with fewer replicas than jobfleet's topics: its
    /// `min.insync.replicas` is the brokers' business.
    fn difference(&self, topic: &str, found: &Found) -> Option<String> {
        if topic == OFFSETS_TOPIC {
            return (found.factor < self.factor).then(|| {
                format!(
                    "the brokers keep committed offsets ({topic}) on {} replicas, fewer than \
                     kafka.replication_factor ({}): a lost broker can roll consumer groups \
                     back and run finished jobs again; set the brokers' \
                     offsets.topic.replication.factor before the first group starts",
                    found.factor, self.factor
                )
            });
        }
        let min_insync = self.min_insync.parse::<i32>().ok();
        let other_min = found.min_insync.is_some() && found.min_insync != min_insync;
        if found.factor == self.factor && !other_min {
            return None;
        }
        let shown = found
            .min_insync
            .map_or("unknown".to_string(), |v| v.to_string());
        Some(format!(
            "topic {topic} already exists with replication factor {} and \
             min.insync.replicas {shown}, not the configured {} and {} \
             (kafka.replication_factor, kafka.min_insync_replicas); jobfleet leaves it as it \
             is: change it with kafka-reassign-partitions and kafka-configs",
            found.factor, self.factor, self.min_insync
        ))
    }
}

/// The replication of `topic` as the cluster reports it; `None` if it does not exist.
async fn found<C: ClientContext + 'static>(
    admin: &std::sync::Arc<AdminClient<C>>,
    topic: &str,
) -> Result<Option<Found>, String> {
    let reader = admin.clone();
    let name = topic.to_string();
    let factor = tokio::task::spawn_blocking(move || replicas(&reader, &name))
        .await
        .map_err(|e| e.to_string())??;
    let Some(factor) = factor else {
        return Ok(None);
    };
    let options = AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT));
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options)
        .await
        .map_err(|e| e.to_string())?;
    let min_insync = described
        .into_iter()
        .filter_map(Result::ok)
        .find_map(|r| r.get(MIN_INSYNC_KEY).and_then(|e| e.value.clone()))
        .and_then(|v| v.parse().ok());
    Ok(Some(Found { factor, min_insync }))
}

/// Replicas of the first partition of `topic`, or `None` if it has none. Blocking.
fn replicas<C: ClientContext>(admin: &AdminClient<C>, topic: &str) -> Result<Option<i32>, String> {
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let first = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .find_map(|t| t.partitions().first().map(|p| p.replicas().len()));
    Ok(first.and_then(|n| i32::try_from(n).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(factor: i32, min_insync: Option<i32>) -> Found {
        Found { factor, min_insync }
    }

    #[test]
    fn a_topic_replicated_otherwise_is_named_with_both_values() {
        let configured = Replication::new(3, 2);
        assert_eq!(configured.difference("ns.dead", &found(3, Some(2))), None);
        assert_eq!(
            configured.difference("ns.dead", &found(3, None)),
            None,
            "an unknown minimum is no reason to warn"
        );
        let fewer = configured
            .difference("ns.q.mail.b0", &found(1, Some(1)))
            .expect("a difference");
        for part in [
            "ns.q.mail.b0",
            "replication factor 1",
            "min.insync.replicas 1",
            "3 and 2",
        ] {
            assert!(fewer.contains(part), "{part:?} missing: {fewer}");
        }
        let lower_min = configured
            .difference("ns.failed", &found(3, Some(1)))
            .expect("another minimum is a difference");
        assert!(
            lower_min.contains("kafka.min_insync_replicas"),
            "{lower_min}"
        );
    }

    #[test]
    fn the_offsets_topic_is_wrong_only_with_fewer_replicas() {
        let configured = Replication::new(3, 2);
        assert_eq!(
            configured.difference(OFFSETS_TOPIC, &found(3, Some(1))),
            None
        );
        let fewer = configured
            .difference(OFFSETS_TOPIC, &found(1, Some(1)))
            .expect("fewer replicas");
        assert!(
            fewer.contains("offsets.topic.replication.factor"),
            "{fewer}"
        );
        assert_eq!(
            Replication::new(1, 1).difference(OFFSETS_TOPIC, &found(1, None)),
            None
        );
    }
}
