//! What a node does when the cluster view changes (DESIGN.md "Membership changes"):
//!
//! 1. Owner side: the connections of nodes that died (or restarted as a new generation) are
//!    dropped from the rooms this node holds, with the `member.left` that follow.
//! 2. Owner side: every room whose key now belongs to another node is handed over to it
//!    (seq, epoch, history, members) and forgotten here. A draining node is off its own
//!    ring, so this hands over all its rooms.
//! 3. Edge side: for every room a local connection is in whose owner changed, the edge
//!    sends the new owner a `Resubscribe` with its members there.
//!
//! Without persistence a room whose owner died starts again on its new owner with a new
//! epoch: clients that rejoin with `since` are told `recovered:false`.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use ringcast_cluster::{compute_changes, ClusterChange, ClusterView};
use tokio::sync::watch;

use crate::node::Node;
use crate::peer;
use crate::room::RoomKey;
use crate::route::{ConnRef, OwnerOp, Sender};

pub async fn run(node: Weak<Node>, mut watch: watch::Receiver<Arc<ClusterView>>) {
    let mut previous = watch.borrow_and_update().clone();
    if let Some(node) = node.upgrade() {
        node.set_ring(previous.ring.clone());
    }
    loop {
        if watch.changed().await.is_err() {
            return;
        }
        let current = watch.borrow_and_update().clone();
        let Some(node) = node.upgrade() else { return };
        apply(&node, &previous, &current);
        previous = current;
    }
}

fn apply(node: &Node, previous: &ClusterView, current: &ClusterView) {
    for change in compute_changes(&previous.members, &current.members) {
        match change {
            ClusterChange::Remove(member) => {
                tracing::info!(node = %member.node_id, "member gone");
                node.owner.drop_node(node, &member.node_id);
            }
            ClusterChange::Update { previous, updated } if previous.generation != updated.generation => {
                tracing::info!(node = %updated.node_id, generation = updated.generation, "member restarted");
                node.owner.drop_node(node, &previous.node_id);
            }
            _ => {}
        }
    }
    if previous.ring.members() == current.ring.members() {
        return;
    }
    hand_off(node, current);
    resubscribe(node, previous, current);
    node.set_ring(current.ring.clone());
}

fn hand_off(node: &Node, current: &ClusterView) {
    let Some(cluster) = node.cluster() else { return };
    let owns = |key: &RoomKey| current.ring.owner(key.as_str()) == Some(&node.id);
    let snapshots = node.owner.take_rooms_not_owned(owns);
    if snapshots.is_empty() {
        return;
    }
    tracing::info!(rooms = snapshots.len(), "handing rooms over to their new owners");
    for snapshot in snapshots {
        match current.ring.owner(snapshot.key.as_str()) {
            Some(owner) => {
                if let Err(err) = cluster.send(owner, peer::encode_snapshot(&snapshot)) {
                    tracing::warn!(room = %snapshot.key, owner = %owner, error = %err, "room hand-off failed");
                }
            }
            None => tracing::warn!(room = %snapshot.key, "no ready node to hand the room to"),
        }
    }
}

fn resubscribe(node: &Node, previous: &ClusterView, current: &ClusterView) {
    let mut moved: HashMap<RoomKey, Vec<Sender>> = HashMap::new();
    for conn in node.hub.all() {
        let Some(identity) = conn.identity() else { continue };
        let rooms: Vec<RoomKey> = conn.rooms.lock().rooms.iter().cloned().collect();
        for room in rooms {
            if previous.ring.owner(room.as_str()) == current.ring.owner(room.as_str()) {
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
    if !moved.is_empty() {
        tracing::info!(rooms = moved.len(), "resubscribing rooms at their new owners");
    }
    for (room, members) in moved {
        if let Err(err) = node.route_by(OwnerOp::Resubscribe { room: room.clone(), members }, &current.ring) {
            tracing::warn!(room = %room, error = %err.message, "resubscribe failed");
        }
    }
}
