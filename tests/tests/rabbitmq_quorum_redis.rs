//! The conformance suite on RabbitMQ quorum queues (broker: ready routes as priority band
//! queues, `rabbitmq.queue_type = "quorum"`) and Redis (store), both real services on this
//! machine. Quorum queues work on a single node; each check's namespace is its own, so
//! its quorum queues never meet the classic ones of `rabbitmq_redis`.

jobfleet_tests::conformance_suite!(jobfleet_testkit::RabbitQuorumRedis);
