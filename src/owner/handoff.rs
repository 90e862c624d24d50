//! Moving a key's state between owners: rooms (seq, epoch, history, members, idempotency
//! keys) and moderation state handed to a new owner and taken over from an old one, and the
//! connections of nodes that are gone.

use std::sync::Arc;

use ringcast_cluster::NodeId;

use super::membership::{member_left_frame, membership_event, reset_frame, ResetReason};
use super::{Added, EdgeSink, Owner, Removed, Room, RoomMeta, SentAck, StoredMessage};
use crate::metrics;
use crate::ops::{ConnRef, EdgeMsg};
use crate::room::RoomKey;
use crate::webhook::EventType;

/// A room's whole state, handed from its old owner to its new one (drain, node join).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSnapshot {
    pub key: RoomKey,
    pub epoch: String,
    pub seq: u64,
    pub history: Vec<StoredMessage>,
    /// Each user with its name, its moderator flag and its connections.
    pub users: Vec<(Arc<str>, Arc<str>, bool, Vec<ConnRef>)>,
    /// Recent idempotency keys: (user, client_id, first ack), oldest first.
    pub sent: Vec<(Arc<str>, String, SentAck)>,
}

impl Owner {
    /// Removes and returns the moderation state of every key this node no longer owns.
    pub fn take_meta_not_owned(&self, owns: impl Fn(&RoomKey) -> bool) -> Vec<(RoomKey, RoomMeta)> {
        let mut moving = Vec::new();
        for shard in self.meta.iter() {
            let mut shard = shard.lock();
            let keys: Vec<RoomKey> = shard.keys().filter(|key| !owns(key)).cloned().collect();
            for key in keys {
                if let Some(meta) = shard.remove(&key) {
                    moving.push((key, meta));
                }
            }
        }
        moving
    }

    /// Takes over the moderation state handed off by the previous owner of `key`.
    pub fn install_meta(&self, key: RoomKey, incoming: RoomMeta) {
        let mut shard = self.meta_shard(&key).lock();
        let meta = shard.entry(key).or_default();
        for ban in incoming.bans {
            if !meta.bans.iter().any(|(user, _)| *user == ban.0) {
                meta.bans.push(ban);
            }
        }
        for request in incoming.pending {
            if !meta.pending.iter().any(|pending| pending.user_id == request.user_id) {
                meta.pending.push(request);
            }
        }
    }

    /// Removes every room whose key this node no longer owns and gives its snapshot to
    /// `hand` while the room's shard is still locked; returns how many moved. Ops still
    /// waiting for a room's load are answered `unavailable` (the client retries, and
    /// reaches the new owner).
    pub fn take_rooms_not_owned(
        &self,
        sink: &dyn EdgeSink,
        owns: impl Fn(&RoomKey) -> bool,
        hand: impl Fn(RoomSnapshot),
    ) -> usize {
        let mut moved = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let moving: Vec<RoomKey> = shard.keys().filter(|key| !owns(key)).cloned().collect();
            for key in moving {
                if let Some(mut room) = shard.remove(&key) {
                    metrics::rooms_owned(-1.0);
                    if let super::durable::Load::Loading(waiting) =
                        std::mem::replace(&mut room.load, super::durable::Load::Stale)
                    {
                        for op in waiting {
                            super::durable::refuse(sink, &op, "room is moving, retry");
                        }
                    }
                    hand(room.snapshot(key));
                    moved += 1;
                }
            }
        }
        moved
    }

    /// Takes over a room handed off by its previous owner. A room already started here (by
    /// an edge that moved first) keeps its members; it takes the snapshot's epoch, seq and
    /// history unless it has already stored messages of its own. Then, if the room goes on
    /// under another epoch than the snapshot's, the snapshot's connections that are new here
    /// knew the old one: each gets `room.reset`. (A room loaded from a durable store first
    /// has the snapshot's epoch: nothing to tell.)
    pub fn install(&self, sink: &dyn EdgeSink, snapshot: RoomSnapshot) {
        let mut shard = self.shard(&snapshot.key).lock();
        let key = snapshot.key.clone();
        let room = shard.entry(snapshot.key.clone()).or_insert_with(|| self.new_room());
        if room.seq == 0 && room.history.is_empty() {
            // The room goes on: nothing to announce to members that resubscribed first.
            room.reset_due = false;
            room.began_here = false;
            room.epoch = Arc::from(snapshot.epoch.as_str());
            room.seq = snapshot.seq;
            room.history = snapshot.history.into_iter().map(Arc::new).collect();
            for (user_id, client_id, ack) in snapshot.sent {
                room.sent.insert((user_id, client_id), ack);
            }
        }
        let epoch_changed = *room.epoch != *snapshot.epoch;
        if epoch_changed {
            // (Under the snapshot's own epoch the room was loaded from the durable store,
            // which holds that history.)
            tracing::warn!(room = %snapshot.key, "hand-off arrived after the room started anew; its history is dropped");
        }
        // Rendered once for every connection it goes to.
        let reset = epoch_changed.then(|| reset_frame(&key, room, ResetReason::OwnerLost));
        for (user_id, name, moderator, conns) in snapshot.users {
            for conn in conns {
                let added = room.add_conn(&user_id, &name, moderator, &conn);
                if let (Some(reset), false) = (&reset, added == Added::AlreadyIn) {
                    let frames = vec![reset.clone()];
                    sink.send_to_edge(
                        &conn.node,
                        EdgeMsg::Joined { room: key.clone(), conn_id: conn.conn_id, request_id: 0, frames },
                    );
                }
            }
        }
    }

    /// Forgets every connection of `node` (dead, or restarted as a new generation), with the
    /// `member.left` that follow, and its presence subscriptions.
    pub fn drop_node(&self, sink: &dyn EdgeSink, node: &NodeId) {
        self.drop_subscriber_node(node);
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let mut emptied = Vec::new();
            for (key, room) in shard.iter_mut() {
                if !room.has_node(node) {
                    continue;
                }
                let gone: Vec<(Arc<str>, ConnRef)> = room
                    .users
                    .iter()
                    .flat_map(|(user_id, user)| {
                        user.conns.iter().filter(|conn| &conn.node == node).map(|conn| (user_id.clone(), conn.clone()))
                    })
                    .collect();
                for (user_id, conn) in gone {
                    if room.remove_conn(&user_id, &conn) == Removed::LastOfUser {
                        room.fan_out(sink, key, None, member_left_frame(key, &user_id));
                        membership_event(&self.webhooks, EventType::RoomLeft, key, &user_id);
                    }
                    if key.room().starts_with("user:") {
                        self.user_conn_gone(Some(&*room), sink, key, &conn);
                    }
                }
                if room.can_forget() {
                    emptied.push(key.clone());
                }
            }
            for key in emptied {
                shard.remove(&key);
                metrics::rooms_owned(-1.0);
            }
        }
    }

    /// Drops the presence subscriptions of `node`'s connections.
    fn drop_subscriber_node(&self, node: &NodeId) {
        for shard in self.inboxes.iter() {
            for user_box in shard.lock().values_mut() {
                user_box.subscribers.retain(|conn| &conn.node != node);
            }
        }
    }
}

impl Room {
    fn snapshot(self, key: RoomKey) -> RoomSnapshot {
        RoomSnapshot {
            key,
            epoch: self.epoch.to_string(),
            seq: self.seq,
            history: self.history.iter().map(|message| (**message).clone()).collect(),
            users: self
                .users
                .into_vec()
                .into_iter()
                .map(|(user_id, user)| (user_id, user.name, user.moderator, user.conns.into_vec()))
                .collect(),
            sent: self.sent.into_ordered(),
        }
    }
}
