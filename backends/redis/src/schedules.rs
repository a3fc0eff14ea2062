//! Schedules on Redis: declarations as JSON in one hash (`ns:cron:defs`), each schedule's
//! state in a hash of its own (`ns:cron:state:{name}`), and the fenced step that fires
//! one in a script (see `scripts::CRON_STEP`). Times are the server's (`TIME`), which is
//! also what [`StoreTime`] reads for every role.

use std::collections::HashMap;

use async_trait::async_trait;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::scripts::{CRON_STEP, SCHEDULE_PAUSE, SCHEDULE_PUT};
use super::{decode_json, encode_json, parse_id, px, IntoStore as _, RedisStore};
use jobfleet_common::cron::ScheduleSpec;
use jobfleet_common::store::{
    CronAction, CronOutcome, CronStep, ScheduleSource, ScheduleState, Schedules, StoreError,
    StoreResult, StoreTime, StoredSchedule, LEADER_LOCK,
};

/// What `ns:cron:defs` holds per name.
#[derive(Serialize, Deserialize)]
struct Declaration {
    spec: ScheduleSpec,
    source: ScheduleSource,
}

impl RedisStore {
    fn defs_key(&self) -> String {
        self.keys.key("cron:defs")
    }

    fn state_key(&self, name: &str) -> String {
        self.keys.key(&format!("cron:state:{name}"))
    }

    /// A stored schedule from its declaration JSON and state hash.
    fn stored(
        name: &str,
        json: &[u8],
        state: &HashMap<String, String>,
    ) -> StoreResult<StoredSchedule> {
        let declaration: Declaration = decode_json(&format!("schedule {name}"), json)?;
        let int = |field: &str| -> StoreResult<Option<i64>> {
            state
                .get(field)
                .map(|v| {
                    v.parse().map_err(|_| {
                        StoreError::Corrupt(format!("schedule {name}: {field} = {v:?}"))
                    })
                })
                .transpose()
        };
        Ok(StoredSchedule {
            name: name.to_string(),
            spec: declaration.spec,
            source: declaration.source,
            updated_at_ms: int("updated_at")?.unwrap_or(0),
            state: ScheduleState {
                paused: state.get("paused").is_some_and(|v| v == "1"),
                watermark_ms: int("watermark")?.unwrap_or(0),
                last_instant_ms: int("last_instant")?,
                last_fired_at_ms: int("last_fired_at")?,
                last_job: state.get("last_job").map(|id| parse_id(id)).transpose()?,
                owed_ms: int("owed")?,
                fires: int("fires")?.unwrap_or(0).max(0) as u64,
                created_at_ms: int("created_at")?.unwrap_or(0),
            },
        })
    }
}

#[async_trait]
impl Schedules for RedisStore {
    async fn schedule_put(
        &self,
        name: &str,
        spec: &ScheduleSpec,
        source: ScheduleSource,
    ) -> StoreResult<bool> {
        let json = encode_json(
            "schedule",
            &Declaration {
                spec: spec.clone(),
                source,
            },
        )?;
        let created: i64 = SCHEDULE_PUT
            .key(self.defs_key())
            .key(self.state_key(name))
            .arg(name)
            .arg(json)
            .arg(if spec.enabled { "1" } else { "0" })
            .invoke_async(&mut self.conn())
            .await
            .store()?;
        Ok(created == 1)
    }

    async fn schedule_list(&self) -> StoreResult<Vec<StoredSchedule>> {
        let mut conn = self.conn();
        let defs: HashMap<String, Vec<u8>> = conn.hgetall(self.defs_key()).await.store()?;
        let mut names: Vec<&String> = defs.keys().collect();
        names.sort();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.hgetall(self.state_key(name));
        }
        let states: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await.store()?;
        // One unreadable schedule (a hand edit, or one written by a newer version with a
        // field this one does not know) must not hide the others.
        let mut out = Vec::with_capacity(names.len());
        for (name, state) in names.into_iter().zip(states) {
            match Self::stored(name, &defs[name], &state) {
                Ok(stored) => out.push(stored),
                Err(e) => {
                    tracing::warn!(schedule = %name, error = %e, "unreadable schedule skipped")
                }
            }
        }
        Ok(out)
    }

    async fn schedule_get(&self, name: &str) -> StoreResult<Option<StoredSchedule>> {
        let (json, state): (Option<Vec<u8>>, HashMap<String, String>) = redis::pipe()
            .hget(self.defs_key(), name)
            .hgetall(self.state_key(name))
            .query_async(&mut self.conn())
            .await
            .store()?;
        json.map(|json| Self::stored(name, &json, &state))
            .transpose()
    }

    async fn schedule_remove(&self, name: &str) -> StoreResult<bool> {
        let (removed, _): (i64, i64) = redis::pipe()
            .atomic()
            .hdel(self.defs_key(), name)
            .del(self.state_key(name))
            .query_async(&mut self.conn())
            .await
            .store()?;
        Ok(removed == 1)
    }

    async fn schedule_pause(&self, name: &str, paused: bool) -> StoreResult<bool> {
        let found: i64 = SCHEDULE_PAUSE
            .key(self.defs_key())
            .key(self.state_key(name))
            .arg(name)
            .arg(if paused { "1" } else { "0" })
            .invoke_async(&mut self.conn())
            .await
            .store()?;
        Ok(found == 1)
    }

    async fn cron_step(&self, step: &CronStep) -> StoreResult<CronOutcome> {
        let [leader_key, _] = self.lock_keys(LEADER_LOCK);
        let mut call = CRON_STEP.prepare_invoke();
        call.key(leader_key)
            .key(self.keys.key(&format!("fence:{LEADER_LOCK}")))
            .key(self.defs_key())
            .key(self.state_key(&step.name))
            .arg(&step.leader.holder)
            .arg(step.leader.token.to_string())
            .arg(&step.name)
            .arg(step.expected_watermark_ms.to_string())
            .arg(step.watermark_ms.to_string());
        match &step.action {
            CronAction::Advance => {
                call.arg("advance").arg(0);
            }
            CronAction::Owe(instant) => {
                call.arg("owe").arg(instant.to_string());
            }
            CronAction::Settle(instant) => {
                call.arg("settle").arg(instant.to_string());
            }
            CronAction::Fire(fire) => {
                let id = fire.job.id;
                // The delayed set splits an entry at its first newline (see `delayed`).
                if fire.job.queue.contains('\n') {
                    return Err(StoreError::Invalid(format!(
                        "schedule {}: queue {:?} has a newline",
                        step.name, fire.job.queue
                    )));
                }
                call.key(&self.delayed_keys()[..])
                    .key(self.keys.of_job("job", id))
                    .key(self.keys.key(&format!("unique:{}", fire.unique_key)))
                    .arg("fire")
                    .arg(fire.instant_ms.to_string())
                    .arg(id.to_string())
                    .arg(&fire.job.queue)
                    .arg(fire.job.due_ms.to_string())
                    .arg(fire.job.body.as_ref())
                    .arg(encode_json("job record", &fire.record)?)
                    .arg(self.record_ttl_ms())
                    .arg(px(fire.unique_ttl_ms))
                    .arg(super::keys::delayed_member(&id));
            }
        }
        let reply: Vec<String> = call.invoke_async(&mut self.conn()).await.store()?;
        match reply.first().map(String::as_str) {
            Some("applied") => Ok(CronOutcome::Applied),
            Some("not_leader") => Ok(CronOutcome::NotLeader),
            Some("moved") => Ok(CronOutcome::Moved),
            Some("paused") => Ok(CronOutcome::Paused),
            Some("gone") => Ok(CronOutcome::Gone),
            Some("taken") => {
                let holder = reply.get(1).map(String::as_str).unwrap_or_default();
                Ok(CronOutcome::Taken(parse_id(holder)?))
            }
            _ => Err(StoreError::Corrupt(format!("cron step replied {reply:?}"))),
        }
    }
}

#[async_trait]
impl StoreTime for RedisStore {
    /// The server's `TIME`: the clock its scripts stamp and expire by.
    async fn store_time_ms(&self) -> StoreResult<i64> {
        let (secs, micros): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut self.conn())
            .await
            .store()?;
        Ok(secs * 1000 + micros / 1000)
    }
}
