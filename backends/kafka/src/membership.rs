//! Static group membership (`kafka.instance_id`): the `group.instance.id` each consumer
//! of this process joins its group under. See `docs/kafka.md`, "Static membership".

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use super::lock;

/// The static-membership indexes in use by one process's consumers, per group.
#[derive(Clone, Default)]
pub(super) struct Instances(Arc<Mutex<HashMap<String, BTreeSet<usize>>>>);

impl Instances {
    /// The name for a new consumer of `group` in the process named `id`: the lowest index
    /// of `group` no open consumer uses.
    pub fn take(&self, id: &str, group: &str) -> Instance {
        let mut taken = lock(&self.0);
        let used = taken.entry(group.to_string()).or_default();
        let index = (0..).find(|i| !used.contains(i)).unwrap_or_default();
        used.insert(index);
        Instance {
            instances: self.clone(),
            group: group.to_string(),
            index,
            name: format!("{id}.{group}.{index}"),
        }
    }
}

/// A consumer's `group.instance.id`, free for the next consumer once this is dropped.
pub(super) struct Instance {
    instances: Instances,
    group: String,
    index: usize,
    pub name: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(used) = lock(&self.instances.0).get_mut(&self.group) {
            used.remove(&self.index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_names_reuse_the_lowest_free_index_per_group() {
        let instances = Instances::default();
        let a = instances.take("pod-0", "ns.g.q.a");
        let b = instances.take("pod-0", "ns.g.q.a");
        let other = instances.take("pod-0", "ns.g.delayed");
        assert_eq!(
            [a.name.as_str(), b.name.as_str(), other.name.as_str()],
            [
                "pod-0.ns.g.q.a.0",
                "pod-0.ns.g.q.a.1",
                "pod-0.ns.g.delayed.0"
            ]
        );
        drop(a);
        let again = instances.take("pod-0", "ns.g.q.a");
        assert_eq!(again.name, "pod-0.ns.g.q.a.0");
        assert_eq!(instances.take("pod-0", "ns.g.q.a").name, "pod-0.ns.g.q.a.2");
        drop((again, b, other));
    }
}
