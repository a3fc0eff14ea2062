//! `amqps://` and `rediss://` against real TLS listeners: a RabbitMQ node and a Redis
//! server of the test's own (`jobfleet_testkit::RedisServer`), started with
//! certificates signed by a throwaway CA (made with the `openssl` command). With the CA
//! trusted (`SSL_CERT_FILE`, which both clients' trust stores honour), `jobfleet
//! enqueue`, a `jobfleet worker` process and `jobfleet status` run a job end to end over
//! TLS; without it, each connection is refused for the certificate, saying so.
//!
//! The RabbitMQ node is a second node beside the shared one (its own name, ports, data
//! and log directories), started from Debian's `/usr/lib/rabbitmq/bin/rabbitmq-server`
//! and stopped with `rabbitmqctl` at the end; it takes about 8 s to start here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use jobfleet_testkit::free_addr;
use jobfleet_testkit::{RedisServer, VOLATILE};
use support::Process;

mod support;

const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port")
}

fn wait_for_port(port: u16, within: Duration, what: &str, log: &Path) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within {within:?}; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for `localhost` and 127.0.0.1 that it signed.
struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    fn make(dir: &Path) -> Self {
        let openssl = |args: &[&str]| {
            let mut cmd = Command::new("openssl");
            cmd.args(args).current_dir(dir);
            run_ok(&mut cmd, "openssl (apt-get install openssl)");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=jobfleet-test-ca",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write ext.cnf");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// A Redis of the test's own that speaks TLS on `port` (and plain text on another, which
/// only its readiness check uses), keeping nothing on disk.
fn redis_tls(certs: &Certificates, port: u16) -> RedisServer {
    let (cert, key, ca) = (
        certs.path("server.pem"),
        certs.path("server.key"),
        certs.path("ca.pem"),
    );
    let port = port.to_string();
    let mut args = vec![
        "--tls-port",
        port.as_str(),
        "--tls-cert-file",
        cert.as_str(),
        "--tls-key-file",
        key.as_str(),
        "--tls-ca-cert-file",
        ca.as_str(),
        "--tls-auth-clients",
        "no",
    ];
    args.extend_from_slice(VOLATILE);
    RedisServer::start(&args)
}

fn rabbitmq_tls(certs: &Certificates, port: u16, dist_port: u16) -> Process {
    assert!(
        Path::new(RABBITMQ_SERVER).exists(),
        "{RABBITMQ_SERVER} is missing: install Debian's rabbitmq-server"
    );
    let dir = &certs.dir;
    let node = format!("jobfleet-tls-{port}@localhost");
    std::fs::write(
        dir.join("rabbitmq.conf"),
        format!(
            "listeners.tcp = none\nlisteners.ssl.default = {port}\n\
             ssl_options.cacertfile = {}\nssl_options.certfile = {}\n\
             ssl_options.keyfile = {}\nssl_options.verify = verify_none\n\
             ssl_options.fail_if_no_peer_cert = false\n",
            certs.path("ca.pem"),
            certs.path("server.pem"),
            certs.path("server.key")
        ),
    )
    .expect("write rabbitmq.conf");
    std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("write enabled_plugins");
    let log = dir.join("rabbitmq.out");
    let out = std::fs::File::create(&log).expect("log file");
    let child = Command::new(RABBITMQ_SERVER)
        .current_dir(dir)
        .env("RABBITMQ_NODENAME", &node)
        .env("RABBITMQ_DIST_PORT", dist_port.to_string())
        .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
        .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", dir.join("log"))
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
        .env("RABBITMQ_PID_FILE", dir.join("rabbitmq.pid"))
        .stdout(out.try_clone().expect("log handle"))
        .stderr(out)
        .spawn()
        .expect("rabbitmq-server runs");
    let mut stop = Command::new("rabbitmqctl");
    stop.args(["-n", &node, "stop"]);
    let server = Process::with_stop(child, stop);
    wait_for_port(
        port,
        Duration::from_secs(90),
        "a RabbitMQ node with TLS",
        &log,
    );
    server
}

/// `jobfleet <args>` on the TLS services, trusting `ca` (or the system's store if `None`).
fn jobfleet(broker: &str, store: &str, ca: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jobfleet"));
    cmd.args(args)
        .env_remove("JOBFLEET_CONFIG")
        .env_remove("RUST_LOG")
        .env("JOBFLEET_BROKER", broker)
        .env("JOBFLEET_STORE", store)
        .env("JOBFLEET_NAMESPACE", "tls-test")
        .env("JOBFLEET_REDIS__REQUIRE_PERSISTENCE", "false")
        .stdin(Stdio::null());
    match ca {
        Some(ca) => cmd.env("SSL_CERT_FILE", ca),
        None => cmd.env("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"),
    };
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_job_runs_over_amqps_and_rediss_and_an_untrusted_certificate_is_refused() {
    let dir = std::env::temp_dir().join(format!("jobfleet-tls-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let certs = Certificates::make(&dir);
    let (redis_port, amqps_port, dist_port) = (
        port_of(&free_addr()),
        port_of(&free_addr()),
        port_of(&free_addr()),
    );
    let _redis = redis_tls(&certs, redis_port);
    let _rabbitmq = rabbitmq_tls(&certs, amqps_port, dist_port);
    let broker = format!("amqps://guest:guest@localhost:{amqps_port}/%2f");
    let store = format!("rediss://localhost:{redis_port}/");
    let ca = certs.path("ca.pem");

    // Trusted: enqueue, a worker runs the job, status reads it back, all over TLS.
    let out = jobfleet(
        &broker,
        &store,
        Some(&ca),
        &[
            "enqueue",
            "--queue",
            "default",
            "--kind",
            "echo",
            "--payload",
            r#"{"over":"tls"}"#,
        ],
    )
    .output()
    .expect("run jobfleet enqueue");
    assert!(out.status.success(), "enqueue over TLS: {}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut worker = Process::new(
        jobfleet(&broker, &store, Some(&ca), &["worker"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run jobfleet worker"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let out = jobfleet(&broker, &store, Some(&ca), &["status", &id, "--json"])
            .output()
            .expect("run jobfleet status");
        let said = text(&out);
        if said.contains("\"completed\"") || Instant::now() > deadline {
            break said;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        status.contains("\"completed\""),
        "job {id} over TLS: {status}"
    );
    assert!(
        worker.child.try_wait().expect("wait").is_none(),
        "the worker kept running"
    );
    drop(worker);

    // Untrusted (the system's store only): each client refuses the certificate.
    let plain_redis = jobfleet_testkit::redis_url();
    let plain_amqp = jobfleet_testkit::amqp_url();
    for (broker, store, which) in [
        (broker.as_str(), plain_redis.as_str(), "broker"),
        (plain_amqp.as_str(), store.as_str(), "store"),
    ] {
        let out = jobfleet(broker, store, None, &["queues"])
            .output()
            .expect("run");
        let said = text(&out);
        assert!(
            !out.status.success(),
            "{which}: an untrusted certificate was accepted"
        );
        assert!(
            said.contains(&format!("cannot connect to the {which}"))
                && said.contains("certificate"),
            "{which}: {said}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
