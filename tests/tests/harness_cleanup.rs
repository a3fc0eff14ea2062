//! A check that fails before `Ctx::stop` still leaves nothing behind on the shared
//! services: `Ctx`'s drop guard deletes its queues and its store keys.

use std::sync::Arc;

use jobfleet_common::Job;
use jobfleet_testkit::{amqp_url, redis_url, RabbitRedis, HOW_TO_START};
use jobfleet_testkit::{Ctx, Factory};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

/// How many Redis keys start with `prefix`.
async fn keys_with_prefix(prefix: &str) -> usize {
    let client = redis::Client::open(redis_url()).expect("a Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{HOW_TO_START}"));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    keys.len()
}

/// Whether RabbitMQ has a queue named `name` (a passive declare succeeds).
async fn queue_exists(name: &str) -> bool {
    let connection = lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{HOW_TO_START}"));
    let channel = connection.create_channel().await.expect("a channel");
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let exists = channel
        .queue_declare(name.into(), options, FieldTable::default())
        .await
        .is_ok();
    let _ = connection.close(200, "done".into()).await;
    exists
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_dropped_before_stop_removes_its_queue_and_keys() {
    let factory: Factory = Arc::new(RabbitRedis);
    let cx = Ctx::new(&factory, |_| {}).await;
    let namespace = cx.config.namespace.clone();
    let ready = format!("{namespace}.q.{}", cx.queue);
    cx.producer
        .enqueue(Job::new(&cx.queue, "echo", "{}"))
        .await
        .expect("enqueued");
    assert!(
        queue_exists(&ready).await,
        "the job's queue {ready} was declared"
    );
    assert!(
        keys_with_prefix(&namespace).await > 0,
        "the job has a record"
    );

    // As a failed assertion would: dropped without `stop`.
    drop(cx);
    assert!(!queue_exists(&ready).await, "{ready} is left behind");
    assert_eq!(
        keys_with_prefix(&namespace).await,
        0,
        "keys of {namespace} are left behind"
    );
}
