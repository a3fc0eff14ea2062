//! Records for the store backends' own tests, so every backend tests the same data.

use bytes::Bytes;

use super::{DeadLetter, ScheduledJob, WorkerInfo};
use crate::job::{ErrorKind, JobId};

/// A dead letter of kind `email` in `queue`, died at `died_at_ms`, with a binary body.
pub(crate) fn letter(queue: Option<&str>, kind: ErrorKind, died_at_ms: i64) -> DeadLetter {
    DeadLetter {
        id: JobId::new(),
        queue: queue.map(str::to_string),
        kind: Some("email".into()),
        reason: format!("gave up: {kind}"),
        error_kind: kind,
        errors: Vec::new(),
        died_at_ms,
        body: Bytes::from_static(b"\x00binary\xff"),
        content_type: None,
    }
}

/// A worker named `id` on queue `q`.
pub(crate) fn worker(id: &str) -> WorkerInfo {
    WorkerInfo {
        id: id.into(),
        host: "h".into(),
        pid: 1,
        queues: vec!["q".into()],
        concurrency: 4,
        running: 0,
        started_at_ms: 0,
        last_seen_ms: 0,
    }
}

/// A job of `queue` due at `due_ms`, its body naming both so bodies tell jobs apart.
pub(crate) fn scheduled(queue: &str, due_ms: i64) -> ScheduledJob {
    ScheduledJob {
        id: JobId::new(),
        queue: queue.into(),
        due_ms,
        body: Bytes::from(format!("body of {queue}@{due_ms}")),
    }
}
