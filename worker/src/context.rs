//! [`JobContext`]: what a handler gets besides its job — the attempt number, a
//! cancellation token, the execution lease's and the lock's fencing tokens, and a way to
//! report progress and a result.

use std::sync::Arc;

use bytes::Bytes;
use jobfleet_common::job::TraceContext;
use jobfleet_common::limits::Limits;
use jobfleet_common::pipeline::step_job_id;
use jobfleet_common::store::{JobRecord, JobState, ScheduledJob, WorkerStore, MAX_RESULT_BYTES};
use jobfleet_common::{codec, telemetry, Job, SharedClock};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::job_error::JobError;

/// One attempt of one job, as its handler sees it. Cheap to clone.
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<Parts>,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("job", &self.inner.job.id)
            .field("kind", &self.inner.job.kind)
            .field("attempt", &self.inner.job.attempt)
            .field("lease_token", &self.inner.lease_token)
            .field("fence", &self.inner.fence)
            .finish()
    }
}

/// What an attempt is made of, gathered by the delivery's steps before the handler starts.
pub(crate) struct Parts {
    pub job: Job,
    pub cancelled: CancellationToken,
    pub lease_token: u64,
    pub fence: Option<u64>,
    pub worker_id: Arc<str>,
    pub store: Arc<dyn WorkerStore>,
    pub clock: SharedClock,
    /// Bounds on the jobs [`JobContext::spawn`] enqueues.
    pub limits: Limits,
    /// The `running` record this attempt wrote; progress reports rewrite it.
    pub record: JobRecord,
    /// What the handler returned with [`JobContext::set_result`].
    pub result: std::sync::Mutex<Option<serde_json::Value>>,
    /// The trace context calls made for this attempt carry: this attempt's span as the
    /// parent.
    pub trace: Option<TraceContext>,
}

impl JobContext {
    pub(crate) fn new(parts: Parts) -> Self {
        Self {
            inner: Arc::new(parts),
        }
    }

    /// The job being run.
    pub fn job(&self) -> &Job {
        &self.inner.job
    }

    /// The attempt being run, from 1.
    pub fn attempt(&self) -> u32 {
        self.inner.job.attempt
    }

    /// Cancelled when the handler must stop: cancel request, lost lock, timeout, shutdown.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.inner.cancelled
    }

    /// The fencing token of this execution's lease: strictly greater than that of every
    /// earlier execution of this job. Writes a handler makes on the job's behalf can
    /// carry it, so a resource can refuse a write from an execution that was stopped
    /// (paused past its lease, cut off) after a newer one began.
    pub fn lease_token(&self) -> u64 {
        self.inner.lease_token
    }

    /// The fencing token of the job's lock, if the job holds one.
    pub fn fence(&self) -> Option<u64> {
        self.inner.fence
    }

    /// The W3C trace context to hand on to calls this attempt makes (an HTTP request's
    /// `traceparent` and `tracestate` headers, say): the job's trace, with this attempt's
    /// span as the parent. `None` for a job that carries no trace context, unless
    /// OpenTelemetry export is on, which starts a trace for it. Children from
    /// [`spawn`](Self::spawn) carry it unless they bring their own.
    pub fn trace(&self) -> Option<&TraceContext> {
        self.inner.trace.as_ref()
    }

    /// The id of the worker running the job.
    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// Reports progress, 0.0–1.0 (clamped), in the job's state record. Best effort: a
    /// store error is logged, not returned, since the job itself is unaffected.
    pub async fn progress(&self, fraction: f32) {
        self.report(fraction, None).await;
    }

    /// Reports progress as [`progress`](Self::progress) does, with words for people: rows
    /// done of how many, the rate, the time left. `jobfleet status` shows both.
    pub async fn progress_note(&self, fraction: f32, note: impl Into<String>) {
        self.report(fraction, Some(note.into())).await;
    }

    async fn report(&self, fraction: f32, note: Option<String>) {
        if fraction.is_nan() {
            return;
        }
        let record = JobRecord {
            progress: Some(fraction.clamp(0.0, 1.0)),
            progress_note: note,
            updated_at_ms: self.inner.clock.now_ms(),
            ..self.inner.record.clone()
        };
        if let Err(e) = self.inner.store.put_records(&[record]).await {
            telemetry::backend_error("worker", "progress", &e);
        }
    }

    /// Sets the job's result: stored, as JSON, in the `completed` state record (shown by
    /// `jobfleet status`) when the attempt succeeds; a later call replaces it. A result
    /// that does not serialise, or whose JSON is over
    /// [`MAX_RESULT_BYTES`](jobfleet_common::store::MAX_RESULT_BYTES) (64 KiB), is refused
    /// with a permanent error: put large outputs in a file or object store and return
    /// where they are.
    pub fn set_result(&self, result: impl serde::Serialize) -> Result<(), JobError> {
        let value = serde_json::to_value(result)
            .map_err(|e| JobError::permanent(format!("the result is not JSON: {e}")))?;
        let size = value.to_string().len();
        if size > MAX_RESULT_BYTES {
            return Err(JobError::permanent(format!(
                "the result is {size} bytes of JSON, over {MAX_RESULT_BYTES}: store large \
                 outputs elsewhere and return their location"
            )));
        }
        *self
            .inner
            .result
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(value);
        Ok(())
    }

    /// The result set so far, taken out (the delivery's, once the attempt ends).
    pub(crate) fn take_result(&self) -> Option<serde_json::Value> {
        self.inner
            .result
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// The payload parsed as JSON; a payload that does not parse is a permanent error.
    pub fn payload_json<T: DeserializeOwned>(&self) -> Result<T, JobError> {
        Ok(serde_json::from_slice(&self.inner.job.payload)?)
    }

    /// Enqueues `jobs` as this job's children (dynamic fan-out): child `i` gets an id
    /// derived from this job's id and `i`, so an attempt that runs again (a retry, a
    /// redelivery) gets the same ids, and a child that already has a record (waiting,
    /// running or done) is left alone. Each is checked against `[limits]` (a permanent error names
    /// the child and the field), recorded `scheduled`, and put in the delayed set due
    /// now, for a scheduler to release to its queue, as a pipeline's next step is.
    /// Returns their ids. A child that is to run once per parent must not be enqueued
    /// with a varying index.
    pub async fn spawn(&self, jobs: Vec<Job>) -> Result<Vec<jobfleet_common::JobId>, JobError> {
        let now = self.inner.clock.now_ms();
        let parent = self.inner.job.id;
        let mut ids = Vec::with_capacity(jobs.len());
        let mut records = Vec::with_capacity(jobs.len());
        let mut scheduled = Vec::with_capacity(jobs.len());
        for (i, mut job) in jobs.into_iter().enumerate() {
            // The pipeline's derivation, with a step number no pipeline reaches.
            job.id = step_job_id(parent, usize::MAX, i);
            job.enqueued_at_ms = now;
            if job.trace.is_none() {
                job.trace = self.inner.trace.clone();
            }
            self.inner.limits.validate(&job, now).map_err(|e| {
                JobError::permanent(format!("child {i}: {}: {}", e.field, e.reason))
            })?;
            ids.push(job.id);
            // An earlier attempt's child keeps its record and is not enqueued again.
            let known = self
                .inner
                .store
                .record(job.id)
                .await
                .map_err(|e| JobError::retryable(format!("reading child {i}'s record: {e}")))?;
            if known.is_some() {
                continue;
            }
            let mut record = JobRecord::of(&job, JobState::Scheduled, now);
            record.note = Some(format!("child {i} of job {parent}"));
            records.push(record);
            scheduled.push(ScheduledJob {
                id: job.id,
                queue: job.queue.clone(),
                due_ms: now,
                body: codec::encode(&job, codec::Format::Binary),
            });
        }
        let store = &self.inner.store;
        let written = async {
            store.put_records(&records).await?;
            store.schedule(scheduled).await
        };
        written
            .await
            .map_err(|e| JobError::retryable(format!("enqueueing children: {e}")))?;
        Ok(ids)
    }

    /// The last value written to `resource` with [`fenced_write`](Self::fenced_write), by
    /// any job, and its token.
    pub async fn fenced_read(&self, resource: &str) -> Result<Option<(u64, Bytes)>, JobError> {
        self.inner
            .store
            .fenced_read(resource)
            .await
            .map_err(|e| JobError::retryable(format!("fenced read of {resource:?}: {e}")))
    }

    /// Writes `value` to `resource` with the job's fencing token; false if a holder with a
    /// newer token wrote first (this attempt lost its lock and must stop). A job without a
    /// lock has no token, which is a permanent error.
    pub async fn fenced_write(&self, resource: &str, value: Bytes) -> Result<bool, JobError> {
        let Some(token) = self.inner.fence else {
            return Err(JobError::permanent(format!(
                "fenced write to {resource:?} needs a lock, and job {} holds none",
                self.inner.job.id
            )));
        };
        self.inner
            .store
            .fenced_write(resource, token, value)
            .await
            .map_err(|e| JobError::retryable(format!("fenced write to {resource:?}: {e}")))
    }
}
