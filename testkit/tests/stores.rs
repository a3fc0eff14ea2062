//! The store conformance suite (`jobfleet_testkit::store_conformance`) on every store:
//! the embedded one, with paused time, and Redis (the test Redis, `TEST_REDIS_URL`).

mod embedded {
    jobfleet_testkit::store_conformance!(jobfleet_testkit::Embedded, paused);
}

/// The Redis store as the rabbitmq+redis (and kafka+redis) checks connect it; the
/// broker is not connected.
mod redis {
    jobfleet_testkit::store_conformance!(jobfleet_testkit::RabbitRedis);
}
