//! proptest strategies for the job model: every field, every option, every enum variant,
//! payloads of raw bytes and of JSON documents.

use bytes::Bytes;
use jobfleet_common::codec::{JSON_CONTENT_TYPE, POSTCARD_CONTENT_TYPE};
use jobfleet_common::job::{Backoff, ConflictPolicy, LockMode, LockSpec, TraceContext};
use jobfleet_common::{ErrorKind, ErrorRecord, Job, JobId, Priority};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;
use uuid::Uuid;

/// Every error kind, in declaration (postcard index) order.
pub const ERROR_KINDS: [ErrorKind; 10] = [
    ErrorKind::Failed,
    ErrorKind::Permanent,
    ErrorKind::Timeout,
    ErrorKind::Panic,
    ErrorKind::LockLost,
    ErrorKind::UnknownKind,
    ErrorKind::Undecodable,
    ErrorKind::Oversized,
    ErrorKind::Invalid,
    ErrorKind::WorkerCrashed,
];

/// Names as producers write them, and any Unicode at all.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9_.:-]{0,12}", any::<String>()]
}

/// Any JSON value whose text is its own exact serialisation.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Raw bytes, or a JSON document (compact or pretty) such as most handlers take.
///
/// A top-level JSON `null` is left out: see `json_null_payload_survives_json`.
pub fn payload() -> impl Strategy<Value = Bytes> {
    let document = json_value()
        .prop_filter("top-level null", |v| !v.is_null())
        .boxed();
    prop_oneof![
        vec(any::<u8>(), 0..64).prop_map(Bytes::from),
        document.clone().prop_map(|v| Bytes::from(v.to_string())),
        document.prop_map(|v| Bytes::from(serde_json::to_string_pretty(&v).expect("plain value"))),
    ]
}

pub fn lock() -> impl Strategy<Value = LockSpec> {
    let modes = select(vec![LockMode::Exclusive, LockMode::Shared]);
    let policies = select(vec![ConflictPolicy::Requeue, ConflictPolicy::Skip]);
    (text(), modes, policies).prop_map(|(key, mode, on_conflict)| LockSpec {
        key,
        mode,
        on_conflict,
    })
}

pub fn error_record() -> impl Strategy<Value = ErrorRecord> {
    (
        any::<u32>(),
        any::<i64>(),
        select(ERROR_KINDS.to_vec()),
        text(),
    )
        .prop_map(|(attempt, at_ms, kind, message)| ErrorRecord {
            attempt,
            at_ms,
            kind,
            message,
        })
}

/// Any job the model can hold, every optional field sometimes set. Not necessarily valid
/// by the limits: the codec carries invalid jobs too, so the worker can name the field.
pub fn arb_job() -> impl Strategy<Value = Job> {
    let head = (
        any::<u128>(),
        text(),
        text(),
        0..=Priority::MAX,
        payload(),
        any::<u32>(),
        any::<u32>(),
        any::<i64>(),
    );
    let backoff =
        (any::<u64>(), any::<u64>()).prop_map(|(base_ms, cap_ms)| Backoff { base_ms, cap_ms });
    let trace = (text(), text()).prop_map(|(traceparent, tracestate)| TraceContext {
        traceparent,
        tracestate,
    });
    let tail = (
        option::of(any::<i64>()),
        any::<u64>(),
        option::of(lock()),
        option::of(text()),
        option::of(text()),
        option::of(backoff),
        option::of(trace),
        vec(error_record(), 0..4),
    );
    (head, tail).prop_map(|(head, tail)| {
        let (id, queue, kind, priority, payload, attempt, max_attempts, enqueued_at_ms) = head;
        let (run_at_ms, timeout_ms, lock, unique_key, ordering_key, backoff, trace, errors) = tail;
        Job {
            id: JobId(Uuid::from_u128(id)),
            queue,
            kind,
            priority: Priority::new(priority).expect("0..=MAX"),
            payload,
            attempt,
            max_attempts,
            enqueued_at_ms,
            run_at_ms,
            timeout_ms,
            lock,
            unique_key,
            ordering_key,
            backoff,
            trace,
            errors,
        }
    })
}

pub fn content_type() -> impl Strategy<Value = Option<String>> {
    let known = select(vec![
        POSTCARD_CONTENT_TYPE.to_string(),
        JSON_CONTENT_TYPE.to_string(),
        "application/octet-stream".to_string(),
        "application/x-jobfleet+postcard; v=2".to_string(),
        " ".to_string(),
    ]);
    option::of(prop_oneof![known, any::<String>()])
}
