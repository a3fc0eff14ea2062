//! What the end-to-end tests of the `jobfleet` binary share.

use std::process::Command;

use jobfleet_common::testing::{amqp_url, redis_url};

/// `jobfleet <args>` on the test RabbitMQ and Redis under `namespace`, with none of the
/// developer's own settings (`JOBFLEET_CONFIG`, `RUST_LOG`) and the volatile test Redis
/// accepted (`redis.require_persistence = false`).
pub fn jobfleet_on(namespace: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jobfleet"));
    cmd.args(args)
        .env_remove("JOBFLEET_CONFIG")
        .env_remove("RUST_LOG")
        .env("JOBFLEET_BROKER", amqp_url())
        .env("JOBFLEET_STORE", redis_url())
        .env("JOBFLEET_NAMESPACE", namespace)
        .env("JOBFLEET_REDIS__REQUIRE_PERSISTENCE", "false");
    cmd
}
