//! [`RedisSentinels`]: a Redis primary, two replicas and three Redis Sentinels of a test's
//! own, on free loopback ports with their own directories, every data node with an
//! append-only file, for tests of the store across a failover.
//!
//! The data nodes are [`RedisServer`]s (replicas with `--replicaof`); each sentinel is a
//! `redis-server <conf> --sentinel` with its own `sentinel.conf` (`sentinel monitor
//! <service> 127.0.0.1 <primary port> 2`, `down-after-milliseconds` 1000, a 5 s
//! failover timeout), which the sentinel rewrites as it learns the topology. Everything is
//! killed and removed when the value drops, whether the test passes or panics. The shared
//! test Redis is never touched.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::{RedisServer, HOW_TO_INSTALL};

/// The name the sentinels monitor.
pub const SERVICE: &str = "mymaster";

/// A primary, two replicas and three sentinels.
pub struct RedisSentinels {
    /// The data nodes; the first started as the primary.
    pub nodes: Vec<RedisServer>,
    sentinels: Vec<Sentinel>,
    /// How long starting everything took, until the sentinels saw both replicas.
    pub started_in: Duration,
}

/// One `redis-server --sentinel` process.
struct Sentinel {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl RedisSentinels {
    /// Starts the primary, its two replicas (in sync) and three sentinels, and waits until
    /// every sentinel knows both replicas and the other sentinels.
    pub fn start() -> Self {
        let begun = Instant::now();
        let aof = ["--appendonly", "yes", "--appendfsync", "everysec"];
        let primary = RedisServer::start(&aof);
        let replica_of = primary.port.to_string();
        let mut args = aof.to_vec();
        args.extend(["--replicaof", "127.0.0.1", &replica_of]);
        let nodes = vec![
            primary,
            RedisServer::start(&args),
            RedisServer::start(&args),
        ];
        let sentinels = (0..3).map(|_| Sentinel::start(nodes[0].port)).collect();
        let mut cluster = Self {
            nodes,
            sentinels,
            started_in: Duration::ZERO,
        };
        cluster.wait_until_known(Duration::from_secs(30));
        cluster.started_in = begun.elapsed();
        cluster
    }

    /// The store URL: `redis+sentinel://` with the three sentinels.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{SERVICE}/0", hosts.join(","))
    }

    /// The port of the primary the sentinels name now (asking each in turn).
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let (_, port): (String, u16) = s
                .ask(
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(SERVICE),
                )
                .ok()?;
            Some(port)
        })
    }

    /// The data node listening on `port`.
    pub fn node(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no data node on port {port}"))
    }

    /// The data nodes other than the one on `port`.
    pub fn others(&self, port: u16) -> Vec<u16> {
        self.nodes
            .iter()
            .map(|n| n.port)
            .filter(|p| *p != port)
            .collect()
    }

    /// `kill -9` of the current primary; returns its port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port().expect("the sentinels name a primary");
        self.node(port).kill();
        port
    }

    /// Waits until the sentinels name a primary other than `old` that says it is one
    /// (`ROLE` master); returns its port and how long that took.
    pub fn wait_for_new_primary(&self, old: u16, timeout: Duration) -> (u16, Duration) {
        let begun = Instant::now();
        while begun.elapsed() < timeout {
            if let Some(port) = self.primary_port().filter(|p| *p != old) {
                if role(port).as_deref() == Some("master") {
                    return (port, begun.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no replica was promoted within {timeout:?} after the primary on port {old} \
             died; sentinel logs:\n{}",
            self.sentinel_logs()
        );
    }

    /// Runs `cmd` on the data node on `port` (a synchronous connection of its own).
    pub fn on_node<T: redis::FromRedisValue>(&self, port: u16, cmd: &redis::Cmd) -> T {
        let client =
            redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("a data node's URL");
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("cannot reach the data node on port {port}: {e}"));
        cmd.query(&mut conn)
            .unwrap_or_else(|e| panic!("data node on port {port}: {e}"))
    }

    /// Every sentinel's log, for a failure message.
    pub fn sentinel_logs(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| {
                let log = std::fs::read_to_string(s.dir.join("sentinel.log")).unwrap_or_default();
                format!("--- sentinel {}:\n{log}", s.port)
            })
            .collect()
    }

    /// Waits until each sentinel counts two replicas and two other sentinels.
    fn wait_until_known(&self, timeout: Duration) {
        let begun = Instant::now();
        while begun.elapsed() < timeout {
            let ready = self.sentinels.iter().all(|s| {
                let fields: Result<Vec<String>, _> =
                    s.ask(redis::cmd("SENTINEL").arg("master").arg(SERVICE));
                let Ok(fields) = fields else { return false };
                let value = |name: &str| {
                    fields
                        .chunks(2)
                        .find(|kv| kv[0] == name)
                        .and_then(|kv| kv.get(1).cloned())
                };
                value("num-slaves").as_deref() == Some("2")
                    && value("num-other-sentinels").as_deref() == Some("2")
            });
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the sentinels did not see 2 replicas and each other within {timeout:?}:\n{}",
            self.sentinel_logs()
        );
    }
}

/// What `ROLE` says the node on `port` is, if it answers.
fn role(port: u16) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    let reply: Vec<redis::Value> = redis::cmd("ROLE").query(&mut conn).ok()?;
    redis::from_redis_value(reply.into_iter().next()?).ok()
}

impl Sentinel {
    /// A sentinel monitoring the primary on `primary`, on a free port.
    fn start(primary: u16) -> Self {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = probe.local_addr().expect("local address").port();
        drop(probe);
        let dir = std::env::temp_dir().join(format!("jobfleet-sentinel-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("create the sentinel's directory");
        let conf = dir.join("sentinel.conf");
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {dir}/sentinel.log\n\
             sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {SERVICE} 1000\n\
             sentinel failover-timeout {SERVICE} 5000\n\
             sentinel parallel-syncs {SERVICE} 2\n",
            dir = dir.display()
        );
        std::fs::write(&conf, text).expect("write sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server --sentinel ({e}): {HOW_TO_INSTALL}")
            });
        let sentinel = Self { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if sentinel.ask::<String>(&redis::cmd("PING")).is_ok() {
                return sentinel;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sentinel on port {port} did not answer PING within 20s");
    }

    /// Runs `cmd` on this sentinel.
    fn ask<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?;
        let mut conn = client.get_connection_with_timeout(Duration::from_millis(500))?;
        cmd.query(&mut conn)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
