//! W3C trace context (<https://www.w3.org/TR/trace-context/>) on a job: the `traceparent`
//! a producer sets travels in the job's `trace` field, so the job's spans join the
//! caller's trace.
//!
//! A producer refuses a job whose `traceparent` is not valid ([`check`], through
//! [`Limits::validate`](crate::limits::Limits::validate)), naming the field. A worker or
//! scheduler that receives one anyway (another language's producer) does what the
//! recommendation asks of a receiver: it drops the context and runs the job as the start
//! of a new trace ([`drop_invalid`]). A bad trace header never costs a job.

use std::fmt;

use crate::job::{Job, TraceContext};

/// The longest `tracestate` kept: the recommendation's 32 members of up to 256
/// characters would be 8 KiB; vendors are asked to keep it under 512.
pub const MAX_TRACESTATE_BYTES: usize = 512;

/// A parsed `traceparent`: version 00's four fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace's id; never all zeros.
    pub trace_id: [u8; 16],
    /// The id of the span that is this one's parent (the caller's); never all zeros.
    pub parent_id: [u8; 8],
    /// Trace flags; bit 0 is `sampled`.
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` header value. Version `00` must be exactly 55 characters;
    /// a later version may carry more fields after a `-`, which are ignored (the
    /// recommendation's forward compatibility rule). Hex digits are lowercase.
    pub fn parse(value: &str) -> Result<Self, String> {
        let bytes = value.as_bytes();
        if bytes.len() < 55 {
            return Err(format!(
                "{} characters; a traceparent is 55: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>",
                bytes.len()
            ));
        }
        let version = hex::<1>(&bytes[0..2]).ok_or("the version is not 2 lowercase hex digits")?[0];
        if version == 0xff {
            return Err("version ff is not allowed".into());
        }
        if version == 0 && bytes.len() != 55 {
            return Err(format!(
                "{} characters; version 00 is exactly 55",
                bytes.len()
            ));
        }
        if bytes.len() > 55 && bytes[55] != b'-' {
            return Err("fields after the flags must follow a '-'".into());
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err("fields must be separated by '-' at 2, 35 and 52".into());
        }
        let trace_id =
            hex::<16>(&bytes[3..35]).ok_or("the trace id is not 32 lowercase hex digits")?;
        let parent_id =
            hex::<8>(&bytes[36..52]).ok_or("the parent id is not 16 lowercase hex digits")?;
        let flags = hex::<1>(&bytes[53..55]).ok_or("the flags are not 2 lowercase hex digits")?[0];
        if trace_id == [0; 16] {
            return Err("the trace id is all zeros".into());
        }
        if parent_id == [0; 8] {
            return Err("the parent id is all zeros".into());
        }
        Ok(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The same trace and flags with `span_id` as the parent: what a span with that id
    /// hands to the calls it makes.
    pub fn child(&self, span_id: [u8; 8]) -> Self {
        Self {
            parent_id: span_id,
            ..*self
        }
    }

    /// Whether the caller sampled the trace (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The trace id as 32 hex digits.
    pub fn trace_id_hex(&self) -> String {
        to_hex(&self.trace_id)
    }

    /// The parent id as 16 hex digits.
    pub fn parent_id_hex(&self) -> String {
        to_hex(&self.parent_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id_hex(),
            self.parent_id_hex(),
            self.flags
        )
    }
}

/// A fresh span id: 8 random bytes, never all zeros.
pub fn new_span_id() -> [u8; 8] {
    loop {
        let id: [u8; 8] = rand::random();
        if id != [0; 8] {
            return id;
        }
    }
}

/// Checks a job's trace context: `Err((field, reason))` names `trace.traceparent` or
/// `trace.tracestate`.
pub fn check(trace: &TraceContext) -> Result<TraceParent, (&'static str, String)> {
    let parent = TraceParent::parse(&trace.traceparent).map_err(|e| ("trace.traceparent", e))?;
    if trace.tracestate.len() > MAX_TRACESTATE_BYTES {
        return Err((
            "trace.tracestate",
            format!(
                "{} bytes, over {MAX_TRACESTATE_BYTES}",
                trace.tracestate.len()
            ),
        ));
    }
    if !trace.tracestate.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err((
            "trace.tracestate",
            "only printable ASCII is allowed".to_string(),
        ));
    }
    Ok(parent)
}

/// Drops a job's trace context that [`check`] refuses, with a warning: the job runs as
/// the start of a new trace. True if it dropped one.
pub fn drop_invalid(job: &mut Job) -> bool {
    let Some(Err((field, reason))) = job.trace.as_ref().map(check) else {
        return false;
    };
    tracing::warn!(job_id = %job.id, field, %reason, "ignoring the job's invalid trace context");
    job.trace = None;
    true
}

fn hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

fn to_hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_recommendations_example_parses_and_prints_the_same() {
        let parent = TraceParent::parse(EXAMPLE).expect("valid");
        assert_eq!(parent.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.parent_id_hex(), "00f067aa0ba902b7");
        assert!(parent.sampled());
        assert_eq!(parent.to_string(), EXAMPLE);
        let child = parent.child([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            child.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
    }

    #[test]
    fn a_later_version_may_carry_more_fields() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-comes";
        let parent = TraceParent::parse(later).expect("forward compatible");
        assert!(!parent.sampled());
    }

    #[test]
    fn invalid_values_are_refused_with_a_reason() {
        let cases = [
            ("", "55"),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "trace id",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "all zeros",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "all zeros",
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "ff",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                "exactly 55",
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "separated",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
                "flags",
            ),
            (
                "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
                "follow a '-'",
            ),
        ];
        for (value, says) in cases {
            let error = TraceParent::parse(value).expect_err(value);
            assert!(error.contains(says), "{value}: {error}");
        }
    }

    #[test]
    fn check_names_the_field_and_drop_invalid_keeps_the_job() {
        let mut trace = TraceContext {
            traceparent: EXAMPLE.into(),
            tracestate: "vendor=value".into(),
        };
        assert!(check(&trace).is_ok());
        trace.tracestate = "x".repeat(MAX_TRACESTATE_BYTES + 1);
        assert_eq!(check(&trace).map_err(|e| e.0), Err("trace.tracestate"));
        trace.tracestate = "caf\u{e9}=1".into();
        assert_eq!(check(&trace).map_err(|e| e.0), Err("trace.tracestate"));
        trace.traceparent = "nope".into();
        assert_eq!(check(&trace).map_err(|e| e.0), Err("trace.traceparent"));

        let mut job = Job::new("q", "echo", "{}");
        job.trace = Some(trace);
        assert!(drop_invalid(&mut job));
        assert_eq!(job.trace, None);
        job.trace = Some(TraceContext {
            traceparent: EXAMPLE.into(),
            tracestate: String::new(),
        });
        assert!(!drop_invalid(&mut job));
        assert!(job.trace.is_some());
    }

    #[test]
    fn span_ids_are_fresh_and_never_zero() {
        let a = new_span_id();
        let b = new_span_id();
        assert_ne!(a, [0; 8]);
        assert_ne!(a, b);
    }
}
