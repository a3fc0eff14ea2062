//! Key names: [`Keys`] builds every key of one namespace for the store (the layout table
//! is in the crate docs), and the functions here name the few keys that tests and
//! operators' tools read directly (the roles go through the store traits), built by the
//! same [`Keys`].

use jobfleet_common::job::JobId;

use super::integrity::{INCIDENT, SENTINEL};

/// `ns:delayed:waiting`: the delayed set's jobs by due time.
pub fn delayed_waiting(namespace: &str) -> String {
    Keys::new(namespace).key("delayed:waiting")
}

/// `ns:delayed:releasing`: jobs claimed by a scheduler under a lease.
pub fn delayed_releasing(namespace: &str) -> String {
    Keys::new(namespace).key("delayed:releasing")
}

/// A job's member in [`delayed_waiting`] and [`delayed_releasing`] (and its field in
/// `ns:delayed:jobs`): the id's 16 bytes (36 characters would cost a million waiting
/// jobs 40 MB more).
pub fn delayed_member(id: &JobId) -> &[u8] {
    id.0.as_bytes()
}

/// The job id of a member of [`delayed_waiting`] or [`delayed_releasing`]: its 16 bytes,
/// or for a job an earlier jobfleet scheduled, its hyphenated text.
pub fn delayed_member_id(member: &[u8]) -> Option<JobId> {
    match uuid::Uuid::from_slice(member) {
        Ok(id) => Some(JobId(id)),
        Err(_) => std::str::from_utf8(member).ok()?.parse().ok(),
    }
}

/// `ns:lock:scheduler:leader:x`: the id of the scheduler that leads (fires schedules).
pub fn leader_lock(namespace: &str) -> String {
    Keys::new(namespace).key(&format!("lock:{}:x", jobfleet_common::store::LEADER_LOCK))
}

/// `ns:sentinel`: the data-loss sentinel.
pub fn sentinel(namespace: &str) -> String {
    Keys::new(namespace).key(SENTINEL)
}

/// `ns:incident:data_loss`: the open data-loss incident.
pub fn data_loss_incident(namespace: &str) -> String {
    Keys::new(namespace).key(INCIDENT)
}

/// `ns:lease:{id}`: a job's execution-lease hash (`holder`, `until`, `token`,
/// `crashes`); `holder` is absent while no execution holds it.
pub fn lease(namespace: &str, id: JobId) -> String {
    Keys::new(namespace).of_job("lease", id)
}

/// The dead-letter keys, in the order the scripts take them: `ns:dead:index` (ids by
/// time of death), `ns:dead:letters` (summaries), `ns:dead:queue`, `ns:dead:counts`,
/// `ns:dead:bodies`.
pub fn dead(namespace: &str) -> [String; 5] {
    Keys::new(namespace).dead()
}

/// Key names under one namespace (the layout is in the module docs).
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    /// The namespace and its trailing colon.
    pub(crate) prefix: String,
}

impl Keys {
    pub(crate) fn new(namespace: &str) -> Self {
        Self {
            prefix: format!("{namespace}:"),
        }
    }

    pub(crate) fn namespace(&self) -> &str {
        self.prefix.trim_end_matches(':')
    }

    /// `ns:{suffix}`.
    pub(crate) fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// The dead-letter keys (see [`dead`]).
    pub(crate) fn dead(&self) -> [String; 5] {
        ["index", "letters", "queue", "counts", "bodies"]
            .map(|part| self.key(&format!("dead:{part}")))
    }

    /// `ns:{kind}:{id}`.
    pub(crate) fn of_job(&self, kind: &str, id: JobId) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }
}
