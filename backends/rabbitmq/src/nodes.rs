//! The nodes a broker may connect to: the `broker` value, one URL or a cluster's URLs
//! separated by commas, read into one AMQP URI per node, and the order they are tried in.
//!
//! **The list.** `amqp://u:p@n1:5672/%2f,amqp://n2:5672/%2f,amqp://n3:5672/%2f`: a comma
//! starts a new node only where a scheme and `://` follow it
//! ([`jobfleet_common::redact::url_list`]), so a comma in a password or a query stays in
//! its URL. A node written without user info takes the first node's user and password
//! (credentials given once); one with its own uses those. Every node must name the same
//! virtual host: the list is one cluster, and two vhosts would be two sets of queues.
//!
//! **The order.** A process starts at a node picked at random and goes round the list
//! from there; when its connection is lost it starts again at the node after the one it
//! lost. Random starts spread a fleet's connections (and the work of their channels) over
//! the cluster without anyone writing a different list per process, and moving on first
//! keeps a process from waiting on the node that just failed.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use lapin::uri::AMQPUri;

use jobfleet_common::broker::BrokerError;
use jobfleet_common::redact::{redact, url_list};

/// One node of the list.
pub(super) struct Node {
    /// What lapin connects with.
    pub uri: AMQPUri,
    /// The node's URL with its password masked, for logs and errors.
    pub shown: String,
    /// `host:port`, the `node` of log lines and of the connected-node gauge.
    pub name: String,
}

/// The nodes of `value` (one URL or a list), each with `frame_max` defaulting to
/// `frame_max`. An entry that cannot be used is refused naming it (password masked).
pub(super) fn parse(value: &str, frame_max: u32) -> Result<Vec<Node>, BrokerError> {
    let mut nodes: Vec<Node> = Vec::new();
    for entry in url_list(value) {
        let node = parse_one(entry, frame_max, nodes.first())?;
        nodes.push(node);
    }
    Ok(nodes)
}

fn parse_one(entry: &str, frame_max: u32, first: Option<&Node>) -> Result<Node, BrokerError> {
    let shown = redact(entry);
    let refused = |why: &str| BrokerError::Invalid(format!("broker node {shown}: {why}"));
    if !(entry.starts_with("amqp://") || entry.starts_with("amqps://")) {
        return Err(refused("not an amqp:// or amqps:// URL"));
    }
    // The parser's message may quote the URL, password included: do not pass it on.
    let mut uri: AMQPUri = entry.parse().map_err(|_| refused("not a valid AMQP URL"))?;
    uri.query.frame_max.get_or_insert(frame_max);
    if let Some(first) = first {
        if !has_user_info(entry) {
            uri.authority.userinfo = first.uri.authority.userinfo.clone();
        }
        if uri.vhost != first.uri.vhost {
            return Err(refused(&format!(
                "virtual host {:?} differs from the first node's {:?}; every node of the list \
                 must name the same one",
                uri.vhost, first.uri.vhost
            )));
        }
    }
    let name = format!("{}:{}", uri.authority.host, uri.authority.port);
    Ok(Node { uri, shown, name })
}

/// Whether the URL's authority carries `user[:password]@`.
fn has_user_info(entry: &str) -> bool {
    let rest = entry.split_once("://").map_or(entry, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.contains('@')
}

/// Where a new process starts in a list of `len` nodes: at random, so a fleet's
/// connections spread over the cluster.
pub(super) fn random_start(len: usize) -> usize {
    if len <= 1 {
        return 0;
    }
    // The standard library's hasher keys are random per process: enough to spread
    // starts, without a dependency for it.
    let random = RandomState::new().build_hasher().finish();
    (random % len as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_is_one_node() {
        let nodes = parse("amqp://guest:guest@127.0.0.1:5672/%2f", 4096).expect("valid");
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].name, "127.0.0.1:5672");
        assert_eq!(nodes[0].uri.query.frame_max, Some(4096));
        assert_eq!(nodes[0].shown, "amqp://guest:***@127.0.0.1:5672/%2f");
    }

    #[test]
    fn credentials_given_once_reach_every_node_and_per_node_ones_win() {
        let nodes = parse(
            "amqp://jobs:p,w@a:5672/prod,amqp://b:5673/prod,amqps://ops:x@c/prod?frame_max=8192",
            4096,
        )
        .expect("valid");
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a:5672", "b:5673", "c:5671"]);
        assert_eq!(nodes[1].uri.authority.userinfo.username, "jobs");
        assert_eq!(nodes[1].uri.authority.userinfo.password, "p,w");
        assert_eq!(nodes[2].uri.authority.userinfo.username, "ops");
        assert_eq!(nodes[2].uri.query.frame_max, Some(8192));
        assert!(nodes.iter().all(|n| !n.shown.contains("p,w")));
    }

    #[test]
    fn a_bad_node_is_refused_by_name_without_its_password() {
        for (value, names) in [
            ("amqp://u:S3cret@a/v1,amqp://b/v2", "amqp://b/v2"),
            (
                "amqp://u:S3cret@a,amqp://u:S3cret@b:port",
                "amqp://u:***@b:port",
            ),
            ("amqp://u:S3cret@a,http://b", "http://b"),
        ] {
            let e = match parse(value, 4096) {
                Ok(_) => panic!("{value} was accepted"),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(names), "{value}: {e}");
            assert!(!e.contains("S3cret"), "{e}");
        }
    }

    #[test]
    fn starts_stay_in_the_list() {
        assert_eq!(random_start(1), 0);
        assert!((0..50).all(|_| random_start(3) < 3));
    }
}
