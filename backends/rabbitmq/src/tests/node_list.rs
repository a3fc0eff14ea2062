//! A `broker` list of nodes: the broker connects to a live node whatever the dead ones
//! around it, and a list where no node answers is refused naming each, passwords masked.

use super::*;

/// A loopback port nothing listens on: connecting to it is refused at once.
fn dead_node() -> String {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = probe.local_addr().expect("its address").port();
    drop(probe);
    format!("amqp://user:S3cret@127.0.0.1:{port}/%2f")
}

#[tokio::test]
async fn a_list_connects_to_its_live_node_from_any_start() {
    let live = url();
    let live_node = live
        .split_once('@')
        .map_or(live.as_str(), |(_, h)| h)
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let list = format!("{},{live},{}", dead_node(), dead_node());
    let settings = RabbitConfig::default();
    // The start is random: several connects try several orders of the dead nodes.
    for _ in 0..4 {
        let namespace = format!("jf-test-{}", uuid::Uuid::now_v7().simple());
        let broker = RabbitBroker::connect(&list, &namespace, &settings)
            .await
            .unwrap_or_else(|e| panic!("a list with a live node ({}): {e}", redact(&list)));
        assert_eq!(
            broker.shared.link.connected_node(),
            Some(live_node.as_str())
        );
        let shown = format!("{broker:?}");
        assert!(
            !shown.contains("S3cret") && !shown.contains("guest:guest"),
            "{shown}"
        );
        broker.close().await;
    }
}

#[tokio::test]
async fn a_list_without_a_live_node_names_every_node_and_no_password() {
    let list = format!("{},{}", dead_node(), dead_node());
    let err = RabbitBroker::connect(&list, "ns", &RabbitConfig::default())
        .await
        .expect_err("no node answers");
    let text = err.to_string();
    assert!(err.is_retryable(), "{err:?}");
    assert!(!text.contains("S3cret"), "{text}");
    for node in list.split(',') {
        assert!(
            text.contains(&redact(node)),
            "{text} names {}",
            redact(node)
        );
    }
}
