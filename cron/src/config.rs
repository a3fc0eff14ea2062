//! The config file's schedules compiled at start-up. `Config::validate` (in
//! `jobfleet-common`) checks what needs no cron parser; this reads each expression and
//! time zone, so a schedule that would never fire is refused before anything starts,
//! with its key (`schedules.<name>.cron`) and the reason.

use jobfleet_common::config::ConfigError;
use jobfleet_common::Config;

use crate::schedule::Schedule;

/// Compiles every `[schedules.<name>]` of `config`; the first that does not compile is
/// refused with its key and why.
pub fn check_config(config: &Config) -> Result<(), ConfigError> {
    for (name, spec) in &config.schedules {
        Schedule::new(name, spec.clone()).map_err(|e| ConfigError::schedule(name, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobfleet_common::cron::ScheduleSpec;

    fn with(name: &str, spec: ScheduleSpec) -> Config {
        let mut config = Config::default();
        config.schedules.insert(name.into(), spec);
        config
    }

    #[test]
    fn a_bad_expression_or_zone_is_refused_with_its_key() {
        let good = ScheduleSpec::new("@daily", "q", "echo");
        assert_eq!(check_config(&with("nightly", good.clone())), Ok(()));
        let mut bad = good.clone();
        bad.cron = "30 25 * * *".into();
        let e = check_config(&with("nightly", bad)).expect_err("hour 25");
        assert_eq!(e.key, "schedules.nightly.cron");
        assert!(e.reason.contains("is not a cron expression"), "{e}");
        let mut bad = good.clone();
        bad.timezone = "Europe/Nowhere".into();
        let e = check_config(&with("nightly", bad)).expect_err("no such zone");
        assert_eq!(e.key, "schedules.nightly.timezone");
        let e = check_config(&with("bad name", good)).expect_err("a space");
        assert_eq!(e.key, "schedules.bad name");
    }
}
