//! The span an attempt runs in, joined to the trace its job carries.
//!
//! A job's `trace.traceparent` names the producer's span. The attempt's span (`job`)
//! records `trace_id`, its own `span_id` and `parent_span_id`, so every log line the
//! handler writes names the trace (JSON logs carry them in `span`). With the `otel`
//! feature and `log.otlp_endpoint` set, the span is exported as a child of the
//! producer's span; without them, the ids are jobfleet's own and the span is not
//! exported. Either way the handler gets, from [`JobContext::trace`], the traceparent
//! to hand on to the calls it makes, with this attempt as their parent.
//!
//! [`JobContext::trace`]: crate::JobContext::trace

use jobfleet_common::job::TraceContext;
use jobfleet_common::trace::{new_span_id, TraceParent};
use jobfleet_common::Job;
use tracing::field::Empty;
use tracing::Span;

/// An attempt's span and the trace context it hands on (`None` for a job without one,
/// unless OpenTelemetry started a trace for it).
pub(crate) struct AttemptTrace {
    pub span: Span,
    pub outgoing: Option<TraceContext>,
}

/// Opens the attempt's span under the job's trace context.
pub(crate) fn attempt_span(job: &Job) -> AttemptTrace {
    // The target the span always had (from when delivery.rs was pipeline.rs): filters
    // that name it keep working.
    let span = tracing::info_span!(
        target: "jobfleet_worker::pipeline",
        "job",
        job_id = %job.id,
        queue = %job.queue,
        kind = %job.kind,
        attempt = job.attempt,
        trace_id = Empty,
        span_id = Empty,
        parent_span_id = Empty,
        "otel.kind" = "consumer",
        "otel.name" = format!("process {}", job.queue),
    );
    // Invalid contexts were dropped at intake: a job that has one parses.
    let parent = job
        .trace
        .as_ref()
        .and_then(|t| TraceParent::parse(&t.traceparent).ok());
    let tracestate = job
        .trace
        .as_ref()
        .map(|t| t.tracestate.clone())
        .unwrap_or_default();
    let own = exported(&span, job).or_else(|| parent.map(|p| p.child(new_span_id())));
    let Some(own) = own else {
        return AttemptTrace {
            span,
            outgoing: None,
        };
    };
    span.record("trace_id", own.trace_id_hex());
    span.record("span_id", own.parent_id_hex());
    if let Some(parent) = parent {
        span.record("parent_span_id", parent.parent_id_hex());
    }
    AttemptTrace {
        span,
        outgoing: Some(TraceContext {
            traceparent: own.to_string(),
            tracestate,
        }),
    }
}

/// With OpenTelemetry exporting: the span's own context, under the job's.
#[cfg(feature = "otel")]
fn exported(span: &Span, job: &Job) -> Option<TraceParent> {
    crate::otel::join(span, job.trace.as_ref())
}

#[cfg(not(feature = "otel"))]
fn exported(_span: &Span, _job: &Job) -> Option<TraceParent> {
    None
}
