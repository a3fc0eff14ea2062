//! A job's W3C trace context reaches its handler with the attempt as the parent, passes
//! to the children it spawns, and a bad one costs the trace, never the job.

use std::sync::{Arc, Mutex};

use jobfleet_common::job::TraceContext;
use jobfleet_common::store::JobState;
use jobfleet_common::trace::TraceParent;
use jobfleet_common::{codec, JobId};
use jobfleet_worker::Registry;

use super::Harness;

const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// What each run of the `traced` kind saw: its context's trace, and its child's id.
type Seen = Arc<Mutex<Vec<(Option<TraceContext>, Option<JobId>)>>>;

fn traced_registry(seen: &Seen) -> Registry {
    let mut registry = Registry::new();
    let seen = seen.clone();
    registry.register_fn("traced", move |ctx| {
        let seen = seen.clone();
        async move {
            let child = if ctx.job().payload.as_ref() == b"spawn" {
                let job = jobfleet_common::Job::new(ctx.job().queue.clone(), "traced", "");
                ctx.spawn(vec![job]).await?.first().copied()
            } else {
                None
            };
            seen.lock()
                .expect("not poisoned")
                .push((ctx.trace().cloned(), child));
            Ok(())
        }
    });
    registry
}

#[tokio::test(start_paused = true)]
async fn the_handler_gets_the_callers_trace_with_its_attempt_as_parent_and_children_carry_it() {
    let seen = Seen::default();
    let h = Harness::start(traced_registry(&seen), |_| {}).await;
    let job = h.job("traced", "spawn").with_trace(CALLER, "vendor=1");
    h.publish(&job).await;
    h.wait_for(job.id, JobState::Completed).await;

    let (outgoing, child) = seen.lock().expect("not poisoned")[0].clone();
    let outgoing = outgoing.expect("a traced job hands its trace on");
    let caller = TraceParent::parse(CALLER).expect("valid");
    let own = TraceParent::parse(&outgoing.traceparent).expect("a valid traceparent");
    assert_eq!(own.trace_id, caller.trace_id, "the same trace");
    assert_ne!(own.parent_id, caller.parent_id, "the attempt is a new span");
    assert_eq!(
        own.flags, caller.flags,
        "the caller's sampling decision stands"
    );
    assert_eq!(outgoing.tracestate, "vendor=1");

    // The child waits in the delayed set for a scheduler (none runs here): read it there.
    let child = child.expect("spawned a child");
    let body = h
        .backends
        .store
        .unschedule(child)
        .await
        .expect("store")
        .expect("the child waits to be released");
    let child = codec::decode(&body, None).expect("a job");
    assert_eq!(
        child.trace.map(|t| t.traceparent),
        Some(outgoing.traceparent),
        "the child's parent is the attempt that spawned it"
    );
    h.stop().await.2.expect("clean stop");
}

#[tokio::test(start_paused = true)]
async fn a_job_without_a_trace_hands_none_on_and_an_invalid_one_is_dropped_not_the_job() {
    let seen = Seen::default();
    let h = Harness::start(traced_registry(&seen), |_| {}).await;
    let plain = h.job("traced", "");
    h.publish(&plain).await;
    h.wait_for(plain.id, JobState::Completed).await;

    // As another language's producer might send it: the producer would refuse it.
    let bad = h.job("traced", "").with_trace("00-not-a-trace-01", "");
    assert_eq!(
        jobfleet_common::limits::Limits::default()
            .validate(&bad, 0)
            .map_err(|e| e.field),
        Err("trace.traceparent")
    );
    h.publish(&bad).await;
    h.wait_for(bad.id, JobState::Completed).await;

    let seen = seen.lock().expect("not poisoned").clone();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|(trace, _)| trace.is_none()), "{seen:?}");
    h.stop().await.2.expect("clean stop");
}
