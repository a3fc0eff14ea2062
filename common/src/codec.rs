//! The versioned envelope: how a [`Job`] becomes bytes on a broker and back.
//!
//! Two forms, both decoded by every consumer (see `docs/wire-format.md`):
//! - binary: the magic bytes `JF`, a version byte (1), then the job in `postcard`;
//!   content type [`POSTCARD_CONTENT_TYPE`]. Compact and fast; what Rust producers send.
//! - JSON: an object with `"v": 1`; content type [`JSON_CONTENT_TYPE`]. What producers in
//!   other languages send. `payload` is any JSON value (the handler gets its bytes), or
//!   `payload_base64` carries arbitrary bytes.
//!
//! The content type travels as a message header where the broker has one; without it the
//! decoder tells the forms apart by the first bytes. Decoding never panics.

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::job::{Backoff, ErrorRecord, Job, JobId, LockSpec, Priority, TraceContext};

/// Content type of the binary form.
pub const POSTCARD_CONTENT_TYPE: &str = "application/x-jobfleet+postcard; v=1";
/// Content type of the JSON form.
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// The first bytes of every binary envelope: magic `JF` and the version.
pub const BINARY_MAGIC: [u8; 3] = *b"JF\x01";
/// The envelope version this build writes and reads.
pub const VERSION: u32 = 1;

/// Which form to write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// `JF\x01` + postcard.
    #[default]
    Binary,
    /// JSON object with `"v": 1`.
    Json,
}

impl Format {
    /// The content type header for this form.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Binary => POSTCARD_CONTENT_TYPE,
            Format::Json => JSON_CONTENT_TYPE,
        }
    }
}

/// Why bytes are not a job.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The content type header names a form this build does not know.
    #[error("unsupported content type {0:?}")]
    ContentType(String),
    /// The envelope version is not one this build reads.
    #[error("unsupported envelope version {0}")]
    Version(u32),
    /// The bytes are neither form.
    #[error("not a jobfleet envelope (neither binary magic nor a JSON object)")]
    Unrecognised,
    /// The binary body is malformed.
    #[error("malformed binary envelope: {0}")]
    Binary(String),
    /// The JSON body is malformed.
    #[error("malformed JSON envelope: {0}")]
    Json(String),
}

/// Encodes a job in the given form.
pub fn encode(job: &Job, format: Format) -> Bytes {
    match format {
        Format::Binary => {
            let mut out = Vec::with_capacity(64 + job.payload.len());
            out.extend_from_slice(&BINARY_MAGIC);
            // Serialising plain data into a Vec cannot fail.
            match postcard::to_extend(job, out) {
                Ok(out) => Bytes::from(out),
                Err(e) => unreachable!("postcard into a Vec failed: {e}"),
            }
        }
        Format::Json => {
            let wire = JsonJob::from_job(job);
            match serde_json::to_vec(&wire) {
                Ok(v) => Bytes::from(v),
                Err(e) => unreachable!("JSON of plain data failed: {e}"),
            }
        }
    }
}

/// Decodes a job, trusting `content_type` when given and sniffing the bytes otherwise.
pub fn decode(body: &[u8], content_type: Option<&str>) -> Result<Job, DecodeError> {
    match content_type.map(str::trim).filter(|c| !c.is_empty()) {
        Some(ct) if ct.starts_with("application/x-jobfleet+postcard") => decode_binary(body),
        Some(ct) if ct.starts_with("application/json") => decode_json(body),
        Some(ct) if ct.starts_with("application/octet-stream") => sniff(body),
        Some(ct) => Err(DecodeError::ContentType(ct.to_string())),
        None => sniff(body),
    }
}

fn sniff(body: &[u8]) -> Result<Job, DecodeError> {
    if body.starts_with(&BINARY_MAGIC[..2]) {
        decode_binary(body)
    } else if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        decode_json(body)
    } else {
        Err(DecodeError::Unrecognised)
    }
}

fn decode_binary(body: &[u8]) -> Result<Job, DecodeError> {
    let Some(rest) = body.strip_prefix(&BINARY_MAGIC[..2]) else {
        return Err(DecodeError::Unrecognised);
    };
    let Some((&version, rest)) = rest.split_first() else {
        return Err(DecodeError::Binary("missing version byte".into()));
    };
    if u32::from(version) != VERSION {
        return Err(DecodeError::Version(version.into()));
    }
    let (job, tail): (Job, &[u8]) =
        postcard::take_from_bytes(rest).map_err(|e| DecodeError::Binary(postcard_reason(&e)))?;
    if !tail.is_empty() {
        return Err(DecodeError::Binary(format!(
            "{} trailing bytes",
            tail.len()
        )));
    }
    Ok(job)
}

fn decode_json(body: &[u8]) -> Result<Job, DecodeError> {
    let wire: JsonJob =
        serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))?;
    wire.into_job()
}

/// What a postcard error means for a job envelope, in words a reader can act on.
fn postcard_reason(e: &postcard::Error) -> String {
    use postcard::Error as E;
    let what = match e {
        E::DeserializeUnexpectedEnd => "the body ends before the job does (truncated?)",
        E::DeserializeBadVarint => "a number is not a valid varint (corrupt, or not postcard)",
        E::DeserializeBadBool => "a boolean byte is neither 0 nor 1",
        E::DeserializeBadChar | E::DeserializeBadUtf8 => "a text field is not valid UTF-8",
        E::DeserializeBadOption => "an optional field's tag is neither 0 (none) nor 1 (some)",
        E::DeserializeBadEnum => {
            "an enum index names no variant (lock.mode, lock.on_conflict or errors[].kind)"
        }
        E::SerdeDeCustom => "a field's value does not fit its type (an id that is not 16 bytes?)",
        other => return other.to_string(),
    };
    what.to_string()
}

/// The JSON form. Only `v`, `id`, `queue` and `kind` are required; every other field has the
/// default a Rust producer would give it, so a hand-written job stays short.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonJob {
    v: u32,
    /// Required: a decoder that invented ids would give a redelivered message a new id
    /// every time, and the completion marker could not recognise it.
    id: JobId,
    queue: String,
    kind: String,
    #[serde(default)]
    priority: Option<u8>,
    #[serde(default)]
    payload: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    payload_base64: Option<String>,
    #[serde(default)]
    attempt: Option<u32>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    enqueued_at_ms: Option<i64>,
    #[serde(default)]
    run_at_ms: Option<i64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    lock: Option<LockSpec>,
    #[serde(default)]
    unique_key: Option<String>,
    #[serde(default)]
    ordering_key: Option<String>,
    #[serde(default)]
    backoff: Option<Backoff>,
    #[serde(default)]
    trace: Option<TraceContext>,
    #[serde(default)]
    errors: Vec<ErrorRecord>,
}

impl JsonJob {
    fn from_job(job: &Job) -> Self {
        // Inline only payloads that read back byte for byte: JSON without surrounding
        // whitespace (RawValue drops it), and not `null` (which reads back as absent).
        let raw = std::str::from_utf8(&job.payload)
            .ok()
            .filter(|s| *s != "null")
            .and_then(|s| serde_json::value::RawValue::from_string(s.to_string()).ok())
            .filter(|raw| raw.get().len() == job.payload.len());
        let payload_base64 = match raw {
            Some(_) => None,
            None if job.payload.is_empty() => None,
            None => Some(base64::engine::general_purpose::STANDARD.encode(&job.payload)),
        };
        Self {
            v: VERSION,
            id: job.id,
            queue: job.queue.clone(),
            kind: job.kind.clone(),
            priority: Some(job.priority.level()),
            payload: raw,
            payload_base64,
            attempt: Some(job.attempt),
            max_attempts: Some(job.max_attempts),
            enqueued_at_ms: Some(job.enqueued_at_ms),
            run_at_ms: job.run_at_ms,
            timeout_ms: Some(job.timeout_ms),
            lock: job.lock.clone(),
            unique_key: job.unique_key.clone(),
            ordering_key: job.ordering_key.clone(),
            backoff: job.backoff,
            trace: job.trace.clone(),
            errors: job.errors.clone(),
        }
    }

    fn into_job(self) -> Result<Job, DecodeError> {
        if self.v != VERSION {
            return Err(DecodeError::Version(self.v));
        }
        let payload = match (self.payload, self.payload_base64) {
            (Some(_), Some(_)) => {
                return Err(DecodeError::Json(
                    "give payload or payload_base64, not both".into(),
                ))
            }
            (Some(raw), None) => Bytes::from(raw.get().as_bytes().to_vec()),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map(Bytes::from)
                .map_err(|e| DecodeError::Json(format!("payload_base64: {e}")))?,
            (None, None) => Bytes::new(),
        };
        let defaults = Job::new(String::new(), String::new(), Bytes::new());
        let priority = match self.priority {
            None => Priority::NORMAL,
            // Out-of-range levels decode, so validation can name the field.
            Some(p) => Priority::new(p).unwrap_or(Priority::out_of_range(p)),
        };
        Ok(Job {
            id: self.id,
            queue: self.queue,
            kind: self.kind,
            priority,
            payload,
            attempt: self.attempt.unwrap_or(1),
            max_attempts: self.max_attempts.unwrap_or(defaults.max_attempts),
            enqueued_at_ms: self.enqueued_at_ms.unwrap_or(0),
            run_at_ms: self.run_at_ms,
            timeout_ms: self.timeout_ms.unwrap_or(defaults.timeout_ms),
            lock: self.lock,
            unique_key: self.unique_key,
            ordering_key: self.ordering_key,
            backoff: self.backoff,
            trace: self.trace,
            errors: self.errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_round_trip() {
        let job = Job::new("q", "echo", &b"\x00\xffbytes"[..]);
        let bytes = encode(&job, Format::Binary);
        assert!(bytes.starts_with(&BINARY_MAGIC));
        assert_eq!(decode(&bytes, Some(POSTCARD_CONTENT_TYPE)), Ok(job.clone()));
        assert_eq!(decode(&bytes, None), Ok(job));
    }

    #[test]
    fn json_round_trip_keeps_json_payload_readable() {
        let job = Job::new("q", "echo", &br#"{"n":1}"#[..]);
        let bytes = encode(&job, Format::Json);
        let text = std::str::from_utf8(&bytes).expect("utf8");
        assert!(text.contains(r#""payload":{"n":1}"#), "{text}");
        assert_eq!(decode(&bytes, Some(JSON_CONTENT_TYPE)), Ok(job));
    }

    #[test]
    fn json_round_trip_of_binary_payload_uses_base64() {
        let job = Job::new("q", "echo", &b"\xff\x00"[..]);
        let bytes = encode(&job, Format::Json);
        assert!(std::str::from_utf8(&bytes)
            .expect("utf8")
            .contains("payload_base64"));
        assert_eq!(decode(&bytes, None), Ok(job));
    }

    #[test]
    fn minimal_hand_written_json_gets_defaults() {
        let text = r#"{"v":1,"id":"01890a5d-ac96-774b-bcce-b302099a8057","queue":"q","kind":"echo","payload":[1,2]}"#;
        let job = decode(text.as_bytes(), None).expect("decodes");
        assert_eq!(job.queue, "q");
        assert_eq!(&job.payload[..], b"[1,2]");
        assert_eq!(job.priority, Priority::NORMAL);
        assert_eq!(job.attempt, 1);
    }

    #[test]
    fn binary_errors_say_what_was_wrong() {
        let job = Job::new("q", "k", "{}");
        let body = encode(&job, Format::Binary);
        let truncated = decode(&body[..body.len() - 3], Some(Format::Binary.content_type()));
        let text = truncated.expect_err("truncated").to_string();
        assert!(text.contains("ends before the job does"), "{text}");
        assert!(!text.contains("Serde"), "{text}");
    }

    #[test]
    fn wrong_versions_and_garbage_are_errors() {
        assert_eq!(decode(b"JF\x02rest", None), Err(DecodeError::Version(2)));
        let v2 = r#"{"v":2,"id":"01890a5d-ac96-774b-bcce-b302099a8057","queue":"q","kind":"k"}"#;
        assert_eq!(decode(v2.as_bytes(), None), Err(DecodeError::Version(2)));
        let no_id = decode(br#"{"v":1,"queue":"q","kind":"k"}"#, None);
        assert!(
            matches!(&no_id, Err(DecodeError::Json(m)) if m.contains("`id`")),
            "{no_id:?}"
        );
        assert_eq!(decode(b"hello", None), Err(DecodeError::Unrecognised));
        assert!(matches!(decode(b"{", None), Err(DecodeError::Json(_))));
        assert!(matches!(
            decode(b"x", Some("text/plain")),
            Err(DecodeError::ContentType(_))
        ));
    }
}
