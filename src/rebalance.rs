//! What a node does when the cluster view changes (DESIGN.md "Membership changes"):
//!
//! 1. Owner side: the connections of nodes that died (or restarted as a new generation) are
//!    dropped from the rooms this node holds, with the `member.left` that follow.
//! 2. Owner side: every room whose key now belongs to another node is handed over to it
//!    (seq, epoch, history, members) and forgotten here. A draining node is off its own
//!    ring, so this hands over all its rooms.
//! 3. Edge side: for every room a local connection is in whose owner changed, the edge
//!    sends the new owner a `Resubscribe` with its members there.
//! 4. Behind all of it, on each link: `KIND_TAKEOVER_DONE` for the new ring, which lets a
//!    new owner serve the keys it gained (see `takeover.rs`).
//!
//! A member that restarted (a new generation) without leaving the ring is treated like one
//! that gained every key it owns: each node hands it back what it holds of its keys (a drain
//! handed them over), resubscribes there the rooms of its connections that it owns, then
//! tells it so.
//!
//! Without persistence a room whose owner died starts again on its new owner with a new
//! epoch: clients that rejoin with `since` are told `recovered:false`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use ringcast_cluster::{compute_changes, ClusterChange, ClusterView, NodeId, PeerFrame, Ring};
use tokio::sync::watch;

use crate::ids::ConnId;
use crate::node::Node;
use crate::ops::{ConnRef, OwnerOp, Sender};
use crate::peer;
use crate::room::RoomKey;
use crate::takeover::Begin;

/// How long a rebalance waits for links to new members.
const LINK_WAIT: Duration = Duration::from_secs(3);

pub async fn run(node: Weak<Node>, mut watch: watch::Receiver<Arc<ClusterView>>) {
    let mut previous = watch.borrow_and_update().clone();
    if let Some(node) = node.upgrade() {
        node.router.set_owner_ring(previous.ring.clone());
        node.router.set_ring(previous.ring.clone());
    }
    loop {
        if watch.changed().await.is_err() {
            return;
        }
        let current = watch.borrow_and_update().clone();
        let Some(strong) = node.upgrade() else { return };
        wait_for_links(&strong, &current).await;
        apply(&strong, &node, &previous, &current);
        previous = current;
    }
}

/// Members that just appeared (a partition healing, say) may not have a link yet: wait a
/// little for links to every member of the new ring, so hand-offs and resubscriptions are
/// not refused for want of a link.
async fn wait_for_links(node: &Node, current: &ClusterView) {
    let Some(cluster) = node.router.cluster() else { return };
    let deadline = tokio::time::Instant::now() + LINK_WAIT;
    while tokio::time::Instant::now() < deadline {
        let missing = current.ring.members().iter().any(|member| *member != node.id && !cluster.is_connected(member));
        if !missing {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::warn!("rebalancing without links to every member");
}

fn apply(node: &Node, weak: &Weak<Node>, previous: &ClusterView, current: &ClusterView) {
    for change in compute_changes(&previous.members, &current.members) {
        match change {
            ClusterChange::Add(member) if member.node_id != node.id => {
                // If we dropped its connections while we thought it dead, it restores them.
                if let Some(cluster) = node.router.cluster() {
                    let _ = cluster.send(&member.node_id, PeerFrame::new(peer::KIND_RESYNC, Bytes::new()));
                }
            }
            ClusterChange::Remove(member) => {
                tracing::info!(node = %member.node_id, "member gone");
                node.router.owner.drop_node(&*node.router, &member.node_id);
            }
            ClusterChange::Update { previous: before, updated } if before.generation != updated.generation => {
                tracing::info!(node = %updated.node_id, generation = updated.generation, "member restarted");
                node.router.owner.drop_node(&*node.router, &before.node_id);
                // Its rooms started again empty. When the ring does not change (it came back
                // before anyone saw it leave), give it back what we hold of its keys (what it
                // handed us when it drained) and resubscribe our connections there; otherwise
                // the ring change does both.
                let kept = |view: &ClusterView| view.ring.members().contains(&updated.node_id);
                if kept(previous) && kept(current) && updated.node_id != node.id {
                    hand_off(node, &current.ring);
                    resync(node, &updated.node_id);
                    send_done(node, &current.ring, Some(&updated.node_id));
                }
            }
            _ => {}
        }
    }
    if previous.ring.members() == current.ring.members() {
        return;
    }
    // Before this node may start any gained key: ops for them wait for the hand-offs.
    let begin = node.router.takeover.begin(&node.id, &previous.ring, current.ring.clone());
    hand_off(node, &current.ring);
    resubscribe(node, previous, current);
    node.router.set_ring(current.ring.clone());
    send_done(node, &current.ring, None);
    // Ops held for an earlier ring go out only now, under the new rings: a key this node
    // just lost (cut off, say) is no longer served here.
    match begin {
        Begin::Wait(deadline) => {
            let weak = weak.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(deadline.into()).await;
                if let Some(node) = weak.upgrade() {
                    if node.router.takeover.expire(std::time::Instant::now()) {
                        node.router.release_takeover();
                    }
                }
            });
        }
        Begin::Release => node.router.release_takeover(),
        Begin::Idle => {}
    }
}

/// The first step of a drain, before the node tells anyone: route by the ring without this
/// node, then hand every room, inbox and moderation state to its next owner. The hand-offs
/// leave on the links at once, while the other nodes learn of the drain only through gossip,
/// later: they reach the new owners behind the state.
pub fn hand_off_everything(node: &Node) {
    let Some(cluster) = node.router.cluster() else { return };
    let view = cluster.view();
    let ring =
        Arc::new(Ring::new(view.ready_members().map(|member| member.node_id.clone()).filter(|id| *id != node.id)));
    node.router.set_ring(ring.clone());
    hand_off(node, &ring);
    send_done(node, &ring, None);
}

fn hand_off(node: &Node, ring: &Arc<Ring>) {
    let Some(cluster) = node.router.cluster() else { return };
    // From here on no key of another node is started here: ops for them are forwarded,
    // and on each link they follow the state handed off below.
    node.router.set_owner_ring(ring.clone());
    let owns = |key: &RoomKey| ring.owner(key.as_str()) == Some(&node.id);
    for (key, meta) in node.router.owner.take_meta_not_owned(owns) {
        if let Some(owner) = ring.owner(key.as_str()) {
            if let Err(err) = cluster.send(owner, peer::encode_meta(&key, &meta)) {
                tracing::warn!(room = %key, owner = %owner, error = %err, "moderation hand-off failed");
            }
        }
    }
    for inbox in node.router.owner.take_inboxes_not_owned(owns) {
        match ring.owner(inbox.key.as_str()) {
            Some(owner) => {
                if let Err(err) = cluster.send(owner, peer::encode_inbox(&inbox)) {
                    tracing::warn!(user = %inbox.key, owner = %owner, error = %err, "inbox hand-off failed");
                }
            }
            None => tracing::warn!(user = %inbox.key, "no ready node to hand the inbox to"),
        }
    }
    // Each snapshot is sent while its room's shard is still locked, so an op for the room
    // that finds it gone here is forwarded behind it on the same link.
    let orphaned = std::cell::Cell::new(0usize);
    let moved = node.router.owner.take_rooms_not_owned(&*node.router, owns, |snapshot| {
        match ring.owner(snapshot.key.as_str()) {
            Some(owner) => {
                if let Err(err) = cluster.send(owner, peer::encode_snapshot(&snapshot)) {
                    tracing::warn!(room = %snapshot.key, owner = %owner, error = %err, "room hand-off failed");
                }
            }
            None => orphaned.set(orphaned.get() + 1),
        }
    });
    if orphaned.get() > 0 {
        // A node off the ring with nobody to hand to: fenced, or alone and leaving.
        tracing::warn!(rooms = orphaned.get(), "no ready node to hand rooms to; dropped");
    }
    if moved > 0 {
        tracing::info!(rooms = moved, "rooms handed over to their new owners");
        crate::metrics::rooms_handed_off(moved);
    }
}

/// Tells `to` (every member of `ring`, this node included, when `None`) that this node
/// handed off and resubscribed everything it had to for `ring`: behind the snapshots and
/// resubscriptions on each link, it lets the new owners serve the keys they gained (see
/// `takeover.rs`).
fn send_done(node: &Node, ring: &Ring, to: Option<&NodeId>) {
    let Some(cluster) = node.router.cluster() else { return };
    let hash = crate::takeover::ring_hash(ring);
    if to.is_none() {
        // This node's own resubscriptions are in too.
        node.router.on_takeover_done(&node.id, hash);
    }
    for member in ring.members().iter().filter(|member| **member != node.id && to.is_none_or(|to| to == *member)) {
        if let Err(err) = cluster.send(member, peer::encode_takeover_done(hash)) {
            tracing::warn!(member = %member, error = %err, "takeover completion not sent");
        }
    }
}

fn resubscribe(node: &Node, previous: &ClusterView, current: &ClusterView) {
    let moved =
        local_members_where(node, |room| previous.ring.owner(room.as_str()) != current.ring.owner(room.as_str()));
    if !moved.is_empty() {
        tracing::info!(rooms = moved.len(), "resubscribing rooms at their new owners");
    }
    for (room, members) in moved {
        if let Err(err) = node.router.route_by(OwnerOp::Resubscribe { room: room.clone(), members }, &current.ring) {
            tracing::warn!(room = %room, error = %err.message, "resubscribe failed");
        }
    }
}

/// Answers a resync request of `owner`: resubscribes there every room of a local connection
/// that `owner` owns.
pub fn resync(node: &Node, owner: &NodeId) {
    let ring = node.router.ring();
    let rooms = local_members_where(node, |room| ring.owner(room.as_str()) == Some(owner));
    for (room, members) in rooms {
        if let Err(err) = node.router.route_by(OwnerOp::Resubscribe { room: room.clone(), members }, &ring) {
            tracing::warn!(room = %room, error = %err.message, "resync failed");
        }
    }
}

/// The local connections of every room that matches `filter`, as senders: those the room's
/// owner said joined. A join still on its way is not one: its owner (old, or new behind the
/// hand-off) answers it with the replay and the ack; resubscribing it as well would let live
/// messages reach it before them.
fn local_members_where(node: &Node, filter: impl Fn(&RoomKey) -> bool) -> HashMap<RoomKey, Vec<Sender>> {
    let mut moved: HashMap<RoomKey, Vec<Sender>> = HashMap::new();
    let mut joined: HashMap<RoomKey, HashSet<ConnId>> = HashMap::new();
    for conn in node.edge.hub.all() {
        let Some(identity) = conn.identity() else { continue };
        let rooms: Vec<RoomKey> = conn.rooms.lock().rooms.iter().cloned().collect();
        for room in rooms {
            if !filter(&room) {
                continue;
            }
            let in_room = joined
                .entry(room.clone())
                .or_insert_with(|| node.edge.hub.in_room(&room).iter().map(|conn| conn.id).collect());
            if !in_room.contains(&conn.id) {
                continue;
            }
            moved.entry(room).or_default().push(Sender {
                conn: ConnRef { node: node.id.clone(), conn_id: conn.id },
                user_id: identity.user_id.clone(),
                name: identity.name.clone(),
                is_moderator: identity.is_moderator(),
                request_id: 0,
            });
        }
    }
    moved
}
