//! The job model: what a producer publishes, a worker runs and the scheduler times.
//!
//! Every timestamp is Unix time in milliseconds (`*_ms`), every duration is in
//! milliseconds too: the wire format is meant to be written by hand from any language.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A job's identity: a UUID v7, so ids sort by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl JobId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Priority 0 (lowest) to 9 (highest); higher runs first within a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Priority(u8);

impl Priority {
    /// The highest level; RabbitMQ queues are declared with `x-max-priority` = this.
    pub const MAX: u8 = 9;
    /// Named level `low`.
    pub const LOW: Priority = Priority(0);
    /// Named level `normal`, the default.
    pub const NORMAL: Priority = Priority(3);
    /// Named level `high`.
    pub const HIGH: Priority = Priority(6);
    /// Named level `critical`.
    pub const CRITICAL: Priority = Priority(9);

    /// A priority from a number, refused above [`Priority::MAX`].
    pub fn new(level: u8) -> Option<Self> {
        (level <= Self::MAX).then_some(Self(level))
    }

    /// The numeric level, 0–9.
    pub fn level(self) -> u8 {
        self.0
    }

    /// A level kept as decoded, even out of range, so validation can name the field.
    #[doc(hidden)]
    pub fn out_of_range(level: u8) -> Self {
        Self(level)
    }

    /// Whether the level is in range; a decoded job may carry anything.
    pub fn is_valid(self) -> bool {
        self.0 <= Self::MAX
    }
}

impl Default for Priority {
    fn default() -> Self {
        Self::NORMAL
    }
}

impl FromStr for Priority {
    type Err = String;
    /// Accepts a named level (`low`, `normal`, `high`, `critical`) or a number 0–9.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Ok(Self::LOW),
            "normal" => Ok(Self::NORMAL),
            "high" => Ok(Self::HIGH),
            "critical" => Ok(Self::CRITICAL),
            other => other
                .parse::<u8>()
                .ok()
                .and_then(Priority::new)
                .ok_or_else(|| {
                    format!("unknown priority {s:?}: use low, normal, high, critical or 0-9")
                }),
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a lock is held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    /// One holder at a time, excluding shared holders too.
    #[default]
    Exclusive,
    /// Any number of shared holders together, but never beside an exclusive one.
    Shared,
}

/// What a worker does with a job whose lock is taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    /// Put the job back, to try again shortly; no attempt is counted.
    #[default]
    Requeue,
    /// Drop the job: it ends `cancelled` with the reason.
    Skip,
}

/// A lock a job must hold while it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockSpec {
    /// The resource name; jobs with the same key never run at the same time.
    pub key: String,
    /// Exclusive or shared.
    #[serde(default)]
    pub mode: LockMode,
    /// What to do when the lock is taken.
    #[serde(default)]
    pub on_conflict: ConflictPolicy,
}

/// Per-job override of the queue's retry timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// The delay ceiling before jitter for the first retry, doubled per attempt.
    pub base_ms: u64,
    /// The largest delay ever waited.
    pub cap_ms: u64,
}

/// W3C trace context carried from producer to handler.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// The `traceparent` header value.
    pub traceparent: String,
    /// The `tracestate` header value, possibly empty.
    #[serde(default)]
    pub tracestate: String,
}

/// Why an attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The handler returned an error; the job may be retried.
    Failed,
    /// The handler returned an error marked permanent: no retry.
    Permanent,
    /// The handler ran past the job's timeout and was cancelled.
    Timeout,
    /// The handler panicked.
    Panic,
    /// The job's lock was lost mid-run and the handler was cancelled.
    LockLost,
    /// No handler is registered for the job's kind.
    UnknownKind,
    /// The message could not be decoded.
    Undecodable,
    /// The message is larger than the configured limit.
    Oversized,
    /// The message decoded but holds an invalid job.
    Invalid,
    /// Its executions ended with their worker process dying (abort, out of memory, kill)
    /// as many times as it has attempts: it is not run again.
    WorkerCrashed,
}

impl ErrorKind {
    /// Whether another attempt could succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Failed | Self::Timeout | Self::Panic | Self::LockLost
        )
    }

    /// The snake_case name used on the wire, in metrics and in filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Permanent => "permanent",
            Self::Timeout => "timeout",
            Self::Panic => "panic",
            Self::LockLost => "lock_lost",
            Self::UnknownKind => "unknown_kind",
            Self::Undecodable => "undecodable",
            Self::Oversized => "oversized",
            Self::Invalid => "invalid",
            Self::WorkerCrashed => "worker_crashed",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed attempt in a job's error history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// The attempt that failed, from 1.
    pub attempt: u32,
    /// When it failed.
    pub at_ms: i64,
    /// Why.
    pub kind: ErrorKind,
    /// The handler's message.
    pub message: String,
}

/// A job: what to run, where, when and how often.
///
/// `attempt` is the number of the attempt the job is waiting for or running, from 1:
/// a job dies after attempt `max_attempts` fails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Unique id.
    pub id: JobId,
    /// The queue it runs on.
    pub queue: String,
    /// Which handler runs it.
    pub kind: String,
    /// 0–9, higher first.
    pub priority: Priority,
    /// Opaque bytes for the handler.
    pub payload: Bytes,
    /// The current attempt, from 1.
    pub attempt: u32,
    /// How many attempts before the job is dead.
    pub max_attempts: u32,
    /// When it was first enqueued.
    pub enqueued_at_ms: i64,
    /// Not before this instant; `None` means now.
    pub run_at_ms: Option<i64>,
    /// How long one attempt may run.
    pub timeout_ms: u64,
    /// A lock to hold while running.
    pub lock: Option<LockSpec>,
    /// While a job with this key is pending, another enqueue with it is deduplicated.
    pub unique_key: Option<String>,
    /// Jobs with the same key run one after another (per-key FIFO) where the broker can.
    pub ordering_key: Option<String>,
    /// Overrides the queue's retry timing.
    pub backoff: Option<Backoff>,
    /// W3C trace context.
    pub trace: Option<TraceContext>,
    /// Every failed attempt so far.
    pub errors: Vec<ErrorRecord>,
}

impl Job {
    /// A job with defaults: priority normal, 3 attempts, 5 minute timeout, due now.
    pub fn new(
        queue: impl Into<String>,
        kind: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Self {
        Self {
            id: JobId::new(),
            queue: queue.into(),
            kind: kind.into(),
            priority: Priority::NORMAL,
            payload: payload.into(),
            attempt: 1,
            max_attempts: 3,
            enqueued_at_ms: 0,
            run_at_ms: None,
            timeout_ms: 300_000,
            lock: None,
            unique_key: None,
            ordering_key: None,
            backoff: None,
            trace: None,
            errors: Vec::new(),
        }
    }

    /// Sets the priority.
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Sets how many attempts the job gets.
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets the per-attempt timeout.
    pub fn with_timeout_ms(mut self, timeout_ms: u64) -> Self {
        self.timeout_ms = timeout_ms;
        self
    }

    /// Sets the earliest run time (Unix ms).
    pub fn with_run_at_ms(mut self, run_at_ms: i64) -> Self {
        self.run_at_ms = Some(run_at_ms);
        self
    }

    /// Sets the lock.
    pub fn with_lock(mut self, lock: LockSpec) -> Self {
        self.lock = Some(lock);
        self
    }

    /// Sets the uniqueness key.
    pub fn with_unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Sets the W3C trace context the job's spans join: the caller's `traceparent`
    /// (and `tracestate`, possibly empty). See [`crate::trace`].
    pub fn with_trace(
        mut self,
        traceparent: impl Into<String>,
        tracestate: impl Into<String>,
    ) -> Self {
        self.trace = Some(TraceContext {
            traceparent: traceparent.into(),
            tracestate: tracestate.into(),
        });
        self
    }

    /// Whether the job must wait in the delayed set at `now_ms`.
    pub fn is_delayed(&self, now_ms: i64) -> bool {
        self.run_at_ms.is_some_and(|t| t > now_ms)
    }

    /// The latest error, if any.
    pub fn last_error(&self) -> Option<&ErrorRecord> {
        self.errors.last()
    }
}
