//! Owner-side room state: the rooms whose key this node owns.
//!
//! Every [`OwnerOp`] of a room is applied here under the lock of the room's shard, so a
//! room's operations are serialized: `seq` is assigned, the frame rendered once, and the
//! [`EdgeMsg`]s handed to the edges before the lock is released, which keeps the frames of a
//! room in `seq` order on every edge. Sends to edges never wait (a local edge queues into
//! bounded outboxes; a peer link has a bounded queue).

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use ringcast_cluster::NodeId;

use crate::ids::IdGen;
use crate::ops::{ConnRef, EdgeMsg, OwnerOp, Request, RequestKind, Sender};
use crate::room::RoomKey;
use crate::store::{MemoryStore, Store};
use crate::webhook::Webhooks;

const NUM_SHARDS: usize = 64;

/// Where the owner's answers go: the node-local edge or a peer link. Implemented by
/// [`crate::node::Node`].
pub trait EdgeSink {
    fn send_to_edge(&self, node: &NodeId, msg: EdgeMsg);
    /// Whether the way to `node` is so backed up that a delivery may not be queued: an op
    /// that would take a `seq` is then refused before it is applied, instead of leaving a
    /// hole in that node's subscribers' stream.
    fn congested(&self, _node: &NodeId) -> bool {
        false
    }
}

/// The rooms this node owns.
pub struct Owner {
    shards: Box<[Mutex<Rooms>]>,
    hasher: std::collections::hash_map::RandomState,
    ids: IdGen,
    history_size: usize,
    /// How long a `typing:true` lasts without renewal.
    typing_timeout: std::time::Duration,
    /// Rooms with someone typing: the only ones the typing sweep looks at.
    typing_rooms: Mutex<std::collections::HashSet<RoomKey>>,
    /// Offline DM inboxes and DM idempotency keys, by personal-room key, sharded like the
    /// rooms (lock order: room shard, then inbox shard).
    inboxes: Box<[Mutex<HashMap<RoomKey, UserBox>>]>,
    inbox_size: usize,
    inbox_ttl: std::time::Duration,
    /// Bans and join requests by room key, sharded like the rooms.
    meta: Box<[Mutex<HashMap<RoomKey, RoomMeta>>]>,
    /// How long a user stays online after its last connection closed.
    presence_grace: std::time::Duration,
    /// `--max-connections-per-user`: a user's connections in its personal room at most.
    max_user_connections: Option<usize>,
    /// Personal rooms whose grace runs: the only ones the presence sweep looks at.
    presence_pending: Mutex<std::collections::HashSet<RoomKey>>,
    /// Where durable state is written through (memory by default).
    store: Arc<dyn Store>,
    /// Rooms to load from a durable store (read by the node's loader task). Unbounded, yet it
    /// holds at most one key per room held: a key is sent only when its room turns `Loading`,
    /// and the room stays so (never forgotten, sending no second key) until its load is
    /// answered, which comes after the loader took the key; only a hand-off (a ring change)
    /// ends a `Loading` early. The loader takes each key at once and loads it in a task of its
    /// own. A bound would have to drop a load, and strand the room's waiting ops.
    loads: tokio::sync::mpsc::UnboundedSender<RoomKey>,
    /// Where the events of the keys this node owns are posted (none by default).
    webhooks: Webhooks,
}

/// What the owner of a user's personal room keeps for it while it may be offline.
#[derive(Default)]
pub struct UserBox {
    /// DMs waiting for the user's next connection: (expiry in ms since the epoch, frame).
    pub messages: VecDeque<(u64, Bytes)>,
    /// DMs sent to this user with a `client_id`, by (sender, client_id).
    sent: SentIds,
    /// Presence the user set (`away`, `busy`; `None` = online when connected) and its message.
    pub status: Option<String>,
    pub message: Option<String>,
    /// While the last connection's grace runs: when the user turns offline (ms since the epoch).
    pub offline_at: Option<u64>,
    /// Connections subscribed to this user's presence.
    pub subscribers: Vec<ConnRef>,
    /// The user's server-side room subscriptions (`ops::subscription_entry`): every new
    /// connection of the user joins them.
    pub rooms: Vec<String>,
}

impl UserBox {
    /// Nothing worth keeping: the entry can go.
    fn is_idle(&self) -> bool {
        self.messages.is_empty()
            && self.sent.is_empty()
            && self.status.is_none()
            && self.message.is_none()
            && self.offline_at.is_none()
            && self.subscribers.is_empty()
            && self.rooms.is_empty()
    }
}

/// A user's inbox handed to the new owner of its personal room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxSnapshot {
    pub key: RoomKey,
    pub messages: Vec<(u64, Bytes)>,
    pub sent: Vec<(Arc<str>, String, SentAck)>,
    pub status: Option<String>,
    pub message: Option<String>,
    pub subscribers: Vec<ConnRef>,
    pub rooms: Vec<String>,
}

/// Moderation state of a room key: outlives the room's members.
#[derive(Debug, Clone, Default)]
pub struct RoomMeta {
    /// Banned users and when their ban ends (ms since the epoch; `None` = never).
    pub bans: Vec<(Arc<str>, Option<u64>)>,
    /// Join requests waiting for a moderator, with the asking connection.
    pub pending: Vec<Sender>,
}

mod admin;
mod context;
mod direct;
mod durable;
mod handoff;
mod membership;
mod messages;
mod moderation;
mod presence;
mod publish;
mod room;
mod stored;

pub use crate::store::{MessageExtra, SentAck, StoredMessage};
use context::OpCtx;
pub use handoff::RoomSnapshot;
use membership::{leave, members};
use room::{Added, Removed, Room, Rooms, SentIds};
use stored::ChatMessageData;

impl Owner {
    pub fn new(ids: IdGen, history_size: usize, typing_timeout: std::time::Duration) -> Self {
        Self::with_inbox(ids, history_size, typing_timeout, 1000, std::time::Duration::from_secs(86_400))
    }

    pub fn with_inbox(
        ids: IdGen,
        history_size: usize,
        typing_timeout: std::time::Duration,
        inbox_size: usize,
        inbox_ttl: std::time::Duration,
    ) -> Self {
        Owner {
            inboxes: (0..NUM_SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            meta: (0..NUM_SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            presence_grace: std::time::Duration::from_secs(5),
            max_user_connections: None,
            presence_pending: Mutex::new(std::collections::HashSet::new()),
            inbox_size,
            inbox_ttl,
            shards: (0..NUM_SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            ids,
            history_size,
            typing_timeout,
            typing_rooms: Mutex::new(std::collections::HashSet::new()),
            store: Arc::new(MemoryStore),
            // Without a durable store nothing is loaded: no loader reads this channel.
            loads: tokio::sync::mpsc::unbounded_channel().0,
            webhooks: Webhooks::default(),
        }
    }

    /// Posts the events of the keys this node owns to `webhooks`.
    pub fn with_webhooks(mut self, webhooks: Webhooks) -> Self {
        self.webhooks = webhooks;
        self
    }

    /// Writes durable state through `store`; rooms to load are sent to `loads`.
    pub fn with_store(mut self, store: Arc<dyn Store>, loads: tokio::sync::mpsc::UnboundedSender<RoomKey>) -> Self {
        self.store = store;
        self.loads = loads;
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Sets the presence grace (default 5 s).
    /// Refuses a user's connection over `limit` (its personal room's join; the edge closes it
    /// with `Disconnect::USER_CONNECTIONS`).
    pub fn with_user_connection_limit(mut self, limit: Option<usize>) -> Self {
        self.max_user_connections = limit;
        self
    }

    pub fn with_presence_grace(mut self, grace: std::time::Duration) -> Self {
        self.presence_grace = grace;
        self
    }

    fn shard_index(&self, room: &RoomKey) -> usize {
        self.hasher.hash_one(room) as usize % NUM_SHARDS
    }

    fn shard(&self, room: &RoomKey) -> &Mutex<Rooms> {
        &self.shards[self.shard_index(room)]
    }

    fn inbox_shard(&self, room: &RoomKey) -> &Mutex<HashMap<RoomKey, UserBox>> {
        &self.inboxes[self.shard_index(room)]
    }

    fn meta_shard(&self, room: &RoomKey) -> &Mutex<HashMap<RoomKey, RoomMeta>> {
        &self.meta[self.shard_index(room)]
    }

    /// A fresh message id (DMs are given theirs by the sender's edge).
    pub fn message_id(&self, now_millis: u64) -> String {
        self.ids.message_id(now_millis)
    }

    /// Applies one operation if this node holds the room or `owns` its key; otherwise gives
    /// the op back (to be forwarded). Holding the room wins over the ring: between a ring
    /// change and the hand-off of a room, its old owner keeps serving it, so no op applies to
    /// a half-moved room. Answers go through `sink`, never back to the caller, so a remote
    /// edge and the local one are served alike.
    ///
    /// With `early`, a resubscription is taken even for a key this node does not own (yet):
    /// a peer whose view of the ring is ahead of ours sent it. The room it starts is *early*:
    /// no other op applies to it before this node owns the key, so nothing is acknowledged
    /// there before this node's own takeover has waited for every member's resubscriptions
    /// (see `takeover.rs`).
    pub fn handle(
        &self,
        sink: &dyn EdgeSink,
        op: OwnerOp,
        owns: impl Fn(&RoomKey) -> bool,
        early: bool,
    ) -> Result<(), OwnerOp> {
        let mut shard = self.shard(op.room()).lock();
        let mine = owns(op.room());
        let resubscription = matches!(op, OwnerOp::Resubscribe { .. });
        match shard.get_mut(op.room()) {
            Some(room) if mine => room.early = false,
            // Automatic joins and leaves (no `op_id`: nothing to acknowledge, no epoch told)
            // only change who is in it; a connection waits for its personal room's join.
            Some(room) if room.early && !resubscription && !is_quiet_membership(&op) => return Err(op),
            Some(_) => {}
            None if mine || (early && resubscription) => {}
            None => return Err(op),
        }
        let started = (!mine).then(|| op.room().clone()).filter(|key| !shard.contains_key(key));
        if self.store.durable() {
            self.gate(&mut shard, sink, op);
        } else {
            self.apply(&mut shard, sink, op);
        }
        if let Some(room) = started.and_then(|key| shard.get_mut(&key)) {
            room.early = true;
        }
        Ok(())
    }

    /// Applies one op to the room's state in memory.
    fn apply(&self, shard: &mut Rooms, sink: &dyn EdgeSink, op: OwnerOp) {
        let (key, sender, op_id, kind) = match op {
            OwnerOp::Resubscribe { room, members } => return self.resubscribe(shard, sink, room, members),
            OwnerOp::Request(Request { room, sender, op_id, kind }) => (room, sender, op_id, kind),
        };
        if let Some(room) = shard.get_mut(&key) {
            self.reset_if_due(room, sink, &key);
        }
        let ctx = OpCtx { sink, key: &key, sender: &sender, op_id: op_id.as_deref(), webhooks: &self.webhooks };
        match kind {
            RequestKind::UserGroups { added, removed } => {
                self.remember_subscriptions(&key, &added, &removed);
                // Every connection of a user is in its personal room.
                if let Some(room) = shard.get(&key) {
                    for user in room.users.values() {
                        for conn in &user.conns {
                            let msg = EdgeMsg::Groups {
                                conn_id: conn.conn_id,
                                added: added.clone(),
                                removed: removed.clone(),
                            };
                            sink.send_to_edge(&conn.node, msg);
                        }
                    }
                }
            }
            RequestKind::Join { since } => self.join(shard, &ctx, since),
            RequestKind::Leave => {
                let removed = leave(shard, &ctx);
                if key.room().starts_with("user:") && removed != Removed::NotThere {
                    self.user_conn_gone(shard.get(&key).map(|room| &**room), sink, &key, &sender.conn);
                }
            }
            RequestKind::Presence(op) => self.presence_op(shard, &ctx, op),
            RequestKind::Members => members(shard, &ctx),
            RequestKind::Publish(message) => self.publish(shard, &ctx, message),
            RequestKind::Act(action) => self.act(shard, &ctx, action),
            RequestKind::ToUser(delivery) => self.to_user(shard, &ctx, delivery),
        }
    }
}

/// A join or leave without `op_id`: a connection's automatic join of its personal and group
/// rooms, or the leave of a closed connection.
fn is_quiet_membership(op: &OwnerOp) -> bool {
    matches!(op.as_request(), Some(Request { op_id: None, kind: RequestKind::Join { .. } | RequestKind::Leave, .. }))
}
