//! The flags every command takes, and what they turn into: a validated [`Config`] and, for
//! the commands that talk to shared services, connected [`Backends`].
//!
//! Flags are applied as dotted-key overrides on top of the file and the `JOBFLEET_*`
//! environment, so they win and are validated by the same code as every other layer.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use jobfleet_common::store::{DataLossIncident, Durability};
use jobfleet_common::{Backends, Config, OperatorBackends};

use crate::error::{Error, Result};
use crate::parse::toml_string;

/// Flags accepted before or after any command.
#[derive(Clone, Debug, Default, Args)]
pub struct GlobalArgs {
    /// A TOML configuration file (see docs/configuration.md).
    #[arg(long, global = true, env = "JOBFLEET_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Broker URL: `embedded`, `amqp://…` or `kafka://host:port`.
    #[arg(long, global = true, value_name = "URL")]
    pub broker: Option<String>,
    /// Store URL: `embedded` or `redis://…`.
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,
    /// Prefix of every route and key, so several fleets can share services.
    #[arg(long, global = true, value_name = "NS")]
    pub namespace: Option<String>,
    /// Log line format.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormatArg>,
    /// Log at the configured `log.level` (info by default), client libraries' lines
    /// included. Operator commands (`enqueue`, `status`, `queues`, …) otherwise log
    /// jobfleet's warnings only; `RUST_LOG` wins.
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
}

/// `--log-format` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Human text.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormatArg {
    /// The configuration value this flag sets.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl GlobalArgs {
    /// The flags as dotted-key overrides, each value a TOML literal.
    pub fn overrides(&self) -> Vec<(String, String)> {
        let pairs = [
            ("broker", self.broker.as_deref()),
            ("store", self.store.as_deref()),
            ("namespace", self.namespace.as_deref()),
            ("log.format", self.log_format.map(LogFormatArg::as_str)),
        ];
        pairs
            .into_iter()
            .filter_map(|(key, value)| Some((key.to_string(), toml_string(value?))))
            .collect()
    }

    /// Loads the configuration: defaults, `--config` file, `JOBFLEET_*`, then these flags.
    pub fn load_config(&self) -> Result<Config> {
        let config = Config::load_from_env(self.config.as_deref(), &self.overrides())?;
        // A schedule whose expression or time zone does not read would never fire:
        // refused here, with its key, before any command or role starts.
        jobfleet_cron::check_config(&config)?;
        Ok(config)
    }
}

/// Connects to the shared services `config` names for `command`, refusing the embedded
/// backend: a second process would get its own empty broker and store and silently see
/// nothing.
pub async fn connect_shared(config: &Config, command: &'static str) -> Result<Backends> {
    if config.broker.is_embedded() || config.store.is_embedded() {
        return Err(Error::EmbeddedOnly { command });
    }
    Ok(jobfleet_connect::connect(config).await?)
}

/// What a read-only command (`queues`, `workers`, `status`, `dlq list`, `dlq show`)
/// looks through: the backends, and what is wrong with the store, to lead the answer.
pub struct Look {
    /// The connected backends, as an operator may use them.
    pub backends: OperatorBackends,
    /// What the store's server keeps across its restart (`None`: not asked, or not
    /// applicable).
    pub durability: Option<Durability>,
    /// An open data-loss incident, if any.
    pub data_loss: Option<DataLossIncident>,
    /// `redis.require_persistence`, which decides whether a store that does not persist
    /// is an alarm.
    pub require_persistence: bool,
}

impl Look {
    /// The WARNING lines that lead the answer: the store lost data, the store that should
    /// persist does not.
    pub fn warnings(&self) -> Vec<String> {
        let lost = self.data_loss.as_ref().map(data_loss_warning);
        let volatile = self
            .durability
            .as_ref()
            .and_then(|d| d.alarm(self.require_persistence))
            .map(|alarm| format!("WARNING: {alarm}"));
        lost.into_iter().chain(volatile).collect()
    }

    /// Prints [`Look::warnings`] on stderr, ahead of the answer on stdout (which stays
    /// what scripts parse).
    pub fn print_warnings(&self) {
        for line in self.warnings() {
            eprintln!("{line}");
        }
    }
}

/// The WARNING line of an open data-loss incident.
pub fn data_loss_warning(incident: &DataLossIncident) -> String {
    format!(
        "WARNING: THE STORE LOST DATA ({}). Once dealt with, clear this with `jobfleet \
         queues --ack-data-loss`.",
        describe_incident(incident)
    )
}

/// An incident in one line.
pub fn describe_incident(incident: &DataLossIncident) -> String {
    format!(
        "detected at Unix ms {} by {}: {}",
        incident.detected_at_ms, incident.detected_by, incident.lost
    )
}

/// Connects like [`connect_shared`] for a command that only reads, on any store: one that
/// keeps no append-only file is not refused (operators must be able to look during an
/// incident), it is reported in [`Look::warnings`] instead.
pub async fn connect_to_look(config: &Config, command: &'static str) -> Result<Look> {
    let backends = connect_on_any_store(config, command).await?;
    let (durability, data_loss) = tokio::join!(
        backends.store.durability(),
        backends.store.data_loss_incident()
    );
    Ok(Look {
        backends,
        durability: durability?,
        data_loss: data_loss?,
        require_persistence: config.redis.require_persistence,
    })
}

/// Connects like [`connect_shared`], but to a store whatever it keeps across a restart:
/// for commands that report what it keeps themselves (`queues`, [`connect_to_look`]).
pub async fn connect_on_any_store(
    config: &Config,
    command: &'static str,
) -> Result<OperatorBackends> {
    let mut lenient = config.clone();
    lenient.redis.require_persistence = false;
    Ok(connect_shared(&lenient, command).await?.operator())
}

/// Connects like [`connect_shared`] for an operator command that changes something
/// (`cancel`, `dlq replay|purge`, `schedule`, `pipeline`): the store narrowed to what
/// operators may touch, so the command's types say it takes no lock and no lease.
pub async fn connect_operator(config: &Config, command: &'static str) -> Result<OperatorBackends> {
    Ok(connect_shared(config, command).await?.operator())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_given_flags_become_overrides_and_stay_strings() {
        let args = GlobalArgs {
            broker: Some("amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            namespace: Some("2024".into()),
            log_format: Some(LogFormatArg::Json),
            ..GlobalArgs::default()
        };
        let overrides = args.overrides();
        assert_eq!(
            overrides,
            [
                (
                    "broker".to_string(),
                    "\"amqp://guest:guest@127.0.0.1:5672/%2f\"".to_string()
                ),
                ("namespace".to_string(), "\"2024\"".to_string()),
                ("log.format".to_string(), "\"json\"".to_string()),
            ]
        );
        let config = Config::load(None, [], &overrides[1..]).expect("valid");
        assert_eq!(config.namespace, "2024");
        assert_eq!(config.log.format, jobfleet_common::config::LogFormat::Json);
    }

    #[tokio::test]
    async fn shared_commands_refuse_the_embedded_backend() {
        let e = connect_shared(&Config::default(), "status")
            .await
            .expect_err("refused");
        assert!(matches!(e, Error::EmbeddedOnly { command: "status" }));
        assert_eq!(e.exit_code(), 2);
    }
}
