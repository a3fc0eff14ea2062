//! What the end-to-end tests of the `jobfleet` binary share.

use std::process::{Child, Command, Stdio};

use jobfleet_testkit::{amqp_url, redis_url};

/// `jobfleet <args>` on the test RabbitMQ and Redis under `namespace`, with none of the
/// developer's own settings (`JOBFLEET_CONFIG`, `RUST_LOG`) and the test Redis accepted
/// whatever it keeps on disk (`redis.require_persistence = false`).
#[allow(dead_code)] // tls.rs, which includes this module, runs its own TLS services
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

/// A process a test started: on drop, `stop` runs first if given (a clean stop, such as
/// `rabbitmqctl stop`), then the process is killed and reaped.
pub struct Process {
    /// The process.
    pub child: Child,
    stop: Option<Command>,
}

// Not every test binary that includes this module uses every constructor.
#[allow(dead_code)]
impl Process {
    /// Killed on drop.
    pub fn new(child: Child) -> Self {
        Self { child, stop: None }
    }

    /// `stop` runs on drop before the kill.
    pub fn with_stop(child: Child, stop: Command) -> Self {
        Self {
            child,
            stop: Some(stop),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(stop) = &mut self.stop {
            let _ = stop.stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
