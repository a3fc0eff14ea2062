//! Log output for the process: `tracing` lines as text or JSON on stderr.
//!
//! Production roles log at the configured level and format (JSON for log pipelines).
//! `jobfleet dev` is for people at a terminal: text at `warn`, so the progress bar stays
//! readable, unless `RUST_LOG`, `--log-format` or a configured `log.level` asks for more.
//! Operator commands (`enqueue`, `status`, `queues`, …) print their answer and, on
//! failure, one `error:` line: they log jobfleet's own warnings only, never the client
//! libraries' lines (lapin's ERROR with raw debug text for a cut connection, say), unless
//! `--verbose` or `RUST_LOG` asks. (The read-only ones also lead with `WARNING:` lines
//! while the store lost data or does not persist as required: `global::Look`.)

use std::io::IsTerminal;

use jobfleet_common::config::{ConfigError, LogConfig, LogFormat};
use jobfleet_common::Config;
use jobfleet_worker::otel::{self, OtelGuard};
use tracing_subscriber::{EnvFilter, Layer};

use crate::global::LogFormatArg;
use crate::progress::LogWriter;

/// `jobfleet dev`'s default filter: warnings only, so the progress display stays readable
/// (failed attempts log at `info`; the display already counts them).
pub const DEV_FILTER: &str = "warn";

/// `jobfleet run`'s default filter: [`DEV_FILTER`] without the in-process fleet's
/// telemetry warnings, whose "dead-lettered" line would say the job's error a second
/// time before the command's own `error:` line.
pub const RUN_FILTER: &str = "warn,jobfleet_common::telemetry=error";

/// Operator commands' filter unless `--verbose` or `RUST_LOG` says otherwise: jobfleet's
/// own warnings (every jobfleet crate's target starts with `jobfleet`), nothing from the
/// client libraries.
pub const OPERATOR_FILTER: &str = "off,jobfleet=warn";

/// Which defaults apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// A long-running role (`worker`, `scheduler`): the configuration decides.
    Service,
    /// A one-shot operator command (`enqueue`, `status`, `queues`, `dlq`, `cancel`):
    /// [`OPERATOR_FILTER`], so a script reading stderr sees the command's own error
    /// line only (errors that matter come back as that error); the configured format.
    Operator,
    /// `jobfleet dev`: quiet text unless asked otherwise.
    Dev,
    /// `jobfleet run`: as `Dev`, with [`RUN_FILTER`].
    Run,
}

/// The filter and format the process logs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogChoice {
    /// A `tracing` filter directive.
    pub filter: String,
    /// Text or JSON.
    pub format: LogFormat,
}

/// Decides the filter and format from `RUST_LOG` (`rust_log`), `--verbose`, the
/// `--log-format` flag and the config.
pub fn choose(
    config: &Config,
    profile: Profile,
    flag: Option<LogFormatArg>,
    verbose: bool,
    rust_log: Option<String>,
) -> LogChoice {
    let configured_level = config.log.level != LogConfig::default().level;
    let quiet_dev = matches!(profile, Profile::Dev | Profile::Run)
        && flag.is_none()
        && !configured_level
        && !verbose;
    let filter = match rust_log.filter(|v| !v.trim().is_empty()) {
        Some(directives) => directives,
        None if quiet_dev && profile == Profile::Run => RUN_FILTER.to_string(),
        None if quiet_dev => DEV_FILTER.to_string(),
        None if profile == Profile::Operator && !verbose => OPERATOR_FILTER.to_string(),
        None => config.log.level.clone(),
    };
    let format = match (profile, flag) {
        (_, Some(LogFormatArg::Json)) => LogFormat::Json,
        (_, Some(LogFormatArg::Text)) | (Profile::Dev | Profile::Run, None) => LogFormat::Text,
        (Profile::Service | Profile::Operator, None) => config.log.format,
    };
    LogChoice { filter, format }
}

/// Installs the global subscriber, with OpenTelemetry export when `spans` (a service's
/// log settings) names an endpoint. A second call (tests) leaves the first in place.
/// Keep the guard until the process ends: dropping it flushes the last spans.
pub fn init(choice: &LogChoice, spans: Option<&LogConfig>) -> Result<OtelGuard, ConfigError> {
    let filter = EnvFilter::try_new(&choice.filter).map_err(|e| ConfigError {
        key: "log.level".into(),
        reason: format!("{:?} is not a tracing filter: {e}", choice.filter),
    })?;
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(LogWriter)
        .with_ansi(std::io::stderr().is_terminal());
    let lines = match choice.format {
        LogFormat::Json => lines.json().flatten_event(true).boxed(),
        LogFormat::Text => lines.boxed(),
    };
    // Already installed (several commands in one test process): the first one stays.
    otel::install(filter, lines, spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_commands_log_jobfleets_warnings_only_unless_asked() {
        let config = Config::default();
        let op = choose(&config, Profile::Operator, None, false, None);
        assert_eq!(op.filter, OPERATOR_FILTER);
        let json = choose(
            &config,
            Profile::Operator,
            Some(LogFormatArg::Json),
            false,
            None,
        );
        assert_eq!(json.filter, OPERATOR_FILTER);
        assert_eq!(json.format, LogFormat::Json);
        let op = choose(
            &config,
            Profile::Operator,
            None,
            false,
            Some("debug".into()),
        );
        assert_eq!(op.filter, "debug");
        let verbose = choose(&config, Profile::Operator, None, true, None);
        assert_eq!(verbose.filter, "info");
        let svc = choose(&config, Profile::Service, None, false, None);
        assert_eq!(svc.filter, "info");
    }

    #[test]
    fn dev_is_quiet_text_unless_asked() {
        let config = Config::default();
        let dev = choose(&config, Profile::Dev, None, false, None);
        assert_eq!(
            dev,
            LogChoice {
                filter: DEV_FILTER.into(),
                format: LogFormat::Text
            }
        );
        let dev = choose(&config, Profile::Dev, None, false, Some("debug".into()));
        assert_eq!(dev.filter, "debug");
        let dev = choose(&config, Profile::Dev, Some(LogFormatArg::Json), false, None);
        assert_eq!(
            dev,
            LogChoice {
                filter: "info".into(),
                format: LogFormat::Json
            }
        );
        let mut loud = Config::default();
        loud.log.level = "jobfleet_worker=debug".into();
        assert_eq!(
            choose(&loud, Profile::Dev, None, false, None).filter,
            "jobfleet_worker=debug"
        );
    }

    #[test]
    fn services_follow_the_configuration() {
        let mut config = Config::default();
        config.log.format = LogFormat::Json;
        let svc = choose(&config, Profile::Service, None, false, None);
        assert_eq!(
            svc,
            LogChoice {
                filter: "info".into(),
                format: LogFormat::Json
            }
        );
        let svc = choose(
            &config,
            Profile::Service,
            Some(LogFormatArg::Text),
            false,
            Some(" ".into()),
        );
        assert_eq!(
            svc,
            LogChoice {
                filter: "info".into(),
                format: LogFormat::Text
            }
        );
    }

    #[test]
    fn a_bad_filter_names_the_key() {
        let choice = LogChoice {
            filter: "foo=bar=baz".into(),
            format: LogFormat::Text,
        };
        assert_eq!(init(&choice, None).expect_err("invalid").key, "log.level");
    }
}
