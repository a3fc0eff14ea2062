//! The two fields of a schedule that need more than a look: the cron expression and the
//! time zone, each parsed into what evaluation uses, or refused naming the field.

use std::str::FromStr;

use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use jobfleet_common::cron::InvalidSchedule;

/// Parses a cron expression the way schedules read it: 5 fields, or 6 with seconds
/// first; no year field.
pub fn parse_cron(expression: &str) -> Result<Cron, InvalidSchedule> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|e| {
            InvalidSchedule::new(
                "cron",
                format!("{expression:?} is not a cron expression: {e}"),
            )
        })
}

/// Parses an IANA time zone name.
pub fn parse_zone(name: &str) -> Result<Tz, InvalidSchedule> {
    Tz::from_str(name).map_err(|_| {
        InvalidSchedule::new(
            "timezone",
            format!("{name:?} is not an IANA time zone (e.g. UTC, Europe/Berlin)"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_fields_parse_and_bad_ones_name_the_field() {
        assert!(parse_cron("*/5 * * * *").is_ok());
        assert!(parse_cron("*/2 * * * * *").is_ok());
        assert!(parse_cron("@daily").is_ok());
        for bad in ["", "* * *", "61 * * * *", "* * * * * * 2030", "every day"] {
            let e = parse_cron(bad).expect_err(bad);
            assert_eq!(e.field, "cron", "{bad}");
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
        let e = parse_zone("Mars/Olympus").expect_err("no such zone");
        assert_eq!(e.field, "timezone");
        assert!(e.to_string().contains("Mars/Olympus"), "{e}");
    }
}
