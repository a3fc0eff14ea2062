//! The dead route's reason header, and turning a dead message into a [`DeadLetter`].
//!
//! The reason travels as `"<error kind>: <text>"`, e.g. `"undecodable: not a jobfleet
//! envelope"`, so the scheduler files the letter under the right kind even when the body
//! is garbage.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::broker::{Message, Route};
use crate::codec;
use crate::job::{ErrorKind, ErrorRecord, JobId, Priority};
use crate::store::DeadLetter;

/// The reason header for `kind` and `text`.
pub fn reason(kind: ErrorKind, text: &str) -> String {
    format!("{}: {text}", kind.as_str())
}

/// Splits a reason header into its kind and text; an unknown or missing kind reads as
/// [`ErrorKind::Failed`] with the whole header as text.
pub fn parse_reason(header: Option<&str>) -> (ErrorKind, String) {
    let header = header.unwrap_or("no reason given");
    let kind = header.split_once(": ").and_then(|(k, text)| {
        let kind: ErrorKind = serde_json::from_value(serde_json::Value::String(k.into())).ok()?;
        Some((kind, text.to_string()))
    });
    kind.unwrap_or_else(|| (ErrorKind::Failed, header.to_string()))
}

/// A message for the dead route carrying `body` as received and why it is dead.
pub fn message(body: Bytes, content_type: Option<String>, kind: ErrorKind, text: &str) -> Message {
    Message {
        route: Route::Dead,
        priority: Priority::NORMAL,
        body,
        content_type,
        reason: Some(reason(kind, text)),
        key: None,
    }
}

/// How much of a body over the message limit a dead letter keeps: its head, enough to
/// see what it was. A 100 MB junk message thus costs 64 KiB in the store, not 100 MB
/// (nor the several copies listing it would make).
pub const KEPT_HEAD_BYTES: usize = 64 * 1024;

/// `body` when it is at most `max` bytes; otherwise its first [`KEPT_HEAD_BYTES`] and a
/// note that says so, for the reason.
pub fn bounded(body: Bytes, max: usize) -> (Bytes, Option<String>) {
    if body.len() <= max {
        return (body, None);
    }
    let kept = KEPT_HEAD_BYTES.min(max).min(body.len());
    let digest = Sha256::digest(&body);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let note = format!(
        "the body of {} bytes (sha256 {hex}) is cut to its first {kept} bytes",
        body.len()
    );
    (body.slice(..kept), Some(note))
}

/// The dead letter for a message from the dead route, decoding what can be decoded.
pub fn letter_from_message(
    body: Bytes,
    content_type: Option<String>,
    reason_header: Option<&str>,
    now_ms: i64,
) -> DeadLetter {
    let (error_kind, reason) = parse_reason(reason_header);
    match codec::decode(&body, content_type.as_deref()) {
        Ok(job) => {
            let mut errors = job.errors.clone();
            let already_recorded = errors
                .last()
                .is_some_and(|e| e.kind == error_kind && e.message == reason);
            if !already_recorded {
                errors.push(ErrorRecord {
                    attempt: job.attempt,
                    at_ms: now_ms,
                    kind: error_kind,
                    message: reason.clone(),
                });
            }
            DeadLetter {
                id: job.id,
                queue: Some(job.queue),
                kind: Some(job.kind),
                reason,
                error_kind,
                errors,
                died_at_ms: now_ms,
                body,
                content_type,
            }
        }
        Err(_) => DeadLetter {
            id: JobId::new(),
            queue: None,
            kind: None,
            reason,
            error_kind,
            errors: Vec::new(),
            died_at_ms: now_ms,
            body,
            content_type,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_over_the_limit_keep_their_head_and_say_so() {
        let small = Bytes::from_static(b"small");
        assert_eq!(bounded(small.clone(), 5), (small, None));
        let huge = Bytes::from(vec![b'x'; 3 * KEPT_HEAD_BYTES]);
        let (kept, note) = bounded(huge, 2 * KEPT_HEAD_BYTES);
        assert_eq!(kept.len(), KEPT_HEAD_BYTES);
        let note = note.expect("a note");
        assert!(
            note.contains(&format!("{} bytes", 3 * KEPT_HEAD_BYTES)),
            "{note}"
        );
        // The whole body's digest, so the original can be recognised if found elsewhere.
        let digest = Sha256::digest(vec![b'x'; 3 * KEPT_HEAD_BYTES]);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert!(note.contains(&format!("sha256 {hex}")), "{note}");
        // A limit below the head size keeps at most the limit.
        let (kept, _) = bounded(Bytes::from(vec![b'y'; 100]), 10);
        assert_eq!(kept.len(), 10);
    }
    use crate::job::Job;

    #[test]
    fn reason_round_trips_and_tolerates_foreign_text() {
        assert_eq!(
            parse_reason(Some(&reason(ErrorKind::Oversized, "2 MiB"))),
            (ErrorKind::Oversized, "2 MiB".into())
        );
        assert_eq!(
            parse_reason(Some("weird: thing")),
            (ErrorKind::Failed, "weird: thing".into())
        );
        assert_eq!(parse_reason(None).0, ErrorKind::Failed);
    }

    #[test]
    fn letters_keep_what_decodes() {
        let job = Job::new("q", "k", "{}");
        let body = codec::encode(&job, codec::Format::Binary);
        let l = letter_from_message(body, None, Some("unknown_kind: no handler for k"), 5);
        assert_eq!(
            (l.id, l.queue.as_deref(), l.error_kind),
            (job.id, Some("q"), ErrorKind::UnknownKind)
        );
        assert_eq!(l.errors.len(), 1);
        let l = letter_from_message(
            Bytes::from_static(b"\xff"),
            None,
            Some("undecodable: junk"),
            5,
        );
        assert_eq!(
            (l.queue, l.error_kind, l.reason.as_str()),
            (None, ErrorKind::Undecodable, "junk")
        );
    }
}
