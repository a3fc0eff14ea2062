//! Where the test kinds record their side effects: the Redis keys of one namespace, which
//! the kinds write and the checks ([`super::executions`], [`super::world`]) read.

use jobfleet_common::JobId;

/// The keys of one namespace.
#[derive(Clone, Debug)]
pub struct Keys {
    ns: String,
}

impl Keys {
    /// The keys under `namespace`.
    pub fn new(namespace: &str) -> Self {
        Self {
            ns: namespace.to_string(),
        }
    }

    /// A set of the job ids whose effect happened.
    pub fn effects(&self) -> String {
        format!("{}:effects", self.ns)
    }

    /// A counter of executions that recorded an effect, re-runs included.
    pub fn executions(&self) -> String {
        format!("{}:executions", self.ns)
    }

    /// A hash: announced job id → pid of the process that started it last.
    pub fn runner(&self) -> String {
        format!("{}:runner", self.ns)
    }

    /// A hash: announced job id → how many times it started.
    pub fn starts(&self) -> String {
        format!("{}:starts", self.ns)
    }

    /// A set of the ids of every execution of the tracked kinds (see
    /// [`super::executions`]).
    pub fn execution_ids(&self) -> String {
        format!("{}:execs", self.ns)
    }

    /// A hash about execution `exec`: `job`, `pid`, `token` (its lease's), `start`, `last`
    /// (heartbeat) and `end`, times in Unix ms.
    pub fn execution(&self, exec: &str) -> String {
        format!("{}:exec:{exec}", self.ns)
    }

    /// A hash about a [`FENCED`](super::kinds::FENCED) job's last attempt: `pid`, `fence`, and `wrote`
    /// (`1` or `0`) once its write was answered.
    pub fn attempt(&self, id: JobId) -> String {
        format!("{}:attempt:{id}", self.ns)
    }
}
