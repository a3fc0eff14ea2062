//! Reading the configuration's layers, later wins: built-in defaults, a TOML file,
//! `JOBFLEET_*` environment variables, then command-line flags. An environment variable
//! names a key in upper case with `__` between levels: `JOBFLEET_BROKER` is `broker`,
//! `JOBFLEET_WORKER__CONCURRENCY` is `worker.concurrency`; [`FILE_VAR`]
//! (`JOBFLEET_CONFIG`) names the file instead. Any other `JOBFLEET_*` variable that is not
//! a key is refused, so a typo never passes silently. A value that parses as TOML (a
//! number, `true`, `["a","b"]`) is taken as such, anything else as a string.

use std::path::Path;

use super::{err, Config, ConfigError};

/// The environment variable that names the configuration file (read by the binary); the
/// only `JOBFLEET_*` variable that is not a configuration key.
pub const FILE_VAR: &str = "JOBFLEET_CONFIG";

impl Config {
    /// Loads defaults, then `file` (if any), then `JOBFLEET_*` variables from `env`, then
    /// `overrides` (dotted key, value), and validates the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| err("<file>", format!("cannot read {}: {e}", path.display())))?;
                toml::from_str::<toml::Table>(&text)
                    .map_err(|e| err("<file>", format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            if name == FILE_VAR {
                continue;
            }
            if let Some(rest) = name.strip_prefix("JOBFLEET_") {
                if rest.is_empty() {
                    continue;
                }
                let key = rest.to_ascii_lowercase().replace("__", ".");
                set_path(&mut table, &key, &value)?;
            }
        }
        for (key, value) in overrides {
            set_path(&mut table, key, value)?;
        }
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| err(e.path().to_string(), e.inner().to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Loads what a service of yours sees when an operator starts it: the file
    /// `JOBFLEET_CONFIG` names (if set), then the `JOBFLEET_*` variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        let file = std::env::var_os(FILE_VAR).map(std::path::PathBuf::from);
        Self::load_from_env(file.as_deref(), &[])
    }

    /// Loads with the process environment.
    pub fn load_from_env(
        file: Option<&Path>,
        overrides: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        Self::load(file, std::env::vars(), overrides)
    }
}

fn set_path(table: &mut toml::Table, key: &str, raw: &str) -> Result<(), ConfigError> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(err(key, "is not a key"));
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let (last, parents) = parts.split_last().ok_or_else(|| err(key, "is not a key"))?;
    let mut cur = table;
    for (i, p) in parents.iter().enumerate() {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| err(parts[..=i].join("."), "is a value, not a section"))?;
    }
    cur.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file_text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("jobfleet-config-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("jobfleet.toml");
        std::fs::write(&path, file_text).expect("write");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let out = Config::load(Some(&path), env, &[]);
        let _ = std::fs::remove_dir_all(dir);
        out
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::load(None, [], &[]), Ok(Config::default()));
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let c = load(
            "[worker]\nconcurrency = 4\nqueues = [\"a\"]\n",
            &[("JOBFLEET_WORKER__CONCURRENCY", "9")],
        )
        .expect("valid");
        assert_eq!(c.worker.concurrency, 9);
        assert_eq!(c.worker.queues, ["a"]);
        let flags = [("worker.concurrency".to_string(), "2".to_string())];
        let env = [("JOBFLEET_WORKER__CONCURRENCY".to_string(), "9".to_string())];
        assert_eq!(
            Config::load(None, env, &flags)
                .expect("valid")
                .worker
                .concurrency,
            2
        );
    }

    #[test]
    fn the_file_variable_is_not_a_key_but_typos_are_refused() {
        let env = [(FILE_VAR.to_string(), "/etc/jobfleet.toml".to_string())];
        assert_eq!(Config::load(None, env, &[]), Ok(Config::default()));
        let env = [("JOBFLEET_WORKR__CONCURRENCY".to_string(), "2".to_string())];
        assert_eq!(Config::load(None, env, &[]).expect_err("typo").key, "workr");
    }

    #[test]
    fn errors_name_the_key() {
        let e = load("[worker]\nconcurrency = \"many\"\n", &[]).expect_err("invalid");
        assert_eq!(e.key, "worker.concurrency");
        let e = load("", &[("JOBFLEET_WORKER__CONCURRENCY", "0")]).expect_err("invalid");
        assert_eq!(e.key, "worker.concurrency");
        let e = load("[worker]\ngrace_period = \"soon\"\n", &[]).expect_err("invalid");
        assert_eq!(e.key, "worker.grace_period");
        assert!(e.reason.contains("soon"), "{e}");
        let e = load("brokr = \"x\"\n", &[]).expect_err("invalid");
        assert!(e.reason.contains("brokr"), "{e}");
        let e = load("", &[("JOBFLEET_BROKER", "amqp://u:secret@h/")]).expect_err("invalid");
        assert_eq!(e.key, "store");
        let e = load(
            "broker = \"nats://u:secret@h\"\nstore = \"redis://h\"\n",
            &[],
        )
        .expect_err("invalid");
        assert_eq!(e.key, "broker");
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = load("", &[("JOBFLEET_KAFKA__INSTANCE_ID", "pod/0")]).expect_err("invalid");
        assert_eq!(e.key, "kafka.instance_id");
    }

    #[test]
    fn an_otlp_endpoint_is_a_plain_http_url_and_the_protocol_one_of_two() {
        let c = load(
            "[log]\notlp_endpoint = \"http://127.0.0.1:4318\"\notlp_protocol = \"http/json\"\n",
            &[],
        )
        .expect("valid");
        assert_eq!(
            c.log.otlp_endpoint.as_deref(),
            Some("http://127.0.0.1:4318")
        );
        assert_eq!(c.log.otlp_protocol, crate::config::OtlpProtocol::HttpJson);
        for bad in [
            "https://collector:4318",
            "collector:4318",
            "http://",
            "http://u:p@c:4318",
            "http://u:pa/ss@c:4318",
            "http://u:p#ss@c:4318",
            "http://c:4318/x?token=p",
        ] {
            let e = load("", &[("JOBFLEET_LOG__OTLP_ENDPOINT", bad)]).expect_err(bad);
            assert_eq!(e.key, "log.otlp_endpoint", "{bad}: {e}");
            assert!(
                !e.to_string().contains("u:p") && !e.to_string().contains("token=p"),
                "the secret shows: {e}"
            );
        }
        let e = load("[log]\notlp_protocol = \"grpc\"\n", &[]).expect_err("grpc");
        assert!(e.key.starts_with("log"), "{e}");
    }

    #[test]
    fn http_endpoints_need_a_token_off_loopback_and_never_show_it() {
        let c = load(
            "[worker]\nhttp = \"0.0.0.0:9465\"\n[scheduler]\nhttp = \"127.0.0.1:9464\"\n",
            &[],
        )
        .expect("loopback needs no token; a worker's probes need none");
        assert_eq!(c.worker.http.as_deref(), Some("0.0.0.0:9465"));
        let e = load("[scheduler]\nhttp = \"0.0.0.0:9464\"\n", &[]).expect_err("no token");
        assert_eq!(e.key, "scheduler.http_token");
        assert!(e.reason.contains("not a loopback address"), "{e}");
        let e = load("[scheduler]\nhttp_token = \"short\"\n", &[]).expect_err("too short");
        assert_eq!(e.key, "scheduler.http_token");
        let e = load("[worker]\nhttp = \"localhost\"\n", &[]).expect_err("no port");
        assert_eq!(e.key, "worker.http");
        let c = load(
            "[scheduler]\nhttp = \"0.0.0.0:9464\"\n",
            &[("JOBFLEET_SCHEDULER__HTTP_TOKEN", "canary-0123456789abcdef")],
        )
        .expect("a token from the environment");
        assert_eq!(
            c.scheduler.http_token.as_ref().map(|t| t.expose()),
            Some("canary-0123456789abcdef")
        );
        assert!(
            !format!("{c:?}").contains("canary"),
            "Debug shows the token"
        );
    }

    #[test]
    fn a_kafka_instance_id_comes_from_the_environment() {
        let c = load("", &[("JOBFLEET_KAFKA__INSTANCE_ID", "worker-0")]).expect("valid");
        assert_eq!(c.kafka.instance_id.as_deref(), Some("worker-0"));
    }

    #[test]
    fn kafka_buffer_records_load_and_one_is_refused() {
        assert_eq!(load("", &[]).expect("valid").kafka.buffer_records, 2048);
        let c = load("[kafka]\nbuffer_records = 256\n", &[]).expect("valid");
        assert_eq!(c.kafka.buffer_records, 256);
        let e = load("", &[("JOBFLEET_KAFKA__BUFFER_RECORDS", "1")]).expect_err("invalid");
        assert_eq!(e.key, "kafka.buffer_records");
        assert!(e.reason.contains("at least 2"), "{e}");
    }

    #[test]
    fn redis_durability_keys_load_and_short_retention_is_refused() {
        let c = Config::default();
        assert!(
            c.redis.require_persistence,
            "persistence is required by default"
        );
        assert_eq!(
            c.redis.retention,
            std::time::Duration::from_secs(7 * 24 * 3600)
        );
        let c = load("", &[("JOBFLEET_REDIS__REQUIRE_PERSISTENCE", "false")]).expect("valid");
        assert!(!c.redis.require_persistence);
        let c = load("[redis]\nretention = \"2days\"\n", &[]).expect("valid");
        assert_eq!(
            c.redis.retention,
            std::time::Duration::from_secs(2 * 24 * 3600)
        );
        let e = load("[redis]\nretention = \"59m\"\n", &[]).expect_err("too short");
        assert_eq!(e.key, "redis.retention");
        assert!(e.reason.contains("at least 1h"), "{e}");
        let e = load("[redis]\nrequire_persistence = \"maybe\"\n", &[]).expect_err("not a bool");
        assert_eq!(e.key, "redis.require_persistence");
    }
}
