//! Frames from peers: each kind handed to the part of the node that owns it.

use std::sync::Weak;

use ringcast_cluster::NodeId;

use super::Node;
use crate::peer;
/// Receives peer frames for the node. Holds it weakly: the node owns the cluster, which owns
/// this handler.
pub(super) struct PeerHandler {
    node: Weak<Node>,
}

impl PeerHandler {
    pub(super) fn new(node: Weak<Node>) -> Self {
        PeerHandler { node }
    }
}

impl ringcast_cluster::FrameHandler for PeerHandler {
    fn on_frame(&self, from: &NodeId, frame: ringcast_cluster::PeerFrame) {
        let Some(node) = self.node.upgrade() else { return };
        let result = match frame.kind {
            peer::KIND_OWNER_OP => peer::decode_op(frame.payload).map(|op| node.on_remote_op(op, frame.flags)),
            peer::KIND_EDGE_MSG => peer::decode_msg(frame.payload).map(|msg| node.on_edge_msg(msg)),
            peer::KIND_RESYNC => {
                crate::rebalance::resync(&node, from);
                Ok(())
            }
            peer::KIND_TAKEOVER_DONE => {
                peer::decode_takeover_done(&frame.payload).map(|hash| node.on_takeover_done(from, hash))
            }
            peer::KIND_META => peer::decode_meta(frame.payload).map(|(key, meta)| node.owner.install_meta(key, meta)),
            peer::KIND_ADMIN => peer::decode_admin(&frame).map(|(request_id, answer, json)| {
                crate::admin::query::on_peer_frame(&node, from, request_id, answer, json)
            }),
            peer::KIND_INBOX => peer::decode_inbox(frame.payload).map(|inbox| node.owner.install_inbox(inbox)),
            peer::KIND_HANDOFF => peer::decode_snapshot(frame.payload).map(|snapshot| {
                tracing::debug!(room = %snapshot.key, from = %from, seq = snapshot.seq, "room handed over");
                node.owner.install(snapshot)
            }),
            kind => {
                tracing::warn!(from = %from, kind, "unknown peer frame kind");
                Ok(())
            }
        };
        if result.is_err() {
            tracing::warn!(from = %from, kind = frame.kind, "malformed peer frame dropped");
        }
    }

    fn on_link_down(&self, node_id: &NodeId) {
        if let Some(node) = self.node.upgrade() {
            node.fail_pending(|pending| &pending.node == node_id, "owner unreachable");
        }
    }
}
