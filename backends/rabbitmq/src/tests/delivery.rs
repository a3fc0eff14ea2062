//! Delivery: priority order, prefetch, requeue, competing consumers, dropped streams.

use super::*;

#[tokio::test]
async fn highest_priority_is_delivered_first_fifo_within_a_level() {
    let t = TestBroker::new(&["prio"]).await;
    let levels = [0, 9, 3, 6, 3, 0, 9, 1, 6, 3];
    let batch = levels
        .iter()
        .enumerate()
        .map(|(i, &p)| message(&ready("prio"), &format!("{p}-{i}"), p))
        .collect();
    t.broker.publish(batch).await.expect("publish");

    let mut consumer = t.consume(&ready("prio"), 1).await.expect("consume");
    let mut got = Vec::new();
    for _ in 0..levels.len() {
        let d = next(&mut consumer).await;
        got.push(String::from_utf8_lossy(&d.body).into_owned());
        d.ack().await.expect("ack");
    }
    let expected = [
        "9-1", "9-6", "6-3", "6-8", "3-2", "3-4", "3-9", "1-7", "0-0", "0-5",
    ];
    assert_eq!(got, expected);
}

#[tokio::test]
async fn prefetch_limits_unsettled_deliveries() {
    let t = TestBroker::new(&["pf"]).await;
    t.publish(&ready("pf"), &["1", "2", "3", "4", "5"], 0).await;
    let mut consumer = t.consume(&ready("pf"), 3).await.expect("consume");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(next(&mut consumer).await);
    }
    assert_quiet(&mut consumer).await;
    held.remove(0).ack().await.expect("ack");
    held.push(next(&mut consumer).await);
    assert_quiet(&mut consumer).await;
    assert_eq!(t.ready(&ready("pf")).await, 1);
}

#[tokio::test]
async fn requeued_and_dropped_deliveries_come_back_redelivered() {
    let t = TestBroker::new(&["rq"]).await;
    t.publish(&ready("rq"), &["once"], 0).await;
    let mut consumer = t.consume(&ready("rq"), 1).await.expect("consume");

    let d = next(&mut consumer).await;
    assert!(!d.redelivered);
    d.requeue().await.expect("requeue");
    let d = next(&mut consumer).await;
    assert_eq!(d.body, Bytes::from("once"));
    assert!(d.redelivered);

    drop(d);
    let d = next(&mut consumer).await;
    assert_eq!(d.body, Bytes::from("once"));
    assert!(d.redelivered);
    d.ack().await.expect("ack");
    assert_quiet(&mut consumer).await;
}

#[tokio::test]
async fn competing_consumers_share_a_queue() {
    let t = TestBroker::new(&["share"]).await;
    let bodies: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    t.publish(&ready("share"), &refs, 0).await;
    let mut a = t.consume(&ready("share"), 1).await.expect("consume a");
    let mut b = t.consume(&ready("share"), 1).await.expect("consume b");

    // Each holds one unsettled: both got work while the other was busy.
    let (da, db) = (next(&mut a).await, next(&mut b).await);
    assert_ne!(da.body, db.body);
    let mut seen = vec![da.body.clone(), db.body.clone()];
    let mut counts = [1, 1];
    da.ack().await.expect("ack");
    db.ack().await.expect("ack");
    while seen.len() < bodies.len() {
        let (d, i) = tokio::select! {
            d = next(&mut a) => (d, 0),
            d = next(&mut b) => (d, 1),
        };
        seen.push(d.body.clone());
        counts[i] += 1;
        d.ack().await.expect("ack");
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), bodies.len(), "every message exactly once");
    assert!(counts.iter().all(|&c| c >= 1), "{counts:?}");
}

#[tokio::test]
async fn a_dropped_stream_keeps_handed_out_deliveries_ackable() {
    let t = TestBroker::new(&["drain"]).await;
    t.publish(&ready("drain"), &["1", "2", "3", "4"], 0).await;
    let mut consumer = t.consume(&ready("drain"), 4).await.expect("consume");
    let held = next(&mut consumer).await;
    let mut bodies = vec![held.body.clone()];
    // The other three were sent to the client too: dropping the stream gives them back
    // at once, while `held` keeps the channel open and stays ours.
    drop(consumer);
    let mut again = t.consume(&ready("drain"), 4).await.expect("consume again");
    for _ in 0..3 {
        let d = next(&mut again).await;
        bodies.push(d.body.clone());
        d.ack().await.expect("ack");
    }
    held.ack().await.expect("ack after the stream is gone");
    bodies.sort();
    assert_eq!(bodies, ["1", "2", "3", "4"].map(Bytes::from));
    assert_quiet(&mut again).await;
    assert_eq!(t.ready(&ready("drain")).await, 0);
}
