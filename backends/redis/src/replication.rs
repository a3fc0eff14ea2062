//! Writes that must survive a failover, and detecting the ones a failover lost.
//!
//! Redis replicates asynchronously: a write the primary acknowledged may not have reached
//! the replica the sentinels promote. After each write that must survive (a delayed job
//! taken in, a completion marker, a lease taken, a dead letter filed, a cron instant
//! claimed) the store calls [`RedisStore::must_survive`]:
//!
//! - with `redis.min_replicas` > 0 it sends `WAIT min_replicas replica_timeout` on the
//!   same (multiplexed) connection, which waits until that many replicas hold every write
//!   this connection made so far; fewer acknowledgements fail the call retryably, naming
//!   the write and the key.
//! - on a replicated deployment (a sentinel URL, or replicas connected at start-up) it
//!   reads `INFO replication` in the same round trip and remembers where the primary's
//!   replication stream (`master_replid`, `master_repl_offset`) was after the write.
//!
//! The integrity check ([`RedisStore::failover_loss`]) reads `INFO replication` again. A
//! promoted replica keeps the old stream's id as `master_replid2` and where it stopped as
//! `second_repl_offset`: when this process wrote past that point, the failover lost
//! writes, and the store reports it as it reports a vanished namespace sentinel (log,
//! metric, `ns:incident:data_loss`, `/readyz`). Only the process that made the writes can
//! tell: one that died with the old primary reports nothing.

use std::sync::Mutex;
use std::time::Duration;

use jobfleet_common::store::{StoreError, StoreResult};

use super::{IntoStore as _, RedisStore};

/// What `INFO replication` says about the server's place in its replication stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Replication {
    /// `master` or `slave`.
    pub role: String,
    /// `connected_slaves`.
    pub connected_replicas: u64,
    /// `master_replid`: the id of the stream this server writes or follows.
    pub replid: String,
    /// `master_repl_offset`.
    pub offset: u64,
    /// `master_replid2`: the stream this server followed before it was promoted.
    pub replid2: String,
    /// `second_repl_offset`: one past the last offset of `replid2` it holds (-1: none).
    pub second_offset: i64,
}

impl Replication {
    /// From the text of `INFO replication`.
    pub(crate) fn parse(info: &str) -> Self {
        let field = |name: &str| {
            info.lines().find_map(|line| {
                let (key, value) = line.trim().split_once(':')?;
                (key == name).then(|| value.trim().to_string())
            })
        };
        let number = |name: &str| field(name).and_then(|v| v.parse().ok());
        Self {
            role: field("role").unwrap_or_default(),
            connected_replicas: number("connected_slaves").unwrap_or(0),
            replid: field("master_replid").unwrap_or_default(),
            offset: number("master_repl_offset").unwrap_or(0),
            replid2: field("master_replid2").unwrap_or_default(),
            second_offset: field("second_repl_offset")
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1),
        }
    }
}

/// Where this process's writes reached in a replication stream.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Position {
    replid: String,
    offset: u64,
}

/// Replication stream bytes a failover lost, found by [`Written::observe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lost {
    /// Bytes of the old stream this process wrote past what the new primary holds.
    pub bytes: u64,
    /// The new primary's stream id.
    pub new_replid: String,
}

/// This process's position, shared by the store's clones.
#[derive(Debug)]
pub(crate) struct Written {
    /// Whether the deployment has replicas (else nothing is tracked: no cost).
    replicated: bool,
    position: Mutex<Option<Position>>,
    /// A loss seen by a write, reported by the next integrity check.
    unreported: Mutex<Option<Lost>>,
}

impl Written {
    /// Tracking for a deployment with replicas, none for one without.
    pub(crate) fn new(replicated: bool) -> Self {
        Self {
            replicated,
            position: Mutex::new(None),
            unreported: Mutex::new(None),
        }
    }

    /// Takes in what the primary says now; returns what a failover since the last
    /// observation lost of this process's writes.
    pub(crate) fn observe(&self, now: &Replication) -> Option<Lost> {
        let mut position = lock(&self.position);
        let lost = match position.as_ref() {
            Some(p) if p.replid == now.replid => None,
            // The new primary followed our stream up to `second_offset - 1`.
            Some(p) if p.replid == now.replid2 => {
                let kept = u64::try_from(now.second_offset - 1).unwrap_or(0);
                (p.offset > kept).then(|| Lost {
                    bytes: p.offset - kept,
                    new_replid: now.replid.clone(),
                })
            }
            Some(p) => {
                tracing::warn!(
                    old = %p.replid,
                    new = %now.replid,
                    "the Redis primary's replication stream changed without a trace of the \
                     old one (several failovers, or a restart): cannot tell whether writes \
                     were lost"
                );
                None
            }
            None => None,
        };
        let offset = match position.as_ref() {
            Some(p) if p.replid == now.replid => p.offset.max(now.offset),
            _ => now.offset,
        };
        *position = Some(Position {
            replid: now.replid.clone(),
            offset,
        });
        lost
    }

    /// The loss a write saw, once.
    pub(crate) fn take_unreported(&self) -> Option<Lost> {
        lock(&self.unreported).take()
    }
}

impl RedisStore {
    /// After a write that must survive a failover (`what` names it): waits for
    /// `redis.min_replicas` acknowledgements and remembers the stream position; see the
    /// module docs.
    pub(crate) async fn must_survive(&self, what: &str) -> StoreResult<()> {
        let wanted = self.settings.min_replicas;
        if wanted == 0 && !self.written.replicated {
            return Ok(());
        }
        let timeout = self.settings.replica_timeout;
        let mut pipe = redis::pipe();
        if wanted > 0 {
            pipe.cmd("WAIT").arg(wanted).arg(millis(timeout));
        }
        if self.written.replicated {
            pipe.cmd("INFO").arg("replication");
        }
        let replies: Vec<redis::Value> = pipe.query_async(&mut self.conn()).await.store()?;
        let mut replies = replies.into_iter();
        if wanted > 0 {
            let acked: u64 = redis::from_redis_value(replies.next().unwrap_or(redis::Value::Nil))
                .map_err(|e| StoreError::Corrupt(format!("WAIT's reply: {e}")))?;
            if acked < u64::from(wanted) {
                return Err(StoreError::Connection(format!(
                    "{what}: {acked} replica(s) acknowledged it within {timeout:?} where \
                     `redis.min_replicas` asks for {wanted}; a failover now could lose it"
                )));
            }
        }
        if let Some(info) = replies.next() {
            let text: String = redis::from_redis_value(info)
                .map_err(|e| StoreError::Corrupt(format!("INFO replication: {e}")))?;
            if let Some(lost) = self.written.observe(&Replication::parse(&text)) {
                *lock(&self.written.unreported) = Some(lost);
            }
        }
        Ok(())
    }

    /// What a failover since the last look lost of this process's writes, if anything.
    pub(crate) async fn failover_loss(&self) -> StoreResult<Option<Lost>> {
        if !self.written.replicated {
            return Ok(None);
        }
        if let Some(lost) = self.written.take_unreported() {
            return Ok(Some(lost));
        }
        let text: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut self.conn())
            .await
            .store()?;
        Ok(self.written.observe(&Replication::parse(&text)))
    }
}

/// A duration as whole milliseconds for `WAIT`, at least 1 (0 would wait forever).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A std mutex's guard; a panic elsewhere while holding it leaves a usable value.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(replid: &str, offset: u64, replid2: &str, second: i64) -> Replication {
        Replication::parse(&format!(
            "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nmaster_replid:{replid}\r\n\
             master_replid2:{replid2}\r\nmaster_repl_offset:{offset}\r\n\
             second_repl_offset:{second}\r\n"
        ))
    }

    #[test]
    fn info_replication_parses() {
        let r = info("aa", 120, "bb", 100);
        assert_eq!((r.role.as_str(), r.connected_replicas), ("master", 2));
        assert_eq!((r.replid.as_str(), r.offset), ("aa", 120));
        assert_eq!((r.replid2.as_str(), r.second_offset), ("bb", 100));
    }

    #[test]
    fn a_failover_behind_our_writes_is_a_loss_and_one_ahead_is_not() {
        let zeros = "0000000000000000000000000000000000000000";
        let w = Written::new(true);
        assert_eq!(w.observe(&info("old", 500, zeros, -1)), None);
        assert_eq!(
            w.observe(&info("old", 400, zeros, -1)),
            None,
            "kept the max"
        );
        // Promoted with the old stream up to offset 449: 51 bytes of ours are gone.
        let lost = w.observe(&info("new", 449, "old", 450)).expect("a loss");
        assert_eq!(lost.bytes, 51);
        assert_eq!(
            w.observe(&info("new", 449, "old", 450)),
            None,
            "reported once"
        );
        // A promotion that holds everything we wrote loses nothing.
        let w = Written::new(true);
        w.observe(&info("old", 500, zeros, -1));
        assert_eq!(w.observe(&info("new", 600, "old", 501)), None);
        // An untraceable change cannot be judged.
        assert_eq!(w.observe(&info("other", 10, "x", 5)), None);
    }
}
