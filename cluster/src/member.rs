//! A cluster member as gossiped: the only place that reads chitchat's key/value strings.

use std::net::SocketAddr;

use chitchat::{ChitchatId, NodeState};

use crate::node::NodeId;

/// Gossip key: the member's state (`joining`, `ready`, `draining`).
pub(crate) const STATE_KEY: &str = "state";
/// Gossip key: the address of the member's internal TCP port.
pub(crate) const PEER_ADDR_KEY: &str = "peer_addr";

/// Where a member is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberState {
    /// Started, not yet serving rooms: not on the ring.
    Joining,
    /// On the ring: owns its share of the room keys.
    Ready,
    /// Leaving: off the ring, handing its rooms over, closing its clients.
    Draining,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Joining => "joining",
            MemberState::Ready => "ready",
            MemberState::Draining => "draining",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "joining" => Some(MemberState::Joining),
            "ready" => Some(MemberState::Ready),
            "draining" => Some(MemberState::Draining),
            _ => None,
        }
    }
}

/// A live member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMember {
    pub node_id: NodeId,
    /// Start time of the member's process; a restart has a higher generation.
    pub generation: u64,
    /// The member's gossip (UDP) address.
    pub gossip_addr: SocketAddr,
    /// The member's internal TCP address.
    pub peer_addr: SocketAddr,
    pub state: MemberState,
}

impl ClusterMember {
    /// Reads a member from its gossiped state; `None` while its keys have not arrived yet.
    pub(crate) fn from_node_state(chitchat_id: &ChitchatId, node_state: &NodeState) -> Option<Self> {
        let state = MemberState::parse(node_state.get(STATE_KEY)?)?;
        let peer_addr = node_state.get(PEER_ADDR_KEY)?.parse().ok()?;
        Some(ClusterMember {
            node_id: NodeId::new(&*chitchat_id.node_id),
            generation: chitchat_id.generation_id,
            gossip_addr: chitchat_id.gossip_advertise_addr,
            peer_addr,
            state,
        })
    }

    pub fn is_ready(&self) -> bool {
        self.state == MemberState::Ready
    }
}
