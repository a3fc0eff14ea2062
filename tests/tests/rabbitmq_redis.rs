//! The conformance suite on RabbitMQ (broker) and Redis (store), both real services on
//! this machine.

jobfleet_tests::conformance_suite!(jobfleet_testkit::RabbitRedis);
