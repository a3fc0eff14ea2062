//! Passwords never show. Every command and role, given a canary password in every URL
//! form (user info, query) through every config source (flag, environment, config file,
//! `JOBFLEET_CONFIG`), and Kafka SASL properties in a config file, prints the canary
//! nowhere when it fails to connect. And a fleet that connects with canary passwords (a
//! RabbitMQ user and a Redis ACL user made for the test) runs a job with JSON logs at
//! `debug`, serves its probes, metrics and API, answers the operator commands, and the
//! canary is in no output, log line, metric or HTTP response.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use jobfleet_testkit::{free_addr, http_get, redis_url, unique_namespace, HOW_TO_START};
use support::Process;

mod support;

const CANARY: &str = "Canary5ecret7q";
/// Any job id: the commands that take one must not care that it does not exist.
const SOME_ID: &str = "01890a5d-ac96-774b-bcce-b302099a8057";

/// The commands that connect, with the arguments they need.
const COMMANDS: &[&[&str]] = &[
    &["worker"],
    &["scheduler"],
    &["enqueue", "--queue", "q", "--kind", "echo"],
    &["status", SOME_ID],
    &["queues"],
    &["workers"],
    &["dlq", "list"],
    &["dlq", "replay", SOME_ID],
    &["cancel", SOME_ID],
    &["schedule", "list"],
    &["pipeline", "status", SOME_ID],
];

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn jobfleet(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jobfleet"));
    cmd.args(args)
        .env_remove("JOBFLEET_CONFIG")
        .env_remove("JOBFLEET_BROKER")
        .env_remove("JOBFLEET_STORE")
        .env_remove("RUST_LOG")
        .env("JOBFLEET_REDIS__REQUIRE_PERSISTENCE", "false")
        // Not the shared test Redis's default namespace (the fleet test sets its own).
        .env("JOBFLEET_NAMESPACE", "secrets-test")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd`, killing it after `within` (a role that keeps retrying): its output, and
/// whether it had to be killed.
fn run_bounded(mut cmd: Command, within: Duration) -> (Output, bool) {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run jobfleet");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + within;
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for jobfleet") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            killed = true;
            break child.wait().expect("wait for jobfleet");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let output = Output {
        status,
        stdout: stdout.join().expect("stdout"),
        stderr: stderr.join().expect("stderr"),
    };
    (output, killed)
}

/// Where a URL is given.
#[derive(Clone, Copy, Debug)]
enum Source {
    Flag,
    Env,
    File,
    EnvFile,
}

/// `jobfleet <args>` with `broker` and `store` given through `source` (a config file of
/// its own, `file`, where the source is one).
fn command_with(file: &Path, args: &[&str], broker: &str, store: &str, source: Source) -> Command {
    let file = file.to_path_buf();
    let toml =
        format!("broker = {broker:?}\nstore = {store:?}\n[redis]\nrequire_persistence = false\n");
    match source {
        Source::Flag => jobfleet(&[&["--broker", broker, "--store", store][..], args].concat()),
        Source::Env => {
            let mut cmd = jobfleet(args);
            cmd.env("JOBFLEET_BROKER", broker)
                .env("JOBFLEET_STORE", store);
            cmd
        }
        Source::File => {
            std::fs::write(&file, toml).expect("write the config");
            let path = file.display().to_string();
            jobfleet(&[&["--config", path.as_str()][..], args].concat())
        }
        Source::EnvFile => {
            std::fs::write(&file, toml).expect("write the config");
            let mut cmd = jobfleet(args);
            cmd.env("JOBFLEET_CONFIG", &file);
            cmd
        }
    }
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jobfleet-{what}-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn no_command_shows_a_canary_password_when_it_cannot_connect() {
    let dir = temp_dir("secrets");
    let redis = redis_url();
    // The store is tried first: broker URLs go with the reachable test Redis, store URLs
    // with a broker nothing answers on.
    let brokers = [
        format!("amqp://u:{CANARY}@127.0.0.1:1/%2f"),
        format!("amqps://u:{CANARY}@127.0.0.1:1/%2f"),
        format!("kafka://u:{CANARY}@127.0.0.1:1"),
        format!("kafka://127.0.0.1:1?password={CANARY}"),
    ];
    let stores = [
        format!("redis://:{CANARY}@127.0.0.1:1/"),
        format!("redis://u:{CANARY}@127.0.0.1:1/"),
        format!("rediss://u:{CANARY}@127.0.0.1:1/"),
        format!("redis://127.0.0.1:1/?password={CANARY}"),
    ];
    let pairs = brokers.iter().map(|b| (b.clone(), redis.clone())).chain(
        stores
            .iter()
            .map(|s| ("amqp://127.0.0.1:1/%2f".to_string(), s.clone())),
    );
    let mut cases = Vec::new();
    for (broker, store) in pairs {
        for source in [Source::Flag, Source::Env, Source::File, Source::EnvFile] {
            for args in COMMANDS {
                cases.push((*args, broker.clone(), store.clone(), source));
            }
        }
    }
    let started = Instant::now();
    // Eight at a time: most of a run is waiting for a refused connection to be reported.
    let chunk = cases.len().div_ceil(8);
    let mut runs = cases.len();
    let mut slow: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = cases
            .chunks(chunk)
            .enumerate()
            .map(|(n, part)| {
                let dir = &dir;
                scope.spawn(move || {
                    let mut slow = Vec::new();
                    for (i, (args, broker, store, source)) in part.iter().enumerate() {
                        let file = dir.join(format!("case-{n}-{i}.toml"));
                        let cmd = command_with(&file, args, broker, store, *source);
                        let (out, killed) = run_bounded(cmd, Duration::from_secs(15));
                        if killed {
                            slow.push(format!("{args:?} {broker} {store} {source:?}"));
                        }
                        let said = text(&out);
                        // It got as far as refusing the address or failing to connect.
                        assert!(
                            !out.status.success() && said.contains("error: "),
                            "jobfleet {args:?} with {broker} / {store} from {source:?} did \
                             not fail: {said}"
                        );
                        assert!(
                            !said.contains(CANARY),
                            "jobfleet {args:?} with broker {broker} / store {store} from \
                             {source:?} showed the password:\n{said}"
                        );
                    }
                    slow
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });

    // Kafka SASL credentials in the config file's [kafka.properties].
    let file = dir.join("sasl.toml");
    std::fs::write(
        &file,
        format!(
            "broker = \"kafka://127.0.0.1:1\"\nstore = {redis:?}\n[redis]\n\
             require_persistence = false\n[kafka.properties]\n\"security.protocol\" = \
             \"SASL_PLAINTEXT\"\n\"sasl.mechanism\" = \"PLAIN\"\n\"sasl.username\" = \"u\"\n\
             \"sasl.password\" = \"{CANARY}\"\n"
        ),
    )
    .expect("write the config");
    // Each run waits out the Kafka client's 10 s metadata timeout: all at once.
    let path = file.display().to_string();
    let sasl: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = COMMANDS
            .iter()
            .map(|args| {
                let path = &path;
                scope.spawn(move || {
                    let mut cmd = jobfleet(&[&["--config", path.as_str()][..], *args].concat());
                    cmd.env("RUST_LOG", "debug");
                    let (out, killed) = run_bounded(cmd, Duration::from_secs(30));
                    let said = text(&out);
                    assert!(
                        !out.status.success() && said.contains("cannot connect to the broker"),
                        "jobfleet {args:?} with SASL properties did not fail to connect: {said}"
                    );
                    assert!(
                        !said.contains(CANARY),
                        "jobfleet {args:?} with SASL properties:\n{said}"
                    );
                    killed.then(|| format!("{args:?} SASL"))
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    runs += COMMANDS.len();
    slow.extend(sasl);
    println!(
        "secrets: {runs} runs of {} commands, none showed the canary ({:.1} s); still \
         retrying when stopped: {slow:?}",
        COMMANDS.len(),
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A RabbitMQ user and a Redis ACL user with the canary as password, removed on drop.
struct CanaryUsers {
    name: String,
}

impl CanaryUsers {
    fn create(name: &str) -> Self {
        let rabbitmqctl = |args: &[&str]| {
            let out = Command::new("rabbitmqctl")
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("rabbitmqctl: {e}\n{HOW_TO_START}"));
            assert!(out.status.success(), "rabbitmqctl {args:?}: {}", text(&out));
        };
        rabbitmqctl(&["add_user", name, CANARY]);
        // From here on the guard removes both users, whatever fails next.
        let users = Self {
            name: name.to_string(),
        };
        // On the virtual host the test URL names, which need not be the default `/`.
        let vhost = jobfleet_testkit::amqp_url()
            .parse::<lapin::uri::AMQPUri>()
            .expect("TEST_AMQP_URL is an AMQP URL")
            .vhost;
        rabbitmqctl(&["set_permissions", "-p", &vhost, name, ".*", ".*", ".*"]);
        redis_cli(&[
            "ACL",
            "SETUSER",
            name,
            "on",
            &format!(">{CANARY}"),
            "~*",
            "&*",
            "+@all",
        ]);
        users
    }
}

impl Drop for CanaryUsers {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_user", &self.name])
            .output();
        let _ = Command::new("redis-cli")
            .args(["-u", &redis_url(), "ACL", "DELUSER", &self.name])
            .output();
    }
}

fn redis_cli(args: &[&str]) {
    let out = Command::new("redis-cli")
        .arg("-u")
        .arg(redis_url())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("redis-cli: {e}\n{HOW_TO_START}"));
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("ERR"),
        "redis-cli {args:?}: {}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_connected_with_canary_passwords_never_shows_them() {
    let namespace = unique_namespace("secrets");
    let user = format!("jf-{namespace}");
    let _users = CanaryUsers::create(&user);
    let redis = redis_url();
    let (host, rest) = redis
        .strip_prefix("redis://")
        .and_then(|r| r.split_once('/'))
        .expect("a redis:// URL");
    let store = format!("redis://{user}:{CANARY}@{host}/{rest}");
    let amqp = jobfleet_testkit::amqp_url();
    let broker_host = amqp
        .split_once('@')
        .map_or_else(|| amqp.trim_start_matches("amqp://"), |(_, h)| h)
        .to_string();
    let broker = format!("amqp://{user}:{CANARY}@{broker_host}");
    let dir = temp_dir("secrets-fleet");
    let (worker_http, scheduler_http) = (free_addr(), free_addr());
    let config = dir.join("fleet.toml");
    std::fs::write(
        &config,
        format!(
            "broker = {broker:?}\nstore = {store:?}\nnamespace = {namespace:?}\n\
             [redis]\nrequire_persistence = false\n\
             [log]\nformat = \"json\"\nlevel = \"debug,lapin=debug,redis=debug\"\n\
             [worker]\nhttp = {worker_http:?}\nheartbeat = \"200ms\"\n\
             [scheduler]\nhttp = {scheduler_http:?}\n"
        ),
    )
    .expect("write the config");
    let path = config.display().to_string();
    let logs: Vec<PathBuf> = ["worker", "scheduler"]
        .iter()
        .map(|r| dir.join(format!("{r}.log")))
        .collect();
    let role = |name: &str, log: &Path| {
        let out = std::fs::File::create(log).expect("log file");
        Process::new(
            jobfleet(&["--config", path.as_str(), name])
                .env("JOBFLEET_NAMESPACE", &namespace)
                .stdout(out.try_clone().expect("log handle"))
                .stderr(out)
                .spawn()
                .expect("run jobfleet"),
        )
    };
    let worker = role("worker", &logs[0]);
    let scheduler = role("scheduler", &logs[1]);

    let mut seen: Vec<(String, String)> = Vec::new();
    let cli = |args: &[&str]| {
        let out = jobfleet(&[&["--config", path.as_str()][..], args].concat())
            .env("JOBFLEET_NAMESPACE", &namespace)
            .output()
            .expect("run jobfleet");
        (args.join(" "), out)
    };
    let (what, out) = cli(&[
        "enqueue",
        "--queue",
        "default",
        "--kind",
        "echo",
        "--payload",
        "{}",
    ]);
    assert!(out.status.success(), "{what}: {}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    seen.push((what, text(&out)));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (what, out) = cli(&["status", &id, "--json"]);
        let said = text(&out);
        let done = said.contains("\"completed\"");
        seen.push((what, said));
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} did not complete: {:?}",
            seen.last()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for args in [
        &["queues", "--json"][..],
        &["workers", "--json"],
        &["dlq", "list"],
        &["schedule", "list"],
        &["cancel", &id],
    ] {
        let (what, out) = cli(args);
        seen.push((what, text(&out)));
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        for addr in [&worker_http, &scheduler_http] {
            let (status, body) = http_get(addr, path).await;
            seen.push((format!("GET {addr}{path} ({status})"), body));
        }
    }
    for path in [
        "/api/overview",
        "/api/queues",
        "/api/workers",
        "/api/dead",
        "/api/schedules",
    ] {
        // On loopback without a token, a request naming a loopback Host is let in.
        let (status, body) = http_get(&scheduler_http, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        seen.push((format!("GET {path}"), body));
    }
    let (status, body) = http_get(&scheduler_http, &format!("/api/jobs/{id}")).await;
    assert_eq!(status, 200, "{body}");
    seen.push(("GET /api/jobs/ID".into(), body));
    drop(worker);
    drop(scheduler);
    for log in &logs {
        let text = std::fs::read_to_string(log).expect("the log");
        assert!(
            text.lines().count() > 5,
            "{} logged little:\n{text}",
            log.display()
        );
        seen.push((log.display().to_string(), text));
    }
    for (what, said) in &seen {
        assert!(
            !said.contains(CANARY),
            "{what} showed the password:\n{said}"
        );
    }
    println!(
        "secrets: a fleet on canary passwords: {} outputs, responses and logs, none showed it",
        seen.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
    let config = jobfleet_testkit::shared_config("unused");
    let mut config = config;
    config.namespace = namespace;
    if let Ok(backends) = jobfleet_connect::connect(&config).await {
        let _ = backends
            .broker
            .delete_routes(&["default".to_string()])
            .await;
        let _ = backends.store.purge().await;
        backends.broker.close().await;
    }
}
