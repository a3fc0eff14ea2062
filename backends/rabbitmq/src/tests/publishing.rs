//! Publishing: confirms, headers, declaring on the way, batches, concurrency, names.

use super::*;

#[tokio::test]
async fn round_trip_keeps_body_content_type_and_reason() {
    let t = TestBroker::new(&["work"]).await;
    assert_eq!(t.name(), "rabbitmq");
    let mut dead = message(&Route::Dead, "garbage", 0);
    dead.content_type = Some("application/octet-stream".into());
    dead.reason = Some("undecodable: not a jobfleet envelope".into());
    t.publish(&ready("work"), &["hello"], 3).await;
    t.broker.publish(vec![dead]).await.expect("publish dead");
    assert_eq!(t.ready(&ready("work")).await, 1);

    let mut work = t.consume(&ready("work"), 10).await.expect("consume work");
    let d = next(&mut work).await;
    assert_eq!(d.body, Bytes::from("hello"));
    assert_eq!(d.content_type.as_deref(), Some("text/plain"));
    assert_eq!(d.reason, None);
    assert!(!d.redelivered);
    d.ack().await.expect("ack");

    let mut dead = t.consume(&Route::Dead, 10).await.expect("consume dead");
    let d = next(&mut dead).await;
    assert_eq!(d.body, Bytes::from("garbage"));
    assert_eq!(d.content_type.as_deref(), Some("application/octet-stream"));
    assert_eq!(
        d.reason.as_deref(),
        Some("undecodable: not a jobfleet envelope")
    );
    d.ack().await.expect("ack");
    assert_quiet(&mut work).await;
    assert_eq!(t.ready(&ready("work")).await, 0);
}

#[tokio::test]
async fn connections_use_16_kib_frames_unless_the_url_sets_them_and_larger_bodies_span_frames() {
    let t = TestBroker::new(&["big"]).await;
    let session = t.shared.session(Patience::Once).await.expect("session");
    assert_eq!(session.frame_max(), FRAME_MAX);
    // A body of 20 frames and then some goes out and comes back whole.
    let body: String = (0..FRAME_MAX as usize * 20 + 7)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    t.publish(&ready("big"), &[&body], 3).await;
    let mut big = t.consume(&ready("big"), 10).await.expect("consume");
    let d = next(&mut big).await;
    assert_eq!(d.body, Bytes::from(body));
    d.ack().await.expect("ack");

    let sep = if url().contains('?') { '&' } else { '?' };
    let own = format!("{}{sep}frame_max=65536", url());
    let namespace = format!("jf-test-{}", uuid::Uuid::now_v7().simple());
    let broker = RabbitBroker::connect(&own, &namespace)
        .await
        .expect("connect");
    let session = broker
        .shared
        .session(Patience::Once)
        .await
        .expect("session");
    assert_eq!(session.frame_max(), 65_536, "the URL's frame_max is kept");
}

#[tokio::test]
async fn publish_declares_a_route_nobody_declared() {
    let t = TestBroker::new(&["later"]).await;
    // `later` was declared by TestBroker::new; drop it from the cache by deleting it.
    let queue = t.shared.topology.queue(&ready("later")).expect("name");
    let session = t.shared.session(Patience::Call).await.expect("session");
    let channel = session.channel().await.expect("channel");
    let options = lapin::options::QueueDeleteOptions::default();
    channel
        .queue_delete(queue.name.clone(), options)
        .await
        .expect("delete");
    t.shared.topology.forget(queue.name.as_str());

    t.publish(&ready("later"), &["a", "b"], 0).await;
    assert_eq!(t.ready(&ready("later")).await, 2);
}

#[tokio::test]
async fn a_deleted_queue_is_not_accepted_then_declared_again() {
    let t = TestBroker::new(&["gone"]).await;
    let queue = t.shared.topology.queue(&ready("gone")).expect("name");
    let channel = t
        .shared
        .session(Patience::Call)
        .await
        .expect("session")
        .channel()
        .await;
    let options = lapin::options::QueueDeleteOptions::default();
    channel
        .expect("channel")
        .queue_delete(queue.name.clone(), options)
        .await
        .expect("delete");

    // The cache still says declared: the mandatory publish comes back unroutable.
    let err = t
        .broker
        .publish(vec![message(&ready("gone"), "x", 0)])
        .await;
    assert!(matches!(err, Err(BrokerError::NotAccepted(_))), "{err:?}");
    t.publish(&ready("gone"), &["y"], 0).await;
    assert_eq!(t.ready(&ready("gone")).await, 1);
}

#[tokio::test]
async fn a_batch_of_5000_is_confirmed() {
    let t = TestBroker::new(&["bulk"]).await;
    let batch: Vec<Message> = (0..5000)
        .map(|i| message(&ready("bulk"), &format!("m{i}"), (i % 10) as u8))
        .collect();
    let started = std::time::Instant::now();
    t.broker.publish(batch).await.expect("publish 5000");
    eprintln!("5000 confirmed in {:?}", started.elapsed());
    assert_eq!(t.ready(&ready("bulk")).await, 5000);
}

#[tokio::test]
async fn concurrent_publishers_all_land() {
    let t = TestBroker::new(&["many"]).await;
    let publishers = (0..8).map(|p| {
        let broker = t.broker.clone();
        tokio::spawn(async move {
            let batch: Vec<Message> = (0..300)
                .map(|i| message(&ready("many"), &format!("{p}-{i}"), 0))
                .collect();
            broker.publish(batch).await
        })
    });
    for result in futures::future::join_all(publishers).await {
        result.expect("task").expect("publish");
    }
    assert_eq!(t.ready(&ready("many")).await, 8 * 300);
}

#[test]
fn queue_names_follow_the_namespace() {
    let topology = topology::Topology::new("ns");
    let name = |r: &Route| topology.queue(r).expect("name");
    assert_eq!(name(&ready("email")).name.as_str(), "ns.q.email");
    assert!(name(&ready("email")).prioritised);
    assert_eq!(name(&Route::Delayed).name.as_str(), "ns.delayed");
    assert_eq!(name(&Route::Failed).name.as_str(), "ns.failed");
    assert!(!name(&Route::Dead).prioritised);
    assert!(topology.queue(&ready(&"x".repeat(300))).is_err());
}
