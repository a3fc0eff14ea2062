//! [`RedisServer`]: a `redis-server` of the test's own, for checks that depend on how a
//! Redis is configured (volatile, with an append-only file, CONFIG disabled, TLS) or that
//! restart or kill Redis, which the shared server (`TEST_REDIS_URL`) must never be, and
//! whose configuration no check relies on: a free loopback port, a fresh directory for its
//! files, started and `kill -9`ed on demand, and killed and removed when dropped, so it
//! never outlives its test, whether that test passes or panics. A machine without
//! `redis-server` fails the test with how to install it; nothing is skipped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to tell someone whose machine has no `redis-server`.
pub const HOW_TO_INSTALL: &str = "this test starts its own redis-server and none is on PATH: \
    install it (Debian/Ubuntu: `apt-get install redis-server`; macOS: `brew install redis`) \
    or put its directory on PATH";

/// The arguments of a server that keeps nothing on disk: no RDB snapshots, no AOF.
pub const VOLATILE: &[&str] = &["--save", "", "--appendonly", "no"];

/// A test-owned Redis server process.
pub struct RedisServer {
    /// The loopback port it listens on (kept across restarts).
    pub port: u16,
    /// Its working directory (AOF and RDB files; kept across restarts).
    pub dir: PathBuf,
    /// Extra server arguments, e.g. `["--appendonly", "yes"]` (kept across restarts).
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` with `args` on a free port in a fresh directory and waits
    /// until it answers PING. Panics with how to install it if it is missing.
    pub fn start(args: &[&str]) -> Self {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = probe.local_addr().expect("local address").port();
        drop(probe);
        let dir = std::env::temp_dir().join(format!("jobfleet-redis-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        let mut server = Self {
            port,
            dir,
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        server.restart();
        server
    }

    /// Starts a server that keeps nothing on disk ([`VOLATILE`]).
    pub fn volatile() -> Self {
        Self::start(VOLATILE)
    }

    /// The URL to connect to.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server again (same port, directory and arguments) and waits for PING.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let log = self.dir.join("redis.log");
        let child = Command::new("redis-server")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-server ({e}): {HOW_TO_INSTALL}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.pings() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        panic!(
            "redis-server on port {} did not answer PING within 20s; its log:\n{tail}",
            self.port
        );
    }

    /// `kill -9`: no shutdown save, no final fsync beyond what the settings already did.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the server answers PING (and is done loading).
    fn pings(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(500)) else {
            return false;
        };
        redis::cmd("PING")
            .query::<String>(&mut conn)
            .is_ok_and(|p| p == "PONG")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
