//! When a jobfleet schedule is due: its cron expression read and evaluated in its time
//! zone. The schedule itself (its spec, policies, the job each instant makes) is plain
//! data in `jobfleet_common::cron`, which every crate can use without building a cron
//! parser; the scheduler, the operator commands and configuration loading compile it
//! here into a [`Schedule`].
//!
//! Expressions are parsed and evaluated by `croner` (5 fields, or 6 with seconds first;
//! `@daily` and the other nicknames; `L`, `#`, `W`), in an IANA time zone from
//! `chrono-tz`. Across daylight-saving changes the wall clock decides, the way croner
//! does (see docs/schedules.md, "Time zones and DST"):
//! - a time that a spring-forward gap skips (02:30 on the night clocks go 02:00 → 03:00)
//!   fires once, at the first instant after the gap (03:00 local);
//! - a time that a fall-back repeat shows twice fires once, at its first occurrence,
//!   for a fixed-time schedule (`30 2 * * *`); an interval schedule (`*/15 * * * *`)
//!   fires on both passes, as many times as real time passes.
//!
//! # Layout
//!
//! - `parse`: [`parse_cron`] and [`parse_zone`], the two fields a cron parser reads.
//! - `schedule`: [`Schedule`], a checked, compiled schedule: its next instant, the
//!   instants [`Due`] in a window, the job of an instant.
//! - `config`: [`check_config`], the config file's `[schedules.<name>]` compiled at
//!   start-up, refusing one that does not with the key and the reason.

mod config;
mod parse;
mod schedule;

pub use config::check_config;
pub use parse::{parse_cron, parse_zone};
pub use schedule::{Due, Schedule, DUE_SEARCH_LIMIT};
