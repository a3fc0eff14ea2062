//! The job kinds of the `jobfleet` command's workers (`worker`, `dev`, `run`): the
//! built-in ones, and with the `data` feature (on by default) `ingest`, `train` and
//! `predict` on `[data] url`.

use jobfleet_common::Config;
use jobfleet_worker::Registry;

use crate::error::{Error, Result};

/// The built-in kinds, and the data kinds where this build has them.
pub fn registry(config: &Config) -> Result<Registry> {
    #[allow(unused_mut)]
    let mut registry = Registry::with_builtins();
    #[cfg(feature = "data")]
    jobfleet_data::register(&mut registry, &config.data)?;
    #[cfg(not(feature = "data"))]
    let _ = config;
    Ok(registry)
}

/// Checks a payload of `kind` as the kind's handler will before it does anything (its
/// fields, their types and bounds), without running it: a misspelt field is a usage
/// error (exit 2) naming the field, as an unknown kind is, not a job that fails. A kind
/// this build does not know passes: the caller reports it.
pub fn check_payload(kind: &str, payload: &[u8]) -> Result<()> {
    let checked = jobfleet_worker::builtins::check_payload(kind, payload);
    #[cfg(feature = "data")]
    let checked = checked.or_else(|| jobfleet_data::check_payload(kind, payload));
    match checked {
        Some(Err(e)) => Err(Error::Usage(format!(
            "the {kind} payload is wrong, nothing ran: {e}"
        ))),
        Some(Ok(())) | None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(kind: &str, payload: &str) -> String {
        match check_payload(kind, payload.as_bytes()) {
            Err(Error::Usage(message)) => message,
            other => panic!("{kind} {payload}: {other:?}"),
        }
    }

    #[test]
    fn a_built_in_payload_with_a_field_the_kind_does_not_take_is_a_usage_error() {
        let message = refused("sleep", r#"{"ms": 5, "msx": 1}"#);
        assert!(message.contains("unknown field `msx`"), "{message}");
        assert!(
            message.starts_with("the sleep payload is wrong"),
            "{message}"
        );
        assert!(refused("flaky", "{}").contains("missing field `fail_times`"));
        assert!(check_payload("sleep", br#"{"ms": 5}"#).is_ok());
        assert!(check_payload("echo", b"not even JSON").is_ok());
        assert!(check_payload("no-such-kind", b"{}").is_ok());
    }

    #[cfg(feature = "data")]
    #[test]
    fn a_data_payload_is_checked_as_far_as_it_can_be_without_storage() {
        let train = r#"{"model": "m", "dataset": "d", "target": "t", "algorithm": "ridge""#;
        let message = refused("train", &format!(r#"{train}, "aplha": 2}}"#));
        assert!(message.contains("unknown field `aplha`"), "{message}");
        let message = refused("train", &format!(r#"{train}, "params": {{"aplha": 2}}}}"#));
        assert!(
            message.contains("params.aplha: Ridge takes [\"alpha\"]"),
            "{message}"
        );
        let message = refused("train", &format!(r#"{train}, "test_fraction": 1}}"#));
        assert!(message.contains("test_fraction:"), "{message}");
        let message = refused(
            "ingest",
            r#"{"dataset": "../d", "source": "x.csv", "schema_ref": "s"}"#,
        );
        assert!(message.contains("dataset:"), "{message}");
        let message = refused(
            "predict",
            r#"{"model": "m", "output": "/etc/passwd", "id_column": "id"}"#,
        );
        assert!(message.contains("output:"), "{message}");
        // What only storage can tell is the job's to find.
        assert!(check_payload("train", format!("{train}}}").as_bytes()).is_ok());
        assert!(check_payload(
            "ingest",
            br#"{"dataset": "d", "source": "nope.csv", "schema_ref": "s.json"}"#
        )
        .is_ok());
    }
}
