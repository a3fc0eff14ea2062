//! The job kinds the crash tests run in worker processes, and the Redis keys where those
//! processes leave their side effects for the test to read.
//!
//! A side effect is recorded idempotently, keyed by job id (`SADD {ns}:effects <id>`),
//! beside a counter of every execution that reached it (`INCR {ns}:executions`): the set
//! says whether each job's effect happened, the counter minus the set's size says how
//! many at-least-once re-runs the effect's idempotence absorbed. Every key lives under
//! the namespace, so the namespace cleanup removes it.

use std::time::Duration;

use bytes::Bytes;
use jobfleet_common::job::ConflictPolicy;
use jobfleet_common::{Job, LockMode, LockSpec};
use jobfleet_worker::{JobContext, JobError, Registry};
use redis::aio::ConnectionManager;
use redis::AsyncCommands as _;
use serde::{Deserialize, Serialize};

use super::executions;
use super::keys::Keys;

/// Sleeps, then records its effect.
pub const EFFECT: &str = "effect";
/// The variable naming the Redis the test kinds record to (the test's own, direct),
/// which may differ from the worker's `store` (e.g. through a fault proxy).
pub const RECORDS_URL_VAR: &str = "TESTFLEET_RECORDS_URL";
/// Writes a value to a resource with its lock's fencing token, after a pause.
pub const FENCED: &str = "fenced";

/// What an [`EFFECT`] job does.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EffectPayload {
    /// How long the "work" takes before the effect is recorded.
    pub ms: u64,
    /// Whether to say, at the start, which process runs the job (see [`Keys::runner`]).
    #[serde(default)]
    pub announce: bool,
}

/// What a [`FENCED`] job does.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FencedPayload {
    /// The fenced resource.
    pub resource: String,
    /// The value written.
    pub value: String,
    /// How long after the start the write happens.
    pub ms: u64,
}

impl EffectPayload {
    /// A job of kind [`EFFECT`] on `queue` with this payload.
    pub fn job(&self, queue: &str) -> Job {
        let payload = serde_json::to_vec(self).expect("a payload serialises");
        Job::new(queue, EFFECT, payload)
    }
}

impl FencedPayload {
    /// A job of kind [`FENCED`] on `queue` with this payload, holding the exclusive lock
    /// `lock` (requeued for later while another job holds it).
    pub fn job(&self, queue: &str, lock: &str) -> Job {
        let payload = serde_json::to_vec(self).expect("a payload serialises");
        Job::new(queue, FENCED, payload).with_lock(LockSpec {
            key: lock.to_string(),
            mode: LockMode::Exclusive,
            on_conflict: ConflictPolicy::Requeue,
        })
    }
}

/// A registry with the built-in kinds plus [`EFFECT`], [`FENCED`] and the tracked kinds
/// ([`executions::TRACKED`], [`executions::CRASH`]), recording into Redis at `redis_url`
/// under `namespace`.
pub async fn registry(redis_url: &str, namespace: &str) -> redis::RedisResult<Registry> {
    let conn = ConnectionManager::new(redis::Client::open(redis_url)?).await?;
    let keys = Keys::new(namespace);
    let mut registry = Registry::with_builtins();
    let (c, k) = (conn.clone(), keys.clone());
    registry.register_fn(EFFECT, move |ctx| effect(ctx, c.clone(), k.clone()));
    let (c, k) = (conn.clone(), keys.clone());
    registry.register_fn(executions::TRACKED, move |ctx| {
        executions::tracked(ctx, c.clone(), k.clone())
    });
    let (c, k) = (conn.clone(), keys.clone());
    registry.register_fn(executions::CRASH, move |ctx| {
        executions::crash(ctx, c.clone(), k.clone())
    });
    registry.register_fn(FENCED, move |ctx| fenced(ctx, conn.clone(), keys.clone()));
    Ok(registry)
}

fn store_failed(e: redis::RedisError) -> JobError {
    JobError::retryable(format!("recording the effect: {e}"))
}

async fn effect(ctx: JobContext, mut conn: ConnectionManager, keys: Keys) -> Result<(), JobError> {
    let payload: EffectPayload = ctx.payload_json()?;
    let id = ctx.job().id.to_string();
    if payload.announce {
        let () = redis::pipe()
            .hset(keys.runner(), &id, std::process::id())
            .ignore()
            .hincr(keys.starts(), &id, 1)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(store_failed)?;
    }
    tokio::time::sleep(Duration::from_millis(payload.ms)).await;
    let () = redis::pipe()
        .sadd(keys.effects(), &id)
        .ignore()
        .incr(keys.executions(), 1)
        .ignore()
        .query_async(&mut conn)
        .await
        .map_err(store_failed)?;
    Ok(())
}

async fn fenced(ctx: JobContext, mut conn: ConnectionManager, keys: Keys) -> Result<(), JobError> {
    let payload: FencedPayload = ctx.payload_json()?;
    let Some(fence) = ctx.fence() else {
        return Err(JobError::permanent("a fenced job needs a lock"));
    };
    let key = keys.attempt(ctx.job().id);
    let () = redis::pipe()
        .hset(&key, "pid", std::process::id())
        .ignore()
        .hset(&key, "fence", fence)
        .ignore()
        .query_async(&mut conn)
        .await
        .map_err(store_failed)?;
    // The write runs in a task of its own, like a side effect that outlives a handler
    // the worker stopped (its future is dropped when the lock is lost): exactly the
    // write fencing tokens exist to refuse, so it must happen whatever the worker does.
    let write = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(payload.ms)).await;
        let value = Bytes::from(payload.value);
        let wrote = ctx.fenced_write(&payload.resource, value).await?;
        let () = conn
            .hset(&key, "wrote", wrote)
            .await
            .map_err(store_failed)?;
        Ok::<bool, JobError>(wrote)
    });
    match write.await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(JobError::retryable(
            "fenced write refused: a newer lock holder wrote first",
        )),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(JobError::retryable(format!("the write task failed: {e}"))),
    }
}
