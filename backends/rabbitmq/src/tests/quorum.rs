//! Quorum queues: band queue names and arguments, the highest band first, depth over the
//! bands, the refusal of a queue of the other type, and the broker never dropping a job
//! redelivered many times (jobfleet's attempts decide, not a delivery limit).

use jobfleet_common::config::{QueueType, RabbitConfig};
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};

use super::*;

fn quorum(bands: u8) -> RabbitConfig {
    RabbitConfig {
        queue_type: QueueType::Quorum,
        bands,
    }
}

#[test]
fn quorum_ready_routes_are_band_queues_without_native_priority() {
    let topology = topology::Topology::new("ns", &quorum(3));
    let names: Vec<String> = topology
        .queues(&ready("email"))
        .expect("names")
        .iter()
        .map(|q| q.name.to_string())
        .collect();
    assert_eq!(names, ["ns.q.email.b0", "ns.q.email.b1", "ns.q.email.b2"]);
    for (level, band) in [(0, 0), (3, 0), (4, 1), (6, 1), (7, 2), (9, 2)] {
        let priority = Priority::new(level).expect("0-9");
        let queue = topology.queue_for(&ready("email"), priority).expect("name");
        assert_eq!(
            queue.name.as_str(),
            format!("ns.q.email.b{band}"),
            "level {level}"
        );
    }
    let band = topology.queues(&ready("email")).expect("names").remove(0);
    let args = topology::arguments(&band);
    let args = args.inner();
    assert!(!band.prioritised);
    assert_eq!(
        args.get("x-queue-type"),
        Some(&AMQPValue::LongString("quorum".into()))
    );
    assert!(args.get("x-max-priority").is_none(), "{args:?}");
    // No broker-side delivery limit: jobfleet's attempts decide when a job is dead.
    assert!(args.get("x-delivery-limit").is_none(), "{args:?}");
    let shared = topology.queues(&Route::Dead).expect("name");
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].name.as_str(), "ns.dead");
    assert_eq!(shared[0].queue_type, QueueType::Quorum);
    // One band: the queue keeps its classic name, with no priority.
    let one = topology::Topology::new("ns", &quorum(1));
    let queues = one.queues(&ready("email")).expect("name");
    assert_eq!(queues.len(), 1);
    assert_eq!(queues[0].name.as_str(), "ns.q.email");
    // Classic queues name their type too (accepted on queues declared without it: see
    // `classic_queues_accept_the_type_named_or_not`) and keep their priorities.
    let classic = topology::Topology::new("ns", &RabbitConfig::default());
    let queue = classic.queues(&ready("email")).expect("name").remove(0);
    let args = topology::arguments(&queue);
    assert_eq!(
        args.inner().get("x-queue-type"),
        Some(&AMQPValue::LongString("classic".into()))
    );
    assert_eq!(
        args.inner().get("x-max-priority"),
        Some(&AMQPValue::LongInt(9))
    );
}

#[tokio::test]
async fn quorum_bands_are_consumed_highest_first_and_depth_sums_them() {
    let t = TestBroker::with(&["work"], &quorum(3)).await;
    let route = ready("work");
    for level in [0u8, 5, 9, 3, 7, 4, 1, 8] {
        t.publish(&route, &[&level.to_string()], level).await;
    }
    assert_eq!(t.ready(&route).await, 8, "depth sums the band queues");
    let mut consumer = t.consume(&route, 1).await.expect("consume");
    let mut bands = Vec::new();
    for _ in 0..8 {
        let d = next(&mut consumer).await;
        let level: u8 = String::from_utf8_lossy(&d.body).parse().expect("a level");
        bands.push(Priority::new(level).expect("0-9").band(3));
        d.ack().await.expect("ack");
    }
    assert_eq!(bands, [2, 2, 2, 1, 1, 0, 0, 0], "highest band first");
    assert_quiet(&mut consumer).await;
}

/// RabbitMQ 3.10 accepts neither type change, and jobfleet says which queue, both types
/// and where the migration is described.
#[tokio::test]
async fn a_queue_of_the_other_type_is_refused_naming_both_types() {
    let classic = TestBroker::new(&["jobs"]).await;
    let namespace = classic.namespace().to_string();
    let quorum_broker = RabbitBroker::connect(&url(), &namespace, &quorum(1))
        .await
        .expect("connect");
    let e = quorum_broker
        .declare(&["jobs".to_string()])
        .await
        .expect_err("a classic queue cannot become a quorum queue");
    let text = e.to_string();
    assert!(matches!(e, BrokerError::Invalid(_)), "{e:?}");
    assert!(
        text.contains(&format!("queue {namespace}.q.jobs")),
        "{text}"
    );
    assert!(
        text.contains("exists as a classic queue, but rabbitmq.queue_type is quorum"),
        "{text}"
    );
    assert!(text.contains("docs/high-availability.md"), "{text}");
    quorum_broker.close().await;
    drop(classic);

    // The other way round: quorum queues, then a classic declaration.
    let quorum_first = TestBroker::with(&["jobs"], &quorum(3)).await;
    let namespace = quorum_first.namespace().to_string();
    let classic = RabbitBroker::connect(&url(), &namespace, &RabbitConfig::default())
        .await
        .expect("connect");
    let e = classic
        .declare(&["jobs".to_string()])
        .await
        .expect_err("the shared routes are quorum queues");
    let text = e.to_string();
    assert!(
        text.contains("exists as a quorum queue, but rabbitmq.queue_type is classic"),
        "{text}"
    );
    // Its ready queue `ns.q.jobs` was made before the shared routes were refused.
    let _ = classic.delete_routes(&["jobs".to_string()]).await;
    classic.close().await;
}

#[test]
fn the_mismatch_message_reads_the_current_type_from_the_server_text() {
    let topology = |t| {
        topology::Topology::new(
            "ns",
            &RabbitConfig {
                queue_type: t,
                bands: 1,
            },
        )
    };
    let dead = |t| topology(t).queues(&Route::Dead).expect("name").remove(0);
    let ready_q = |t| topology(t).queues(&ready("q")).expect("name").remove(0);
    let server = |arg: &str, received: &str, current: &str| {
        format!(
            "PRECONDITION_FAILED - inequivalent arg '{arg}' for queue 'ns.dead' in vhost '/': \
             received {received} but current is {current}"
        )
    };
    let quorum_value = "the value 'quorum' of type 'longstr'";
    let text = topology::mismatch(
        &dead(QueueType::Classic),
        &server("x-queue-type", "none", quorum_value),
    )
    .expect("a type mismatch");
    assert!(
        text.contains("queue ns.dead exists as a quorum queue"),
        "{text}"
    );
    assert!(text.contains("rabbitmq.queue_type is classic"), "{text}");
    let text = topology::mismatch(
        &dead(QueueType::Quorum),
        &server("x-queue-type", quorum_value, "none"),
    )
    .expect("a type mismatch");
    assert!(text.contains("exists as a classic queue"), "{text}");
    let priority = "the value '9' of type 'signedint'";
    let text = topology::mismatch(
        &ready_q(QueueType::Quorum),
        &server("x-max-priority", "none", priority),
    )
    .expect("only classic queues have priorities");
    assert!(text.contains("exists as a classic queue"), "{text}");
    let text = topology::mismatch(
        &ready_q(QueueType::Classic),
        &server("x-max-priority", priority, "none"),
    )
    .expect("no priorities: maybe quorum");
    assert!(text.contains("exists as a quorum (or classic"), "{text}");
    // Any other refusal is not about the type.
    let other = server("x-message-ttl", "none", "the value '5' of type 'long'");
    assert!(topology::mismatch(&dead(QueueType::Quorum), &other).is_none());
}

/// Whether classic queues may name their type: a classic queue declared without
/// `x-queue-type` (by jobfleet before `rabbitmq.queue_type`) must accept jobfleet's
/// declaration with `x-queue-type = classic`, and the other way round (an older process
/// of the same fleet during a rolling upgrade).
#[tokio::test]
async fn classic_queues_accept_the_type_named_or_not() {
    let t = TestBroker::new(&[]).await;
    let session = t.shared.session(Patience::Call).await.expect("session");
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let args = |typed: bool| {
        let mut args = FieldTable::default();
        args.insert("x-max-priority".into(), AMQPValue::LongInt(9));
        if typed {
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("classic".into()),
            );
        }
        args
    };
    let (typed, untyped) = (args(true), args(false));
    for (first, then, name) in [
        (untyped.clone(), typed.clone(), "old-then-new"),
        (typed, untyped, "new-then-old"),
    ] {
        let queue = format!("{}.q.{name}", t.namespace());
        let channel = session.channel().await.expect("channel");
        channel
            .queue_declare(queue.as_str().into(), options, first)
            .await
            .expect("first declaration");
        let again = channel
            .queue_declare(queue.as_str().into(), options, then)
            .await;
        let _ = channel
            .queue_delete(queue.as_str().into(), Default::default())
            .await;
        again.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// A job redelivered far more often than any `max_attempts` (and than RabbitMQ 4's
/// default delivery limit of 20) is still delivered: the broker never drops it, so
/// jobfleet's own count decides and files the dead letter with its reason.
#[tokio::test]
async fn a_quorum_queue_never_drops_a_job_redelivered_often() {
    let t = TestBroker::with(&["again"], &quorum(1)).await;
    let route = ready("again");
    t.publish(&route, &["stubborn"], 5).await;
    let mut consumer = t.consume(&route, 1).await.expect("consume");
    for _ in 0..30 {
        let d = next(&mut consumer).await;
        assert_eq!(d.body, Bytes::from("stubborn"));
        d.requeue().await.expect("requeue");
    }
    let d = next(&mut consumer).await;
    assert!(d.redelivered, "the 31st delivery is a redelivery");
    assert_eq!(d.body, Bytes::from("stubborn"));
    d.ack().await.expect("ack");
    assert_quiet(&mut consumer).await;
    assert_eq!(t.ready(&route).await, 0);
}
