//! The wire format held to its promises and to its documentation.
//!
//! Property tests: every job survives both envelope forms, and no input, however hostile
//! or truncated, makes `decode` panic. Documentation tests: the binary example in
//! `docs/wire-format.md` is the encoder's output byte for byte, its JSON examples decode,
//! and `docs/wire-format.schema.json` names exactly the fields the encoder writes, so the
//! documents cannot drift from the code unnoticed.

#[path = "wire_format/schema_check.rs"]
mod schema_check;
#[path = "wire_format/strategies.rs"]
mod strategies;

use std::collections::BTreeSet;

use bytes::Bytes;
use jobfleet_common::codec::{decode, encode, Format, BINARY_MAGIC};
use jobfleet_common::codec::{JSON_CONTENT_TYPE, POSTCARD_CONTENT_TYPE};
use jobfleet_common::job::{Backoff, ConflictPolicy, LockMode, LockSpec, TraceContext};
use jobfleet_common::{ErrorKind, ErrorRecord, Job, Priority};
use proptest::collection::vec;
use proptest::prelude::*;
use schema_check::conforms;
use serde_json::Value;
use strategies::{arb_job, content_type, ERROR_KINDS};

// ---- properties ----------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn binary_round_trip(job in arb_job()) {
        let body = encode(&job, Format::Binary);
        prop_assert!(body.starts_with(&BINARY_MAGIC));
        prop_assert_eq!(decode(&body, Some(POSTCARD_CONTENT_TYPE)), Ok(job.clone()));
        prop_assert_eq!(decode(&body, None), Ok(job));
    }

    #[test]
    fn json_round_trip(job in arb_job()) {
        let body = encode(&job, Format::Json);
        prop_assert_eq!(decode(&body, Some(JSON_CONTENT_TYPE)), Ok(job.clone()));
        prop_assert_eq!(decode(&body, None), Ok(job));
    }

    #[test]
    fn random_bytes_never_panic(body in vec(any::<u8>(), 0..512), ct in content_type()) {
        let _ = decode(&body, ct.as_deref());
    }

    #[test]
    fn magic_then_random_bytes_never_panic(rest in vec(any::<u8>(), 0..512), ct in content_type()) {
        let mut body = BINARY_MAGIC.to_vec();
        body.extend_from_slice(&rest);
        let _ = decode(&body, ct.as_deref());
        let _ = decode(&body, None);
    }

    #[test]
    fn a_corrupted_byte_never_panics(job in arb_job(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        for format in [Format::Binary, Format::Json] {
            let mut body = encode(&job, format).to_vec();
            let i = at.index(body.len());
            body[i] = byte;
            let _ = decode(&body, Some(format.content_type()));
            let _ = decode(&body, None);
        }
    }

    #[test]
    fn truncated_envelopes_are_errors(job in arb_job()) {
        for format in [Format::Binary, Format::Json] {
            let body = encode(&job, format);
            for cut in 0..body.len() {
                let short = &body[..cut];
                prop_assert!(decode(short, Some(format.content_type())).is_err(), "{format:?} cut at {cut}");
                prop_assert!(decode(short, None).is_err(), "{format:?} cut at {cut}, sniffed");
            }
        }
    }

    #[test]
    fn trailing_bytes_after_a_binary_envelope_are_errors(job in arb_job(), extra in vec(any::<u8>(), 1..8)) {
        let mut body = encode(&job, Format::Binary).to_vec();
        body.extend_from_slice(&extra);
        prop_assert!(decode(&body, None).is_err());
    }
}

// ---- the documentation against the code -------------------------------------------------

fn read_doc(name: &str) -> String {
    let path = format!("{}/../docs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The fenced block after `<!-- wire-format-test: {tag} -->` in `docs/wire-format.md`.
fn doc_block(tag: &str) -> String {
    let doc = read_doc("wire-format.md");
    let marker = format!("<!-- wire-format-test: {tag} -->\n```");
    let start = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("no block {tag:?} in the doc"));
    let body = &doc[start + marker.len()..];
    let body = &body[body.find('\n').expect("fence line ends") + 1..];
    body[..body.find("\n```").expect("fence closes")].to_string()
}

fn schema() -> Value {
    serde_json::from_str(&read_doc("wire-format.schema.json")).expect("the schema is JSON")
}

/// The job `docs/wire-format.md` encodes byte by byte.
fn golden_job() -> Job {
    Job {
        id: "01890a5d-ac96-774b-bcce-b302099a8057"
            .parse()
            .expect("uuid"),
        priority: Priority::HIGH,
        attempt: 2,
        enqueued_at_ms: 1_700_000_000_000,
        timeout_ms: 30_000,
        lock: Some(LockSpec {
            key: "acct-7".into(),
            mode: LockMode::Exclusive,
            on_conflict: ConflictPolicy::Skip,
        }),
        errors: vec![ErrorRecord {
            attempt: 1,
            at_ms: 1_700_000_000_500,
            kind: ErrorKind::Timeout,
            message: "slow".into(),
        }],
        ..Job::new("emails", "send", "{}")
    }
}

/// A job with every optional field set.
fn full_job() -> Job {
    Job {
        run_at_ms: Some(1_700_000_060_000),
        unique_key: Some("welcome:ada@example.com".into()),
        ordering_key: Some("acct-7".into()),
        backoff: Some(Backoff {
            base_ms: 1000,
            cap_ms: 60_000,
        }),
        trace: Some(TraceContext {
            traceparent: "00-ab-cd-01".into(),
            tracestate: "k=v".into(),
        }),
        ..golden_job()
    }
}

#[test]
fn the_documented_binary_example_is_what_the_encoder_writes() {
    let hex: String = doc_block("golden-binary")
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ");
    let documented: Vec<u8> = hex
        .split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|e| panic!("{b:?}: {e}")))
        .collect();
    let encoded = encode(&golden_job(), Format::Binary);
    assert_eq!(
        format!("{:02x?}", &encoded[..]),
        format!("{documented:02x?}")
    );
    assert_eq!(decode(&documented, None), Ok(golden_job()));
}

#[test]
fn the_documented_json_examples_decode() {
    let minimal = decode(
        doc_block("json-minimal").as_bytes(),
        Some(JSON_CONTENT_TYPE),
    )
    .expect("minimal");
    assert_eq!(
        (minimal.queue.as_str(), minimal.kind.as_str()),
        ("emails", "send")
    );
    assert_eq!(&minimal.payload[..], br#"{"to": "ada@example.com"}"#);
    assert_eq!(
        (minimal.priority, minimal.attempt, minimal.timeout_ms),
        (Priority::NORMAL, 1, 300_000)
    );

    let full = decode(doc_block("json-full").as_bytes(), None).expect("full");
    assert_eq!(
        &full.payload[..],
        br#"{"to": "ada@example.com", "template": "welcome"}"#
    );
    let expected = Job {
        payload: full.payload.clone(),
        max_attempts: 5,
        trace: Some(TraceContext {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: String::new(),
        }),
        ..full_job()
    };
    assert_eq!(full, expected);
}

/// The keys of a JSON object, or of the objects in an array.
fn keys(value: &Value) -> BTreeSet<String> {
    match value {
        Value::Object(map) => map.keys().cloned().collect(),
        Value::Array(items) => items.iter().flat_map(keys).collect(),
        _ => BTreeSet::new(),
    }
}

fn schema_keys(schema: &Value) -> BTreeSet<String> {
    keys(&schema["properties"])
}

#[test]
fn the_schema_names_exactly_the_fields_the_encoder_writes() {
    let schema = schema();
    let mut written = BTreeSet::new();
    let mut jobs: Vec<Value> = Vec::new();
    for payload in [&b"{}"[..], b"\xff\x00", b""] {
        let job = Job {
            payload: Bytes::copy_from_slice(payload),
            ..full_job()
        };
        let value: Value = serde_json::from_slice(&encode(&job, Format::Json)).expect("JSON");
        written.extend(keys(&value));
        jobs.push(value);
    }
    assert_eq!(written, schema_keys(&schema), "top-level fields");
    for nested in ["lock", "backoff", "trace"] {
        let sub = &schema["properties"][nested];
        assert_eq!(
            keys(&jobs[0][nested]),
            schema_keys(sub),
            "fields of {nested}"
        );
    }
    let items = &schema["properties"]["errors"]["items"];
    assert_eq!(
        keys(&jobs[0]["errors"]),
        schema_keys(items),
        "fields of errors[]"
    );
    for job in &jobs {
        conforms(&schema, job).unwrap_or_else(|e| panic!("{job}: {e}"));
    }
}

#[test]
fn the_schema_requires_what_the_decoder_requires() {
    let schema = schema();
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required, BTreeSet::from(["id", "kind", "queue", "v"]));
    let id = "01890a5d-ac96-774b-bcce-b302099a8057";
    let minimal = serde_json::json!({"v": 1, "id": id, "queue": "q", "kind": "k"});
    assert!(decode(minimal.to_string().as_bytes(), None).is_ok());
    for field in required {
        let mut short = minimal.clone();
        short.as_object_mut().expect("object").remove(field);
        assert!(
            decode(short.to_string().as_bytes(), None).is_err(),
            "without {field}"
        );
    }
    let extra = serde_json::json!({"v": 1, "id": id, "queue": "q", "kind": "k", "colour": "red"});
    assert!(
        decode(extra.to_string().as_bytes(), None).is_err(),
        "unknown fields are refused"
    );
}

/// The JSON name serde gives a unit enum variant.
fn serde_name<T: serde::Serialize>(variant: T) -> String {
    match serde_json::to_value(variant).expect("plain data") {
        Value::String(name) => name,
        other => panic!("{other} is not a unit variant"),
    }
}

#[test]
fn the_schema_enums_are_the_serde_names() {
    let schema = schema();
    let enum_of = |v: &Value| -> Vec<String> {
        let names = v["enum"]
            .as_array()
            .expect("enum")
            .iter()
            .filter_map(Value::as_str);
        names.map(String::from).collect()
    };
    let lock = &schema["properties"]["lock"]["properties"];
    assert_eq!(
        enum_of(&lock["mode"]),
        [LockMode::Exclusive, LockMode::Shared].map(serde_name)
    );
    let policies = [ConflictPolicy::Requeue, ConflictPolicy::Skip].map(serde_name);
    assert_eq!(enum_of(&lock["on_conflict"]), policies);
    let kinds = ERROR_KINDS.map(serde_name);
    assert_eq!(
        enum_of(&schema["properties"]["errors"]["items"]["properties"]["kind"]),
        kinds
    );
    assert_eq!(
        kinds,
        ERROR_KINDS.map(|k| k.as_str().to_string()),
        "as_str is the serde name"
    );
}

#[test]
fn the_documented_examples_conform_to_the_schema() {
    let schema = schema();
    for tag in ["json-minimal", "json-full"] {
        let value: Value = serde_json::from_str(&doc_block(tag)).expect("JSON");
        conforms(&schema, &value).unwrap_or_else(|e| panic!("{tag}: {e}"));
    }
    let wrong = serde_json::json!({"v": 1, "queue": "q", "kind": "k", "priority": 12});
    assert!(conforms(&schema, &wrong).is_err(), "the checker checks");
}

// ---- payloads the JSON form once lost: `null`, and whitespace around JSON ----------------

/// The payload `null` is written as `"payload": null`, which reads back as "no payload".
#[test]
fn json_null_payload_survives_json() {
    let job = Job::new("q", "k", "null");
    assert_eq!(decode(&encode(&job, Format::Json), None), Ok(job));
}

/// A JSON payload with surrounding whitespace (a file's trailing newline) loses it.
#[test]
fn json_payload_keeps_surrounding_whitespace() {
    let job = Job::new("q", "k", "{\"n\": 1}\n");
    assert_eq!(decode(&encode(&job, Format::Json), None), Ok(job));
}
