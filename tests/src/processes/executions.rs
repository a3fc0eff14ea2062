//! Every execution of a job, as the worker processes really ran it, and the check of
//! invariant 4a: a job never runs twice at the same time.
//!
//! The [`TRACKED`] kind records, straight into the test's Redis under the namespace, the
//! start of each execution (job id, a fresh execution id, process id, Unix ms, the
//! execution lease's fencing token), then a
//! heartbeat every [`HEARTBEAT`] while its handler runs, then its end; on success it also
//! records its effect like the `effect` kind, so [`World::wait_settled`] applies. The
//! heartbeat is part of the handler's own future: a handler the worker stops (or whose
//! process dies) stops beating, and its execution ends, as far as the check can tell, at
//! its last heartbeat. The [`CRASH`] kind records its start likewise, then aborts its
//! whole worker process.
//!
//! [`Executions`] loads those records and computes, per job, how many executions there
//! were and how many ran at the same instant (an execution spans [start, end or last
//! heartbeat]); all processes run on this machine, so their clocks agree.
//!
//! [`World::wait_settled`]: super::world::World::wait_settled

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jobfleet_common::{Config, Job, JobId};
use jobfleet_worker::{JobContext, JobError};
use redis::aio::{ConnectionLike, ConnectionManager};
use serde::{Deserialize, Serialize};

use super::keys::Keys;

/// Runs for a while, recording its execution; see the module documentation.
pub const TRACKED: &str = "tracked";
/// Records its execution, then aborts the worker process it runs in.
pub const CRASH: &str = "crash";
/// How often a running execution records that it still runs.
pub const HEARTBEAT: Duration = Duration::from_millis(100);

/// What a [`TRACKED`] or [`CRASH`] job does: run (or wait before the abort) this long.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrackedPayload {
    /// How long the handler runs.
    pub ms: u64,
}

impl TrackedPayload {
    /// A [`TRACKED`] job on `queue` running `ms`.
    pub fn job(queue: &str, ms: u64) -> Job {
        let payload = serde_json::to_vec(&Self { ms }).expect("a payload serialises");
        Job::new(queue, TRACKED, payload)
    }

    /// A [`CRASH`] job on `queue` that aborts its worker `ms` after it starts.
    pub fn crash(queue: &str, ms: u64) -> Job {
        let payload = serde_json::to_vec(&Self { ms }).expect("a payload serialises");
        Job::new(queue, CRASH, payload)
    }
}

/// Sets `worker.lease_ttl`, the execution lease of invariant 4a, for the tests that
/// need it short. (Before the execution lease landed this did nothing, so the tests ran,
/// and failed, against the code without it.)
pub fn set_lease_ttl(config: &mut Config, ttl: Duration) {
    config.worker.lease_ttl = ttl;
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn store_failed(e: redis::RedisError) -> JobError {
    JobError::retryable(format!("recording the execution: {e}"))
}

/// One execution being recorded.
struct Recorder {
    conn: ConnectionManager,
    key: String,
}

impl Recorder {
    async fn start(
        mut conn: ConnectionManager,
        keys: &Keys,
        ctx: &JobContext,
    ) -> Result<Self, JobError> {
        let job = ctx.job().id;
        let exec = uuid::Uuid::now_v7().simple().to_string();
        let key = keys.execution(&exec);
        let now = now_ms();
        let () = redis::pipe()
            .hset_multiple(
                &key,
                &[
                    ("job", job.to_string()),
                    ("pid", std::process::id().to_string()),
                    ("start", now.to_string()),
                    ("last", now.to_string()),
                    ("token", ctx.lease_token().to_string()),
                ],
            )
            .ignore()
            .sadd(keys.execution_ids(), &exec)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(store_failed)?;
        Ok(Self { conn, key })
    }

    /// Heartbeats for `ms`.
    async fn run_for(&mut self, ms: u64) {
        let until = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.min(HEARTBEAT)).await;
            // A lost heartbeat only shortens the recorded span by one beat.
            let _: Result<(), _> = redis::cmd("HSET")
                .arg(&self.key)
                .arg("last")
                .arg(now_ms())
                .query_async(&mut self.conn)
                .await;
        }
    }
}

/// The [`TRACKED`] handler.
pub(super) async fn tracked(
    ctx: JobContext,
    conn: ConnectionManager,
    keys: Keys,
) -> Result<(), JobError> {
    let payload: TrackedPayload = ctx.payload_json()?;
    let id = ctx.job().id;
    let mut exec = Recorder::start(conn, &keys, &ctx).await?;
    exec.run_for(payload.ms).await;
    let now = now_ms();
    let () = redis::pipe()
        .hset(&exec.key, "last", now)
        .ignore()
        .hset(&exec.key, "end", now)
        .ignore()
        .sadd(keys.effects(), id.to_string())
        .ignore()
        .incr(keys.executions(), 1)
        .ignore()
        .query_async(&mut exec.conn)
        .await
        .map_err(store_failed)?;
    Ok(())
}

/// The [`CRASH`] handler: never returns.
pub(super) async fn crash(
    ctx: JobContext,
    conn: ConnectionManager,
    keys: Keys,
) -> Result<(), JobError> {
    let payload: TrackedPayload = ctx.payload_json()?;
    let mut exec = Recorder::start(conn, &keys, &ctx).await?;
    exec.run_for(payload.ms).await;
    eprintln!("crash job {}: aborting the worker process", ctx.job().id);
    std::process::abort();
}

/// One recorded execution.
#[derive(Clone, Debug)]
pub struct Execution {
    /// The job it ran.
    pub job: JobId,
    /// The worker process that ran it.
    pub pid: u32,
    /// When it started, Unix ms.
    pub start_ms: i64,
    /// Its last heartbeat, Unix ms.
    pub last_ms: i64,
    /// When its handler returned, if it did.
    pub end_ms: Option<i64>,
    /// The fencing token of its execution lease.
    pub token: Option<u64>,
}

impl Execution {
    /// Where it is known to have stopped running: its end, or its last heartbeat.
    pub fn until_ms(&self) -> i64 {
        self.end_ms.unwrap_or(self.last_ms)
    }
}

/// Every execution recorded in a namespace, by job.
#[derive(Debug, Default)]
pub struct Executions {
    by_job: HashMap<JobId, Vec<Execution>>,
}

impl Executions {
    /// Loads every execution recorded under `keys`.
    pub async fn load(conn: &mut impl ConnectionLike, keys: &Keys) -> Self {
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(keys.execution_ids())
            .query_async(conn)
            .await
            .expect("redis");
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(keys.execution(id));
        }
        let hashes: Vec<HashMap<String, String>> = if ids.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(conn).await.expect("redis")
        };
        let mut by_job: HashMap<JobId, Vec<Execution>> = HashMap::new();
        for hash in hashes {
            let field = |name: &str| hash.get(name).and_then(|v| v.parse::<i64>().ok());
            let (Some(job), Some(start_ms)) = (hash.get("job"), field("start")) else {
                continue;
            };
            let exec = Execution {
                job: job.parse().expect("a job id"),
                pid: field("pid")
                    .and_then(|p| u32::try_from(p).ok())
                    .unwrap_or(0),
                start_ms,
                last_ms: field("last").unwrap_or(start_ms),
                end_ms: field("end"),
                token: hash.get("token").and_then(|t| t.parse().ok()),
            };
            by_job.entry(exec.job).or_default().push(exec);
        }
        for execs in by_job.values_mut() {
            execs.sort_by_key(|e| e.start_ms);
        }
        Self { by_job }
    }

    /// The executions of `job`, by start.
    pub fn of(&self, job: JobId) -> &[Execution] {
        self.by_job.get(&job).map_or(&[], Vec::as_slice)
    }

    /// How many times `job` started.
    pub fn total(&self, job: JobId) -> usize {
        self.of(job).len()
    }

    /// The most executions of `job` running at one instant. One that ends at the instant
    /// another starts does not overlap it.
    pub fn max_concurrent(&self, job: JobId) -> usize {
        let mut edges: Vec<(i64, i32)> = self
            .of(job)
            .iter()
            .flat_map(|e| [(e.start_ms, 1), (e.until_ms(), -1)])
            .collect();
        // Ends (-1) sort before starts (+1) at the same instant.
        edges.sort_unstable();
        let (mut now, mut most) = (0_i32, 0_i32);
        for (_, step) in edges {
            now += step;
            most = most.max(now);
        }
        usize::try_from(most).unwrap_or(0)
    }

    /// How many of `ids` had each total number of executions: total → jobs.
    pub fn totals(&self, ids: &[JobId]) -> BTreeMap<usize, usize> {
        let mut counts = BTreeMap::new();
        for id in ids {
            *counts.entry(self.total(*id)).or_default() += 1;
        }
        counts
    }

    /// How many of `ids` had each maximum of simultaneous executions.
    pub fn concurrency(&self, ids: &[JobId]) -> BTreeMap<usize, usize> {
        let mut counts = BTreeMap::new();
        for id in ids {
            *counts.entry(self.max_concurrent(*id)).or_default() += 1;
        }
        counts
    }

    /// The first start of `job`, Unix ms.
    pub fn first_start_ms(&self, job: JobId) -> Option<i64> {
        self.of(job).first().map(|e| e.start_ms)
    }

    /// Panics, listing the offenders' executions, if any of `ids` ran twice at once.
    pub fn assert_never_concurrent(&self, ids: &[JobId]) {
        let offenders: Vec<JobId> = ids
            .iter()
            .copied()
            .filter(|id| self.max_concurrent(*id) > 1)
            .collect();
        if offenders.is_empty() {
            return;
        }
        let shown: Vec<String> = offenders
            .iter()
            .take(5)
            .map(|id| self.describe(*id))
            .collect();
        panic!(
            "{} of {} jobs ran more than once at the same time (invariant 4a); max \
             simultaneous executions per job: {:?}; e.g.\n{}",
            offenders.len(),
            ids.len(),
            self.concurrency(ids),
            shown.join("\n")
        );
    }

    /// Panics unless each of `ids` ran exactly `n` times.
    pub fn assert_totals(&self, ids: &[JobId], n: usize) {
        let wrong: Vec<JobId> = ids
            .iter()
            .copied()
            .filter(|id| self.total(*id) != n)
            .collect();
        let shown: Vec<String> = wrong.iter().take(5).map(|id| self.describe(*id)).collect();
        assert!(
            wrong.is_empty(),
            "{} of {} jobs did not run exactly {n} time(s); executions per job: {:?}; e.g.\n{}",
            wrong.len(),
            ids.len(),
            self.totals(ids),
            shown.join("\n")
        );
    }

    /// `job`'s executions, in ms relative to its first start.
    pub fn describe(&self, job: JobId) -> String {
        let execs = self.of(job);
        let t0 = execs.first().map_or(0, |e| e.start_ms);
        let spans: Vec<String> = execs
            .iter()
            .map(|e| {
                let end = e
                    .end_ms
                    .map_or("no end".into(), |m| format!("end {}", m - t0));
                let token = e.token.map_or("-".into(), |t| t.to_string());
                format!(
                    "pid {} token {token} [{}..{}] ({end})",
                    e.pid,
                    e.start_ms - t0,
                    e.last_ms - t0
                )
            })
            .collect();
        format!("  job {job}: {}", spans.join(", "))
    }
}
