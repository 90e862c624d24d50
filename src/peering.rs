//! This node as a cluster member: joining (gossip, links, readiness) and the frames peers
//! send, each kind handed to the part of the node that owns it.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ringcast_cluster::{Cluster, ClusterConfig, ClusterError, MemberState, NodeId};

use crate::node::Node;
use crate::peer;
use crate::route::Router;

/// Joins the cluster of `--cluster-listen` (a no-op for a single node): starts gossip and
/// links, waits for the seeds and the links, then gossips `ready`.
pub async fn join(node: &Arc<Node>) -> Result<(), ClusterError> {
    let Some(settings) = node.config.cluster.clone() else {
        return Ok(());
    };
    let handler = Arc::new(PeerHandler { node: Arc::downgrade(node) });
    let cluster_config = ClusterConfig {
        node_id: node.id.clone(),
        generation: node.generation,
        listen_addr: settings.listen,
        advertise_addr: settings.advertise,
        seeds: settings.seeds.clone(),
        secret: settings.secret.as_bytes().to_vec(),
        // Gossip carries no authentication of its own: deriving the gossip cluster id from
        // the secret keeps a node with another secret out of the membership, not only
        // off the links.
        cluster_id: gossip_cluster_id(&settings.cluster_id, &settings.secret),
        gossip_interval: settings.gossip_interval,
        failure_timeout: settings.failure_timeout,
        link_queue_frames: settings.peer_queue_frames,
    };
    let cluster = Arc::new(Cluster::start(cluster_config, handler).await?);
    node.router.set_cluster(cluster.clone());
    tokio::spawn(crate::rebalance::run(Arc::downgrade(node), cluster.watch()));
    // A stall of half the failure timeout may have had this node declared dead (see `stall.rs`).
    let stalls = node.router.stall.start(settings.failure_timeout / 2);
    tokio::spawn(crate::quorum::run(Arc::downgrade(node), cluster.watch(), stalls));
    tokio::spawn(Router::run_sweep(Arc::downgrade(&node.router)));
    if !settings.seeds.is_empty() {
        // A seed that is not up yet (the first node of a cluster) does not stop us.
        let found = cluster.wait_for(Duration::from_secs(5), |view| view.members.len() > 1).await;
        if !found {
            tracing::warn!(seeds = ?settings.seeds, "no other member found; starting alone");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cluster.links_complete() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.set_state(MemberState::Ready).await;
    cluster.wait_for(Duration::from_secs(2), |view| view.ring.contains(&node.id)).await;
    tracing::info!(members = cluster.view().members.len(), "joined the cluster");
    Ok(())
}

fn gossip_cluster_id(cluster_id: &str, secret: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, cluster_id.as_bytes());
    let hex: String = tag.as_ref()[..8].iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{cluster_id}-{hex}")
}

/// Receives peer frames for the node. Holds it weakly: the node owns the cluster, which owns
/// this handler.
struct PeerHandler {
    node: Weak<Node>,
}

impl ringcast_cluster::FrameHandler for PeerHandler {
    fn on_frame(&self, from: &NodeId, frame: ringcast_cluster::PeerFrame) {
        let Some(node) = self.node.upgrade() else { return };
        let result = match frame.kind {
            peer::KIND_OWNER_OP => peer::decode_op(frame.payload).map(|op| node.router.on_remote_op(op, frame.flags)),
            peer::KIND_EDGE_MSG => peer::decode_msg(frame.payload).map(|msg| node.router.on_edge_msg(msg)),
            peer::KIND_RESYNC => {
                crate::rebalance::resync(&node, from);
                Ok(())
            }
            peer::KIND_TAKEOVER_DONE => {
                peer::decode_takeover_done(&frame.payload).map(|hash| node.router.on_takeover_done(from, hash))
            }
            peer::KIND_META => {
                peer::decode_meta(frame.payload).map(|(key, meta)| node.router.owner.install_meta(key, meta))
            }
            peer::KIND_ADMIN => peer::decode_admin(&frame).map(|(request_id, answer, json)| {
                crate::admin::query::on_peer_frame(&node, from, request_id, answer, json)
            }),
            peer::KIND_INBOX => peer::decode_inbox(frame.payload).map(|inbox| node.router.owner.install_inbox(inbox)),
            peer::KIND_HANDOFF => peer::decode_snapshot(frame.payload).map(|snapshot| {
                tracing::debug!(room = %snapshot.key, from = %from, seq = snapshot.seq, "room handed over");
                node.router.owner.install(&*node.router, snapshot)
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
            node.router.on_link_down(node_id);
        }
    }

    fn on_receipt(&self, node_id: &NodeId) {
        if let Some(node) = self.node.upgrade() {
            node.router.on_receipt(node_id);
        }
    }
}
