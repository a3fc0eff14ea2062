//! What the consumers of the internal routes (delayed, failed) do with a message before
//! anything else: decode it and check it against the limits exactly as a worker does on
//! a ready route. Internal routes are not trusted: anyone who can publish to the broker
//! can publish there, and a job with, say, an invalid queue name would otherwise be
//! released into a ready queue nobody consumes. What fails goes to the dead route with
//! the reason, as the worker sends it.

use jobfleet_common::limits::Limits;
use jobfleet_common::{codec, dead, telemetry, ErrorKind, Job, Message};

use crate::consumer::Incoming;

/// A message that is not a valid job: the dead-route message to publish and what to
/// count once it is published.
#[derive(Debug)]
pub(crate) struct Rejected {
    /// The body as received, with the reason header, for the dead route.
    pub(crate) message: Message,
    /// The job's queue when it decoded, `?` otherwise.
    pub(crate) queue: String,
    /// Why.
    pub(crate) kind: ErrorKind,
    /// In words.
    pub(crate) reason: String,
}

impl Rejected {
    /// Counts and logs the dead-lettering, once the dead route confirmed it.
    pub(crate) fn published(&self) {
        telemetry::dead_lettered(&self.queue, self.kind.as_str(), &self.reason);
    }
}

/// Decodes and validates one message of an internal route at `now_ms`.
pub(crate) fn job(delivery: &Incoming, limits: &Limits, now_ms: i64) -> Result<Job, Box<Rejected>> {
    let reject = |queue: Option<&str>, kind: ErrorKind, reason: String| {
        Box::new(Rejected {
            message: dead::message(
                delivery.body.clone(),
                delivery.content_type.clone(),
                kind,
                &reason,
            ),
            queue: queue.unwrap_or("?").to_string(),
            kind,
            reason,
        })
    };
    let mut job = codec::decode(&delivery.body, delivery.content_type.as_deref())
        .map_err(|e| reject(None, ErrorKind::Undecodable, e.to_string()))?;
    // A bad trace header costs the trace, never the job (the W3C recommendation).
    jobfleet_common::trace::drop_invalid(&mut job);
    if let Err(e) = limits.validate(&job, now_ms) {
        let kind = if e.field == "payload" {
            ErrorKind::Oversized
        } else {
            ErrorKind::Invalid
        };
        return Err(reject(
            Some(&job.queue),
            kind,
            format!("{}: {}", e.field, e.reason),
        ));
    }
    Ok(job)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use jobfleet_common::codec::Format;

    use super::*;

    fn incoming(job: &Job) -> Incoming {
        Incoming {
            body: codec::encode(job, Format::Json),
            content_type: Some(Format::Json.content_type().to_string()),
            reason: None,
        }
    }

    #[test]
    fn valid_jobs_pass_and_bad_ones_are_rejected_with_the_field() {
        let limits = Limits::default();
        let ok = Job::new("emails", "send", "{}");
        assert_eq!(job(&incoming(&ok), &limits, 0).expect("valid").id, ok.id);

        let bad = Job::new("bad queue!", "send", "{}");
        let rejected = job(&incoming(&bad), &limits, 0).expect_err("invalid queue");
        assert_eq!(rejected.kind, ErrorKind::Invalid);
        assert!(
            rejected.reason.starts_with("queue: "),
            "{}",
            rejected.reason
        );
        assert_eq!(rejected.queue, "bad queue!");
        assert_eq!(rejected.message.route, jobfleet_common::Route::Dead);
        assert!(rejected
            .message
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("invalid: queue: ")));

        let garbage = Incoming {
            body: Bytes::from_static(b"\x00junk"),
            content_type: None,
            reason: None,
        };
        let rejected = job(&garbage, &limits, 0).expect_err("undecodable");
        assert_eq!(
            (rejected.kind, rejected.queue.as_str()),
            (ErrorKind::Undecodable, "?")
        );
    }
}
