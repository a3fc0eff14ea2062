//! Recovery: a connection closed by the server, closing the broker, refused connections.
//!
//! A channel closed for `consumer_timeout` takes the same resume path; it is not tested
//! here because 3.10 only has the global setting, which a test would have to change for
//! every client of the server (see `consume.rs` for what was observed).

use super::*;

#[tokio::test]
async fn publish_and_consume_resume_after_the_connection_is_closed() {
    let t = TestBroker::new(&["survive"]).await;
    t.publish(&ready("survive"), &["before"], 0).await;
    let mut consumer = t.consume(&ready("survive"), 5).await.expect("consume");
    let held = next(&mut consumer).await;
    assert_eq!(held.body, Bytes::from("before"));

    t.force_close_connection().await;
    // The stream notices the loss first: one error item, then it resumes.
    match tokio::time::timeout(PATIENCE, consumer.next()).await {
        Ok(Some(Err(BrokerError::Connection(_)))) => {}
        other => panic!(
            "expected a connection error item, got {:?}",
            other.map(|o| o.is_some())
        ),
    }
    // The lost channel's delivery cannot be settled; the server requeued it.
    let ack = held.ack().await;
    assert!(matches!(ack, Err(BrokerError::Connection(_))), "{ack:?}");

    t.publish(&ready("survive"), &["after"], 0).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let (d, _) = next_after_loss(&mut consumer).await;
        got.push((String::from_utf8_lossy(&d.body).into_owned(), d.redelivered));
        d.ack().await.expect("ack on the new channel");
    }
    got.sort();
    assert_eq!(
        got,
        [("after".to_string(), false), ("before".to_string(), true)]
    );
    assert_eq!(t.ready(&ready("survive")).await, 0);
}

#[tokio::test]
async fn a_publish_right_after_a_loss_reconnects() {
    let t = TestBroker::new(&["again"]).await;
    t.publish(&ready("again"), &["1"], 0).await;
    t.force_close_connection().await;
    // Whether or not the client has seen the close yet, a retry after an error succeeds
    // and Ok means confirmed.
    let first = t
        .broker
        .publish(vec![message(&ready("again"), "2", 0)])
        .await;
    if let Err(e) = &first {
        assert!(matches!(e, BrokerError::Connection(_)), "{e:?}");
        t.publish(&ready("again"), &["2"], 0).await;
    }
    t.publish(&ready("again"), &["3"], 0).await;
    assert_eq!(t.ready(&ready("again")).await, 3);
}

#[tokio::test]
async fn closing_ends_streams_and_refuses_calls() {
    let t = TestBroker::new(&["end"]).await;
    let mut consumer = t.consume(&ready("end"), 1).await.expect("consume");
    t.close().await;
    let item = tokio::time::timeout(PATIENCE, consumer.next())
        .await
        .expect("stream ends");
    assert!(item.is_none());
    let err = t.broker.publish(vec![message(&ready("end"), "x", 0)]).await;
    assert!(matches!(err, Err(BrokerError::Closed)), "{err:?}");
}

#[tokio::test]
async fn connect_refuses_bad_urls_and_hides_the_password() {
    let err = RabbitBroker::connect("redis://127.0.0.1:6379", "ns")
        .await
        .expect_err("scheme");
    assert!(matches!(err, BrokerError::Invalid(_)), "{err:?}");
    let err = RabbitBroker::connect(&url(), "")
        .await
        .expect_err("namespace");
    assert!(matches!(err, BrokerError::Invalid(_)), "{err:?}");
    // Port 1 never has a server: the connection is refused.
    let err = RabbitBroker::connect("amqp://user:hunter2@127.0.0.1:1/%2f", "ns")
        .await
        .expect_err("refused");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(err.is_retryable(), "{err:?}");
    // A wrong password is refused by the server, and retrying will not fix it.
    let wrong = with_password(&url(), "hunter2");
    let err = RabbitBroker::connect(&wrong, "ns")
        .await
        .expect_err("wrong password");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!err.is_retryable(), "{err:?}");
}

/// `url` with its user's password replaced by `password` (guest's, if it names no user),
/// whatever user the test URL names.
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("amqp", url));
    let (user, host) = match rest.split_once('@') {
        Some((userinfo, host)) => (userinfo.split(':').next().unwrap_or("guest"), host),
        None => ("guest", rest),
    };
    format!("{scheme}://{user}:{password}@{host}")
}
