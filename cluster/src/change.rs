//! Membership changes: a pure diff between two member sets.

use std::collections::BTreeMap;

use crate::member::ClusterMember;
use crate::node::NodeId;

/// One change of the live member set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterChange {
    /// A node appeared (or is replayed as present when a stream starts).
    Add(ClusterMember),
    /// A node changed state, or restarted with a higher generation.
    Update { previous: ClusterMember, updated: ClusterMember },
    /// A node is gone (dead or left).
    Remove(ClusterMember),
}

/// The members by node id. When two generations of one node are live at once (a restart
/// the failure detector has not caught up with), the higher generation wins.
pub fn members_by_id(members: impl IntoIterator<Item = ClusterMember>) -> BTreeMap<NodeId, ClusterMember> {
    let mut by_id: BTreeMap<NodeId, ClusterMember> = BTreeMap::new();
    for member in members {
        match by_id.get(&member.node_id) {
            Some(existing) if existing.generation >= member.generation => {
                if existing.generation > member.generation {
                    tracing::debug!(node_id = %member.node_id, generation = member.generation, "ignoring an older generation of a node");
                }
            }
            _ => {
                by_id.insert(member.node_id.clone(), member);
            }
        }
    }
    by_id
}

/// The changes that turn `previous` into `current`, in node id order.
pub fn compute_changes(
    previous: &BTreeMap<NodeId, ClusterMember>,
    current: &BTreeMap<NodeId, ClusterMember>,
) -> Vec<ClusterChange> {
    let mut changes = Vec::new();
    for (node_id, member) in current {
        match previous.get(node_id) {
            None => changes.push(ClusterChange::Add(member.clone())),
            Some(old) if old != member => {
                changes.push(ClusterChange::Update { previous: old.clone(), updated: member.clone() })
            }
            Some(_) => {}
        }
    }
    for (node_id, member) in previous {
        if !current.contains_key(node_id) {
            changes.push(ClusterChange::Remove(member.clone()));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::MemberState;

    fn member(id: &str, generation: u64, state: MemberState) -> ClusterMember {
        ClusterMember {
            node_id: NodeId::new(id),
            generation,
            gossip_addr: "127.0.0.1:1".parse().unwrap(),
            peer_addr: "127.0.0.1:1".parse().unwrap(),
            state,
        }
    }

    #[test]
    fn test_add_update_remove() {
        let before = members_by_id([member("a", 1, MemberState::Ready), member("b", 1, MemberState::Ready)]);
        let after = members_by_id([member("a", 1, MemberState::Draining), member("c", 1, MemberState::Joining)]);
        let changes = compute_changes(&before, &after);
        assert_eq!(changes.len(), 3);
        assert!(matches!(&changes[0], ClusterChange::Update { updated, .. } if updated.state == MemberState::Draining));
        assert!(matches!(&changes[1], ClusterChange::Add(m) if m.node_id.as_str() == "c"));
        assert!(matches!(&changes[2], ClusterChange::Remove(m) if m.node_id.as_str() == "b"));
    }

    #[test]
    fn test_higher_generation_wins() {
        let members = members_by_id([member("a", 2, MemberState::Joining), member("a", 1, MemberState::Ready)]);
        assert_eq!(members[&NodeId::new("a")].generation, 2);
        let restarted = members_by_id([member("a", 3, MemberState::Joining)]);
        let changes = compute_changes(&members, &restarted);
        assert!(
            matches!(&changes[..], [ClusterChange::Update { previous, updated }] if previous.generation == 2 && updated.generation == 3)
        );
    }

    #[test]
    fn test_no_change_no_event() {
        let members = members_by_id([member("a", 1, MemberState::Ready)]);
        assert!(compute_changes(&members, &members).is_empty());
    }
}
