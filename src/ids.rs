//! Identifiers made by this node: message ids and room epochs, unique across the cluster.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// The node-local number of a connection; the cluster-wide id is `{node_id}-{ConnId}`.
pub type ConnId = u64;

/// Set in the [`ConnId`] of a server-side request (the admin API's publish, history and
/// subscriptions): no connection has it, its answers go to the request waiting for them
/// (`edge::service`), and the owner does not ask it to be a member of the room.
pub const SERVICE_CONN_BIT: ConnId = 1 << 62;

pub fn is_service_conn(conn_id: ConnId) -> bool {
    conn_id & SERVICE_CONN_BIT != 0
}

/// Makes ids from the time, a per-node tag and a counter.
pub struct IdGen {
    node_tag: u32,
    counter: AtomicU64,
}

impl IdGen {
    pub fn new(node_id: &str, generation: u64) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        node_id.hash(&mut hasher);
        generation.hash(&mut hasher);
        IdGen { node_tag: hasher.finish() as u32, counter: AtomicU64::new(0) }
    }

    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// A message id: 24 hex chars, ordered by creation time on one node.
    pub fn message_id(&self, now_millis: u64) -> String {
        format!("{:011x}{:05x}{:08x}", now_millis, self.next() & 0xf_ffff, self.node_tag)
    }

    /// A room epoch: changes every time a room's history starts anew.
    pub fn epoch(&self, now_millis: u64) -> String {
        format!("{:x}{:04x}{:04x}", now_millis / 1000, self.next() & 0xffff, self.node_tag & 0xffff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ids_are_unique() {
        let ids = IdGen::new("n", 1);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(ids.message_id(5)));
        }
        assert_ne!(ids.epoch(5), ids.epoch(5));
    }
}
