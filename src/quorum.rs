//! Partitions: a node cut off from the majority of its cluster stops serving.
//!
//! During a partition both sides declare the other dead and take over its keys. A minority
//! side that kept serving would acknowledge messages that the majority's subscribers never
//! get, and hold stale rooms that would come back when the partition heals. So a node that
//! reaches no strict majority of the members it knows ([`ClusterView::has_quorum`]: live
//! or recently dead, those that drained away left out) *fences* itself:
//!
//! 1. it gossips `joining`: off its own ring (the rebalance that follows drops every room,
//!    inbox and moderation state it held: the majority serves them now) and off the others'
//!    once they hear from it again;
//! 2. every client gets `reconnect{reason:"no_quorum", after_ms}` and a 1012 close, so it
//!    reconnects to a node of the majority and rejoins with `since`;
//! 3. new upgrades are answered 503 and `/ready` 503 until the quorum is back.
//!
//! When it reaches a majority again it gossips `ready` and joins the ring like a new node:
//! the others hand its keys back and resubscribe there before it serves them (`takeover.rs`).
//! Below three known members there is no majority to speak of and nothing is fenced.
//!
//! A node that stood still (`stall.rs`) is fenced the same way, whatever its view says: the
//! others may have declared it dead and served its rooms meanwhile. It stays off the ring
//! for [`STALL_REJOIN`] (the others see it joining), then rejoins as above.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use ringcast_cluster::{Cluster, ClusterView, MemberState};
use tokio::sync::{mpsc, watch};

use crate::node::Node;

/// Clients of a fenced node are told to reconnect spread over this long.
const RECONNECT_SPREAD: Duration = Duration::from_millis(500);

/// How long a node whose quorum is back waits for its links before it is ready again.
const LINK_WAIT: Duration = Duration::from_secs(5);

/// How long a node fenced after a stall stays off the ring before it rejoins: long enough for
/// the others to hear it is joining (gossip rounds), so they hand its keys back afresh.
const STALL_REJOIN: Duration = Duration::from_secs(1);

pub async fn run(
    node: Weak<Node>,
    mut watch: watch::Receiver<Arc<ClusterView>>,
    mut stalls: mpsc::UnboundedReceiver<Duration>,
) {
    loop {
        let stall = tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() {
                    return;
                }
                None
            }
            Some(gap) = stalls.recv() => Some(gap),
        };
        let view = watch.borrow_and_update().clone();
        let Some(node) = node.upgrade() else { return };
        let Some(cluster) = node.router.cluster().cloned() else { return };
        if node.shutdown.is_cancelled() {
            // Draining: the shutdown sequence owns the member state from here.
            return;
        }
        if let Some(gap) = stall {
            let gap_ms = gap.as_millis() as u64;
            tracing::warn!(gap_ms, "this node stood still: fencing it until it has rejoined");
            crate::metrics::stalled();
            fence(&node, &cluster, "stalled").await;
            tokio::time::sleep(STALL_REJOIN).await;
            // Later stalls are part of this one.
            while stalls.try_recv().is_ok() {}
            let view = cluster.view();
            if view.has_quorum() {
                rejoin(&node, &cluster, &view).await;
            }
            node.router.stall.clear();
            continue;
        }
        let quorum = view.has_quorum();
        let fenced = node.fenced.load(Ordering::Relaxed);
        if !quorum && !fenced {
            let reachable = view.members.len();
            tracing::warn!(reachable, known = view.known.len(), "no quorum: fencing this node until it is back");
            crate::metrics::quorum_lost();
            fence(&node, &cluster, "no_quorum").await;
        } else if quorum && fenced {
            rejoin(&node, &cluster, &view).await;
        }
    }
}

/// Off the ring, clients told to reconnect elsewhere (once: a fenced node stays fenced).
async fn fence(node: &Node, cluster: &Cluster, reason: &'static str) {
    if node.fenced.swap(true, Ordering::Relaxed) {
        return;
    }
    cluster.set_state(MemberState::Joining).await;
    crate::server::send_elsewhere(node, reason, RECONNECT_SPREAD).await;
}

/// Back on the ring, once the links are up and a majority is ready without this node.
async fn rejoin(node: &Node, cluster: &Cluster, view: &ClusterView) {
    // Links first, as at start: the others hand this node its keys back as soon as it
    // is ready, and a hand-off without a link would be lost.
    // And a majority on the ring without it: members that come back count as joining
    // for a moment (`ringcast_cluster`'s revival grace), and a ring of this node alone
    // would have it serve every key.
    let deadline = tokio::time::Instant::now() + LINK_WAIT;
    let majority_ready = |view: &ClusterView| 2 * (view.ring.members().len() + 1) > view.known.len();
    while !(cluster.links_complete() && majority_ready(&cluster.view())) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(members = view.members.len(), "quorum back: serving again");
    node.fenced.store(false, Ordering::Relaxed);
    cluster.set_state(MemberState::Ready).await;
}
