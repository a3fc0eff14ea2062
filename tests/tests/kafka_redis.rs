//! The conformance suite on Kafka (broker; a Kafka-compatible server at
//! `TEST_KAFKA_BROKERS`) and Redis (store).

jobfleet_tests::conformance_suite!(jobfleet_testkit::KafkaRedis);

/// Kafka only: per-key order (see `docs/kafka.md`, "Per-key order").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_deliveries_never_overlap_and_keep_order() {
    jobfleet_testkit::init_tracing();
    jobfleet_tests::kafka::per_key_deliveries_never_overlap_and_keep_order().await;
}
