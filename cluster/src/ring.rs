//! The consistent-hash ring.
//!
//! `Ring::new(members)` is a pure function of the member set: every node that sees the same
//! ready set computes the same ring, whatever order it learnt the members in. Each node
//! appears as `vnodes_per_node` points on the ring (hashring has no virtual nodes of its own,
//! so each point is the hash of `(node_id, index)`); a key belongs to the first point at or
//! after its own hash.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use hashring::HashRing;

use crate::node::NodeId;

/// Virtual nodes per node. 512 keeps every node's share within ±10% of even for 3–10 nodes
/// (see the balance test below).
pub const DEFAULT_VNODES_PER_NODE: u32 = 512;

/// One point of a node on the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
struct VirtualNode {
    node_id: NodeId,
    index: u32,
}

impl Hash for VirtualNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.node_id.as_str().hash(state);
        self.index.hash(state);
    }
}

/// An immutable ring over a set of nodes.
#[derive(Clone, Debug)]
pub struct Ring {
    members: Vec<NodeId>,
    hash_ring: HashRing<VirtualNode>,
}

impl Ring {
    /// Builds the ring of `members` with [`DEFAULT_VNODES_PER_NODE`] points each.
    pub fn new(members: impl IntoIterator<Item = NodeId>) -> Self {
        Self::with_vnodes(members, DEFAULT_VNODES_PER_NODE)
    }

    pub fn with_vnodes(members: impl IntoIterator<Item = NodeId>, vnodes_per_node: u32) -> Self {
        let mut members: Vec<NodeId> = members.into_iter().collect();
        members.sort();
        members.dedup();
        let mut hash_ring = HashRing::new();
        let mut virtual_nodes = Vec::with_capacity(members.len() * vnodes_per_node as usize);
        for node_id in &members {
            for index in 0..vnodes_per_node {
                virtual_nodes.push(VirtualNode { node_id: node_id.clone(), index });
            }
        }
        hash_ring.batch_add(virtual_nodes);
        Ring { members, hash_ring }
    }

    /// The owner of `key`, or `None` when the ring is empty.
    pub fn owner(&self, key: &str) -> Option<&NodeId> {
        self.hash_ring.get(&key).map(|virtual_node| &virtual_node.node_id)
    }

    /// The members of the ring, sorted.
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    pub fn contains(&self, node_id: &NodeId) -> bool {
        self.members.binary_search(node_id).is_ok()
    }

    /// Each member's share of the hash space (0.0–1.0), computed from the arc lengths.
    pub fn shares(&self) -> BTreeMap<NodeId, f64> {
        // hashring keeps its points private, so measure the arcs by sampling the space
        // evenly: 65,536 probes are exact to well under 0.1%.
        const PROBES: u64 = 1 << 16;
        let mut counts: BTreeMap<NodeId, u64> = BTreeMap::new();
        for member in &self.members {
            counts.insert(member.clone(), 0);
        }
        for probe in 0..PROBES {
            let key = format!("probe-{probe}");
            if let Some(owner) = self.owner(&key) {
                *counts.entry(owner.clone()).or_default() += 1;
            }
        }
        counts.into_iter().map(|(node_id, count)| (node_id, count as f64 / PROBES as f64)).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn nodes(n: usize) -> Vec<NodeId> {
        (0..n).map(|i| NodeId::new(format!("ringcast-{i}"))).collect()
    }

    fn count_owners(ring: &Ring, num_keys: usize) -> HashMap<NodeId, usize> {
        let mut counts = HashMap::new();
        for i in 0..num_keys {
            let key = format!("default/room-{i}");
            *counts.entry(ring.owner(&key).unwrap().clone()).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn test_empty_ring_has_no_owner() {
        assert_eq!(Ring::new(Vec::new()).owner("default/lobby"), None);
    }

    #[test]
    fn test_single_node_owns_everything() {
        let ring = Ring::new(nodes(1));
        for i in 0..100 {
            assert_eq!(ring.owner(&format!("k{i}")).unwrap().as_str(), "ringcast-0");
        }
    }

    #[test]
    fn test_ring_is_independent_of_member_order() {
        let mut members = nodes(5);
        let ring_a = Ring::new(members.clone());
        members.reverse();
        let ring_b = Ring::new(members);
        for i in 0..1000 {
            let key = format!("t/room-{i}");
            assert_eq!(ring_a.owner(&key), ring_b.owner(&key));
        }
    }

    #[test]
    fn test_balance_within_ten_percent_for_3_to_10_nodes() {
        let num_keys = 100_000;
        for num_nodes in 3..=10 {
            let ring = Ring::new(nodes(num_nodes));
            let counts = count_owners(&ring, num_keys);
            let even = num_keys as f64 / num_nodes as f64;
            for (node_id, count) in counts {
                let deviation = (count as f64 - even).abs() / even;
                assert!(
                    deviation <= 0.10,
                    "{num_nodes} nodes: {node_id} has {count} keys, {:.1}% off even",
                    deviation * 100.0
                );
            }
        }
    }

    #[test]
    fn test_join_moves_keys_only_to_the_new_node() {
        for num_nodes in 3..=9 {
            let before = Ring::new(nodes(num_nodes));
            let after = Ring::new(nodes(num_nodes + 1));
            let new_node = NodeId::new(format!("ringcast-{num_nodes}"));
            let mut moved = 0;
            let num_keys = 20_000;
            for i in 0..num_keys {
                let key = format!("default/room-{i}");
                let (old_owner, new_owner) = (before.owner(&key).unwrap(), after.owner(&key).unwrap());
                if old_owner != new_owner {
                    assert_eq!(new_owner, &new_node, "a key moved between two old nodes");
                    moved += 1;
                }
            }
            // Ideal movement is 1/(n+1) of the keys; allow 10% slack around it.
            let ideal = num_keys as f64 / (num_nodes + 1) as f64;
            assert!((moved as f64) < ideal * 1.1, "{moved} keys moved, ideal {ideal}");
        }
    }

    #[test]
    fn test_leave_moves_only_the_leavers_keys() {
        let before = Ring::new(nodes(5));
        let leaver = NodeId::new("ringcast-2");
        let after = Ring::new(nodes(5).into_iter().filter(|n| n != &leaver));
        for i in 0..20_000 {
            let key = format!("default/room-{i}");
            let old_owner = before.owner(&key).unwrap();
            if old_owner != &leaver {
                assert_eq!(after.owner(&key).unwrap(), old_owner);
            }
        }
    }

    #[test]
    fn test_shares_sum_to_one() {
        let ring = Ring::new(nodes(4));
        let total: f64 = ring.shares().values().sum();
        assert!((total - 1.0).abs() < 1e-9);
        assert_eq!(ring.shares().len(), 4);
    }
}
