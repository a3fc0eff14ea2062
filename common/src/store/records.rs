//! The records a store keeps: scheduled jobs, job states, dead letters, workers.
//!
//! Records are plain serde structs; backends store them as JSON so an operator reading
//! Redis by hand sees what the roles see.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::job::{ErrorKind, ErrorRecord, Job, JobId};

/// A job waiting in the delayed set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledJob {
    /// The job's id (one entry per id).
    pub id: JobId,
    /// The job's queue, for per-queue counts.
    pub queue: String,
    /// When it is due, Unix ms.
    pub due_ms: i64,
    /// The encoded job, published as is when due.
    pub body: Bytes,
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Published to its ready route, waiting for a worker.
    Pending,
    /// Waiting in the delayed set for its first run.
    Scheduled,
    /// A worker is running it.
    Running,
    /// An attempt failed; waiting in the delayed set for the next one.
    Retrying,
    /// Done (terminal).
    Completed,
    /// No more attempts, or it could not run at all (terminal).
    Dead,
    /// Cancelled, or skipped on a lock conflict (terminal).
    Cancelled,
}

impl JobState {
    /// Whether the job will not change state again (short of a dead-letter replay).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Dead | Self::Cancelled)
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Completed => "completed",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `jobfleet status ID` shows: a job's state and history in brief.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its kind.
    pub kind: String,
    /// Where it is.
    pub state: JobState,
    /// The current or next attempt, from 1.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// First enqueued, Unix ms.
    pub enqueued_at_ms: i64,
    /// Last state change, Unix ms.
    pub updated_at_ms: i64,
    /// When the current or last attempt started.
    pub started_at_ms: Option<i64>,
    /// When it reached a terminal state.
    pub finished_at_ms: Option<i64>,
    /// When it is due, while scheduled or retrying.
    pub run_at_ms: Option<i64>,
    /// Progress reported by the handler, 0.0–1.0.
    pub progress: Option<f32>,
    /// The handler's words on its progress (rows done, rate, time left), while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_note: Option<String>,
    /// The worker running (or that last ran) it.
    pub worker: Option<String>,
    /// The latest error.
    pub last_error: Option<ErrorRecord>,
    /// A free-form note (why it was cancelled or skipped, which schedule fired it).
    pub note: Option<String>,
    /// What the handler returned with its success (`JobContext::set_result`), as JSON;
    /// at most [`MAX_RESULT_BYTES`], kept as long as the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

/// The largest result a handler may return, as JSON text: results live in the state
/// record, beside every other job's; a larger output belongs in a file or object store,
/// with its location as the result.
pub const MAX_RESULT_BYTES: usize = 64 * 1024;

impl JobRecord {
    /// A record for `job` in `state` at `now_ms`, with no progress or worker; its note
    /// names the schedule and instant that fired the job, if one did (so every record of
    /// it says so, the finished one included, unless a later note replaces it).
    pub fn of(job: &Job, state: JobState, now_ms: i64) -> Self {
        Self {
            id: job.id,
            queue: job.queue.clone(),
            kind: job.kind.clone(),
            state,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            enqueued_at_ms: job.enqueued_at_ms,
            updated_at_ms: now_ms,
            started_at_ms: None,
            finished_at_ms: state.is_terminal().then_some(now_ms),
            run_at_ms: job.run_at_ms,
            progress: None,
            worker: None,
            last_error: job.errors.last().cloned(),
            note: crate::cron::fired_for(job).map(|fired| fired.note()),
            progress_note: None,
            result: None,
        }
    }
}

/// A job (or message) that will not run again, with why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The job's id, or a fresh id for a message that did not decode.
    pub id: JobId,
    /// The job's queue, if the message decoded.
    pub queue: Option<String>,
    /// The job's kind, if the message decoded.
    pub kind: Option<String>,
    /// Why it died, in words.
    pub reason: String,
    /// Why it died, as a kind.
    pub error_kind: ErrorKind,
    /// Every failed attempt.
    pub errors: Vec<ErrorRecord>,
    /// When it died, Unix ms.
    pub died_at_ms: i64,
    /// The message body as received (at most a bounded prefix of an oversized or
    /// undecodable one), so it can be replayed or inspected.
    #[serde(default, with = "body_base64")]
    pub body: Bytes,
    /// The body's content type, if known.
    pub content_type: Option<String>,
}

impl DeadLetter {
    /// The letter without its body.
    pub fn summary(&self) -> DeadSummary {
        DeadSummary {
            id: self.id,
            queue: self.queue.clone(),
            kind: self.kind.clone(),
            reason: self.reason.clone(),
            error_kind: self.error_kind,
            errors: self.errors.clone(),
            died_at_ms: self.died_at_ms,
            body_bytes: self.body.len() as u64,
            content_type: self.content_type.clone(),
        }
    }
}

/// A dead letter without its body: what listings read, so listing letters stays cheap
/// however large their bodies are. [`DeadLetters::dead_get`](super::DeadLetters::dead_get)
/// reads one whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadSummary {
    /// The job's id, or a fresh id for a message that did not decode.
    pub id: JobId,
    /// The job's queue, if the message decoded.
    pub queue: Option<String>,
    /// The job's kind, if the message decoded.
    pub kind: Option<String>,
    /// Why it died, in words.
    pub reason: String,
    /// Why it died, as a kind.
    pub error_kind: ErrorKind,
    /// Every failed attempt.
    pub errors: Vec<ErrorRecord>,
    /// When it died, Unix ms.
    pub died_at_ms: i64,
    /// The stored body's size in bytes.
    #[serde(default)]
    pub body_bytes: u64,
    /// The body's content type, if known.
    pub content_type: Option<String>,
}

/// Which dead letters a list, replay or purge is about. Empty fields match all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadFilter {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only letters whose error kind is this, or whose reason contains it.
    pub error: Option<String>,
}

impl DeadFilter {
    /// Whether the letter `summary` describes matches.
    pub fn matches(&self, summary: &DeadSummary) -> bool {
        self.test(
            summary.queue.as_deref(),
            summary.kind.as_deref(),
            summary.error_kind,
            &summary.reason,
        )
    }

    /// Whether `letter` matches.
    pub fn matches_letter(&self, letter: &DeadLetter) -> bool {
        self.test(
            letter.queue.as_deref(),
            letter.kind.as_deref(),
            letter.error_kind,
            &letter.reason,
        )
    }

    fn test(
        &self,
        queue: Option<&str>,
        kind: Option<&str>,
        error_kind: ErrorKind,
        reason: &str,
    ) -> bool {
        let queue_ok = self.queue.as_deref().is_none_or(|q| queue == Some(q));
        let kind_ok = self.kind.as_deref().is_none_or(|k| kind == Some(k));
        let error_ok = self
            .error
            .as_deref()
            .is_none_or(|e| error_kind.as_str() == e || reason.contains(e));
        queue_ok && kind_ok && error_ok
    }
}

/// A live worker, as its heartbeat reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Unique per process.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Queues consumed.
    pub queues: Vec<String>,
    /// Jobs it runs at once at most.
    pub concurrency: usize,
    /// Jobs running now.
    pub running: usize,
    /// Started, Unix ms.
    pub started_at_ms: i64,
    /// Last heartbeat, Unix ms.
    pub last_seen_ms: i64,
    /// The jobs running now (at most [`WorkerInfo::MAX_LISTED`] of them).
    #[serde(default)]
    pub running_jobs: Vec<crate::JobId>,
    /// Attempts this process finished `completed` since it started.
    #[serde(default)]
    pub completed: u64,
    /// Attempts this process finished any other way (failed, timed out, panicked, lost
    /// their lock) since it started.
    #[serde(default)]
    pub failed: u64,
    /// The same counts per queue (one entry per queue it consumes at most).
    #[serde(default)]
    pub by_queue: std::collections::BTreeMap<String, QueueTally>,
}

/// Attempts one worker finished on one queue since it started: throughput and failure
/// rates per queue are the differences between two looks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueTally {
    /// Finished `completed`.
    pub completed: u64,
    /// Finished any other way.
    pub failed: u64,
}

impl WorkerInfo {
    /// The most running jobs a heartbeat lists.
    pub const MAX_LISTED: usize = 256;
}

mod body_base64 {
    use base64::Engine;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(body: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(body))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}
