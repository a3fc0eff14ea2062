//! [`RabbitCluster`]: RabbitMQ nodes of a test's own, joined into one cluster on loopback,
//! for checks that kill, restart and look inside nodes, which the shared RabbitMQ
//! (`TEST_AMQP_URL`, node `rabbit@…` on 5672) must never be, and which it leaves alone.
//!
//! Each node is Debian's `/usr/lib/rabbitmq/bin/rabbitmq-server` (the script itself, not
//! `/usr/sbin`'s wrapper that switches to the `rabbitmq` user and its cookie) with its own
//! `RABBITMQ_NODENAME` (`jf-<pid>-<tag>-<i>@localhost`), AMQP listener (a free loopback
//! port, in its own `rabbitmq.conf`), `RABBITMQ_DIST_PORT`, data (`RABBITMQ_MNESIA_BASE`),
//! logs and pid file under one temp directory. Every node and every `rabbitmqctl` call
//! runs with `HOME` pointed at a directory there holding the cluster's `.erlang.cookie`
//! (mode 0400), so they share one cookie that no other node has. The nodes register with
//! the machine's one epmd (4369) under names of their own, beside the shared node. Node 1
//! starts the cluster; the others `stop_app`, `join_cluster` and `start_app`; the cluster
//! is ready when node 1 counts every node running (`rabbit_nodes:all_running()`). One
//! node with a `rabbitmq.conf` of the test's ([`RabbitCluster::start_with`]) is a
//! RabbitMQ of the test's own, as the TLS test (`cli/tests/tls.rs`) uses.
//!
//! **Cost, measured on the 2-core test machine** (shared with builds): the nodes boot in
//! parallel in 3–10 s, each join (`stop_app`, `join_cluster`, `start_app`) takes about
//! 8 s, so a 3-node cluster is ready in 20–28 s; a node killed with `kill -9` and started
//! again is back in the cluster in about 7 s. Start one cluster per test binary, not one
//! per test.
//!
//! Dropping the cluster stops every node (`rabbitmqctl stop`, all at once), `kill -9`s
//! what is left and removes the directory, whether the test passed or panicked.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The server script (the Debian package's; not the `/usr/sbin` wrapper).
const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// The CLI next to it.
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";
/// What to tell someone whose machine has no RabbitMQ.
pub const HOW_TO_INSTALL_RABBITMQ: &str = "this test starts RabbitMQ nodes of its own from \
    /usr/lib/rabbitmq/bin/rabbitmq-server and it is missing: install Debian's package \
    (`apt-get install rabbitmq-server`, or `scripts/services.sh up rabbitmq`, which does)";
/// How long a node may take to boot, or to come back into the cluster.
const BOOT_WITHIN: Duration = Duration::from_secs(120);

/// One node of a [`RabbitCluster`].
pub struct RabbitNode {
    /// The Erlang node name, `jf-…@localhost`.
    pub name: String,
    /// Its AMQP port on 127.0.0.1.
    pub port: u16,
    dist_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// A RabbitMQ cluster of a test's own (see the module).
pub struct RabbitCluster {
    /// The nodes, in the order of [`RabbitCluster::url`].
    pub nodes: Vec<RabbitNode>,
    dir: PathBuf,
    home: PathBuf,
}

impl RabbitCluster {
    /// Starts `size` nodes, joins them into one cluster and waits until every node runs.
    /// Panics with how to install RabbitMQ if it is missing, or with a node's log if it
    /// does not come up.
    pub fn start(size: usize) -> Self {
        // loopback_users: guest may log in (only over loopback, which all of this is).
        Self::start_with(size, |port| {
            format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n")
        })
    }

    /// [`RabbitCluster::start`] with each node's `rabbitmq.conf` made by `conf` from the
    /// node's AMQP port (e.g. a TLS listener on it and no plain one). One node is a
    /// RabbitMQ of the test's own, beside the shared one.
    pub fn start_with(size: usize, conf: impl Fn(u16) -> String) -> Self {
        assert!(Path::new(SERVER).exists(), "{HOW_TO_INSTALL_RABBITMQ}");
        let dir = std::env::temp_dir().join(format!("jobfleet-rmq-{}", uuid::Uuid::now_v7()));
        let home = dir.join("home");
        std::fs::create_dir_all(&home).expect("create the cluster's directory");
        write_cookie(&home);
        let tag = &uuid::Uuid::now_v7().simple().to_string()[24..];
        let nodes = (1..=size)
            .map(|i| {
                RabbitNode::new(
                    &dir,
                    format!("jf-{}-{tag}-{i}@localhost", std::process::id()),
                    &conf,
                )
            })
            .collect();
        let mut cluster = Self { nodes, dir, home };
        for i in 0..size {
            cluster.spawn(i);
        }
        for i in 0..size {
            cluster.await_boot(i);
        }
        let seed = cluster.nodes[0].name.clone();
        for i in 1..size {
            cluster.ctl_ok(i, &["stop_app"]);
            cluster.ctl_ok(i, &["join_cluster", &seed]);
            cluster.ctl_ok(i, &["start_app"]);
        }
        cluster.await_running(0, size);
        cluster
    }

    /// The `broker` value naming every node: `amqp://guest:guest@127.0.0.1:P1/%2f,…`
    /// (credentials on the first node only: the others take them).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let user = if i == 0 { "guest:guest@" } else { "" };
                format!("amqp://{user}127.0.0.1:{}/%2f", n.port)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The URL of node `i` alone.
    pub fn node_url(&self, i: usize) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.nodes[i].port)
    }

    /// `kill -9` of node `i`'s Erlang VM: no shutdown, as when its machine dies.
    pub fn kill(&mut self, i: usize) {
        if let Some(pid) = self.nodes[i].os_pid() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops node `i` cleanly (`rabbitmqctl stop`), as a rolling restart does.
    pub fn stop(&mut self, i: usize) {
        self.ctl_ok(i, &["stop"]);
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.wait();
        }
    }

    /// Starts node `i` again (same name, ports and data) and waits until the cluster
    /// shows it running.
    pub fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].child.is_none(), "node {i} is still running");
        self.spawn(i);
        self.await_boot(i);
        let others = (0..self.nodes.len()).find(|&j| j != i).unwrap_or(i);
        self.await_running(others, self.nodes.len());
    }

    /// Every queue of vhost `/` and the index of the node that leads it, asked of node
    /// `via`: `None` for a queue without a leader now, or that is not a quorum queue.
    pub fn queue_leaders(&self, via: usize) -> Vec<(String, Option<usize>)> {
        let out = self.ctl(
            via,
            &["list_queues", "-q", "--no-table-headers", "name", "leader"],
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut cols = line.split('\t');
                let queue = cols.next()?.trim().to_string();
                let leader = cols.next().unwrap_or("").trim();
                Some((queue, self.nodes.iter().position(|n| n.name == leader)))
            })
            .collect()
    }

    /// The index of the node that leads quorum queue `queue` (see
    /// [`RabbitCluster::queue_leaders`]).
    pub fn leader_of(&self, via: usize, queue: &str) -> Option<usize> {
        self.queue_leaders(via)
            .into_iter()
            .find_map(|(q, leader)| (q == queue).then_some(leader)?)
    }

    /// How many client connections each node holds, asked of node `via` (the cluster's
    /// view): a connection's name ends with the port of the node it is on.
    pub fn connections(&self, via: usize) -> Vec<usize> {
        let out = self.ctl(
            via,
            &["list_connections", "-q", "--no-table-headers", "name"],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        self.nodes
            .iter()
            .map(|n| {
                let suffix = format!(":{}", n.port);
                text.lines().filter(|l| l.trim().ends_with(&suffix)).count()
            })
            .collect()
    }

    /// `rabbitmqctl -n <node i> args…`, with the cluster's cookie.
    pub fn ctl(&self, i: usize, args: &[&str]) -> Output {
        Command::new(CTL)
            .env("HOME", &self.home)
            .args(["-n", &self.nodes[i].name])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {CTL} ({e}): {HOW_TO_INSTALL_RABBITMQ}"))
    }

    fn ctl_ok(&self, i: usize, args: &[&str]) {
        let out = self.ctl(i, args);
        assert!(
            out.status.success(),
            "rabbitmqctl -n {} {}: {}{}\nits log:\n{}",
            self.nodes[i].name,
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.nodes[i].log_tail()
        );
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::File::create(node.dir.join("server.out")).expect("log file");
        let child = Command::new(SERVER)
            .current_dir(&node.dir)
            .env("HOME", &self.home)
            .env("RABBITMQ_NODENAME", &node.name)
            // The listener is the config file's (no RABBITMQ_NODE_PORT: the server turns
            // it into a plain listener that would override a TLS-only file).
            .env("RABBITMQ_DIST_PORT", node.dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", node.dir.join("rabbitmq"))
            .env("RABBITMQ_MNESIA_BASE", node.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", node.dir.join("log"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                node.dir.join("enabled_plugins"),
            )
            .env("RABBITMQ_PID_FILE", node.pid_file())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {SERVER} ({e}): {HOW_TO_INSTALL_RABBITMQ}"));
        node.child = Some(child);
    }

    /// Waits until node `i`'s RabbitMQ application runs.
    fn await_boot(&self, i: usize) {
        let deadline = Instant::now() + BOOT_WITHIN;
        loop {
            if self
                .ctl(i, &["await_startup", "--timeout", "10"])
                .status
                .success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "RabbitMQ node {} did not start within {BOOT_WITHIN:?}; its log:\n{}",
                self.nodes[i].name,
                self.nodes[i].log_tail()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Waits until node `via` sees `count` nodes running in the cluster.
    fn await_running(&self, via: usize, count: usize) {
        let deadline = Instant::now() + BOOT_WITHIN;
        loop {
            let out = self.ctl(via, &["eval", "length(rabbit_nodes:all_running())."]);
            let running = String::from_utf8_lossy(&out.stdout).trim().parse::<usize>();
            if running == Ok(count) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not show {count} running nodes within {BOOT_WITHIN:?} \
                 (last answer: {running:?}); cluster_status: {}",
                String::from_utf8_lossy(&self.ctl(via, &["cluster_status"]).stdout)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl RabbitNode {
    fn new(cluster_dir: &Path, name: String, conf: &impl Fn(u16) -> String) -> Self {
        let dir = cluster_dir.join(name.split('@').next().unwrap_or(&name));
        std::fs::create_dir_all(&dir).expect("create the node's directory");
        let port = free_port();
        std::fs::write(dir.join("rabbitmq.conf"), conf(port)).expect("write rabbitmq.conf");
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("write enabled_plugins");
        Self {
            name,
            port,
            dist_port: free_port(),
            dir,
            child: None,
        }
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("rabbitmq.pid")
    }

    /// The OS pid of the node's Erlang VM (the pid file the server writes), if that
    /// process still runs this node: a stale file's pid may belong to someone else now.
    fn os_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // The name is in the VM's environment (RABBITMQ_NODENAME), not its command line.
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let wanted = format!("RABBITMQ_NODENAME={}", self.name);
        environ
            .split(|&b| b == 0)
            .any(|var| var == wanted.as_bytes())
            .then_some(pid)
    }

    /// The end of the node's server output and main log, for a failure message.
    fn log_tail(&self) -> String {
        let mut text = std::fs::read_to_string(self.dir.join("server.out")).unwrap_or_default();
        let log = self.dir.join("log").join(format!("{}.log", self.name));
        text.push_str(&std::fs::read_to_string(log).unwrap_or_default());
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text[start..].to_string()
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        // Every node is asked to stop at once; whatever did not is killed.
        let stops: Vec<_> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .filter_map(|n| {
                Command::new(CTL)
                    .env("HOME", &self.home)
                    .args(["-n", &n.name, "stop", "--timeout", "20"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .ok()
            })
            .collect();
        for mut stop in stops {
            let _ = stop.wait();
        }
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Erlang cookie every node and CLI call of the cluster shares, readable only by
/// its owner (Erlang refuses a cookie file others can read).
fn write_cookie(home: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let cookie = home.join(".erlang.cookie");
    let value = format!("JOBFLEETTEST{}", uuid::Uuid::now_v7().simple()).to_uppercase();
    std::fs::write(&cookie, value).expect("write the Erlang cookie");
    std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400))
        .expect("make the Erlang cookie private");
}

fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    probe.local_addr().expect("its address").port()
}
