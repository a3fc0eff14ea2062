//! Parsers for flag values that clap does not know: durations (`30s`, `5m`), priorities
//! (`high`, `7`) and JSON payloads. Each returns a message clap prints beside the flag.

use std::time::Duration;

use bytes::Bytes;
use jobfleet_common::Priority;

/// A humantime duration such as `250ms`, `30s`, `5m` or `1h 30m`.
pub fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like 30s or 5m ({e})"))
}

/// A priority: `low`, `normal`, `high`, `critical`, or a level 0–9.
pub fn priority(text: &str) -> Result<Priority, String> {
    text.trim().parse()
}

/// A payload given on the command line: it must be JSON, and is kept as written so the
/// handler sees exactly these bytes.
pub fn json_payload(text: &str) -> Result<Bytes, String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| format!("the payload is not JSON: {e}"))?;
    Ok(Bytes::copy_from_slice(text.trim().as_bytes()))
}

/// A duration as whole milliseconds, saturating at `u64::MAX`.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Unix milliseconds as RFC 3339 text with milliseconds, e.g. `2024-05-01T12:00:00.250Z`.
pub fn rfc3339_ms(unix_ms: i64) -> String {
    let Ok(ms) = u64::try_from(unix_ms) else {
        return format!("{unix_ms} ms before the Unix epoch");
    };
    let at = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

/// A TOML literal for a string, so a flag value like `--namespace 2024` stays a string
/// when the configuration loader reads overrides as TOML.
pub fn toml_string(value: &str) -> String {
    // A JSON string literal is a valid TOML basic string: same quotes, same escapes.
    serde_json::Value::String(value.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_humantime_and_name_the_bad_text() {
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(duration(" 250ms "), Ok(Duration::from_millis(250)));
        assert_eq!(duration("1h 30m"), Ok(Duration::from_secs(5400)));
        let e = duration("soon").expect_err("not a duration");
        assert!(e.contains("\"soon\""), "{e}");
        assert!(duration("30").is_err(), "a bare number has no unit");
    }

    #[test]
    fn priorities_accept_names_and_levels() {
        assert_eq!(priority("high"), Ok(Priority::HIGH));
        assert_eq!(priority("Critical"), Ok(Priority::CRITICAL));
        assert_eq!(priority("low"), Ok(Priority::LOW));
        assert_eq!(priority("7").map(Priority::level), Ok(7));
        assert!(priority("10").is_err());
        assert!(priority("urgent")
            .expect_err("unknown")
            .contains("low, normal, high"));
    }

    #[test]
    fn payloads_must_be_json_and_keep_their_bytes() {
        assert_eq!(
            json_payload(r#"{"ms": 5}"#).as_deref(),
            Ok(&br#"{"ms": 5}"#[..])
        );
        assert_eq!(json_payload("[1,2]").as_deref(), Ok(&b"[1,2]"[..]));
        assert!(json_payload("{ms: 5}")
            .expect_err("bad")
            .starts_with("the payload is not JSON"));
    }

    #[test]
    fn timestamps_are_rfc3339_with_millis() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_714_564_800_250), "2024-05-01T12:00:00.250Z");
        assert!(rfc3339_ms(-5).contains("before"));
    }

    #[test]
    fn toml_strings_are_quoted_and_escaped() {
        assert_eq!(toml_string("2024"), "\"2024\"");
        assert_eq!(toml_string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
    }
}
