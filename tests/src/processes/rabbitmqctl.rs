//! What the crash tests ask RabbitMQ's `rabbitmqctl` (it must be on PATH): counts AMQP
//! cannot give (unacknowledged messages, consumers), and closing connections or stopping
//! and starting the broker application as an operator or a failover would. Each call is
//! blocking and takes about a second.

use std::process::{Command, Stdio};

use jobfleet_testkit::HOW_TO_START;

/// Messages (ready plus unacknowledged) of every queue whose name starts with `prefix`.
pub fn queue_messages(prefix: &str) -> Vec<(String, u64)> {
    let out = run(&["list_queues", "--no-table-headers", "name", "messages"]);
    out.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (name, count) = (parts.next()?, parts.next()?.parse().ok()?);
            name.starts_with(prefix).then(|| (name.to_string(), count))
        })
        .collect()
}

/// Consumers of every queue whose name starts with `prefix`, summed.
pub fn consumers(prefix: &str) -> u64 {
    let out = run(&["list_queues", "--no-table-headers", "name", "consumers"]);
    out.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (name, count) = (parts.next()?, parts.next()?.parse::<u64>().ok()?);
            name.starts_with(prefix).then_some(count)
        })
        .sum()
}

/// `rabbitmqctl stop_app`: the broker closes every connection and stops accepting new
/// ones; the node and its durable queues stay. Every test using RabbitMQ is affected.
pub fn stop_app() {
    run(&["stop_app"]);
}

/// `rabbitmqctl start_app`, then waits until the broker accepts connections again.
pub fn start_app() {
    run(&["start_app"]);
    run(&["await_startup"]);
}

/// The server's ids of the client connections named `name` (the `connection_name`
/// client property).
pub fn connections_named(name: &str) -> Vec<String> {
    let needle = format!("\"{name}\"");
    let listing = run(&[
        "list_connections",
        "--no-table-headers",
        "pid",
        "client_properties",
    ]);
    listing
        .lines()
        .filter(|line| line.contains(&needle))
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Closes the connections `pids`, all at once.
pub fn close_connections(pids: &[String]) {
    let closers: Vec<_> = pids
        .iter()
        .map(|pid| {
            Command::new("rabbitmqctl")
                .args(["close_connection", pid, "test"])
                .stdout(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("run rabbitmqctl: {e}\n{HOW_TO_START}"))
        })
        .collect();
    for mut closer in closers {
        let status = closer.wait().expect("rabbitmqctl close_connection");
        // A connection that went away meanwhile is as good as closed.
        if !status.success() {
            eprintln!("rabbitmqctl close_connection: {status}");
        }
    }
}

/// Runs `rabbitmqctl` and returns its standard output; panics if it fails.
fn run(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run rabbitmqctl (it must be on PATH): {e}\n{HOW_TO_START}"));
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
