//! Owner-side room state: the rooms whose key this node owns.
//!
//! Every [`OwnerOp`] of a room is applied here under the lock of the room's shard, so a
//! room's operations are serialized: `seq` is assigned, the frame rendered once, and the
//! [`EdgeMsg`]s handed to the edges before the lock is released, which keeps the frames of a
//! room in `seq` order on every edge. Sends to edges never wait (a local edge queues into
//! bounded outboxes; a peer link has a bounded queue).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use ringcast_cluster::NodeId;
use serde::Serialize;

use crate::frames;
use crate::ids::IdGen;
use crate::metrics;
use crate::ops::{ConnRef, EdgeMsg, OwnerOp, Request, RequestKind, Sender};
use crate::protocol::{ChatSend, ErrorCode, ReplyError, Since};
use crate::room::RoomKey;
use crate::store::{journal, MemoryStore, Store, Write};
use crate::time;

const NUM_SHARDS: usize = 64;

/// Where the owner's answers go: the node-local edge or a peer link. Implemented by
/// [`crate::node::Node`].
pub trait EdgeSink {
    fn send_to_edge(&self, node: &NodeId, msg: EdgeMsg);
}

/// The rooms this node owns.
pub struct Owner {
    shards: Box<[Mutex<HashMap<RoomKey, Room>>]>,
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
}

impl UserBox {
    /// Nothing worth keeping: the entry can go.
    fn is_idle(&self) -> bool {
        self.messages.is_empty()
            && self.sent.order.is_empty()
            && self.status.is_none()
            && self.message.is_none()
            && self.offline_at.is_none()
            && self.subscribers.is_empty()
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
pub use admin::{OwnedCounts, RoomInfo};
mod direct;
mod durable;
pub use durable::Refusal;
mod moderation;
mod presence;

mod handoff;
mod stored;
pub use handoff::RoomSnapshot;
use stored::ChatMessageData;
pub use stored::{MessageExtra, StoredMessage};
mod membership;
mod messages;
use membership::{leave, members, Added, Removed};

/// One room on its owner.
struct Room {
    epoch: Arc<str>,
    seq: u64,
    /// The last `history_size` messages, oldest first.
    history: VecDeque<Arc<StoredMessage>>,
    /// Subscribed nodes and how many of the room's connections each holds.
    nodes: HashMap<NodeId, u32>,
    users: HashMap<Arc<str>, RoomUser>,
    /// Recent `client_id`s by (user, client_id), with the ack they got, oldest first.
    sent: SentIds,
    /// Users typing, with the instant their `typing:true` runs out.
    typing: Vec<(Arc<str>, std::time::Instant)>,
    /// Whether the durable state is in memory (always ready without a durable store).
    load: durable::Load,
    /// Store generation: bumped by a failed write (see [`durable`]).
    gen: u64,
    /// The store is known to hold this room's epoch.
    stored: bool,
    /// Jobs of this room submitted to the store and not answered yet.
    in_flight: u32,
}

/// The idempotency memory of a room: the last [`SENT_IDS_PER_ROOM`] sends that carried a
/// `client_id`, so a retry gets the first ack again instead of a second message.
#[derive(Default)]
struct SentIds {
    acks: HashMap<(Arc<str>, String), SentAck>,
    order: VecDeque<(Arc<str>, String)>,
}

/// What the first send with a `client_id` was acknowledged with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentAck {
    pub id: String,
    pub seq: u64,
    pub ts: String,
}

const SENT_IDS_PER_ROOM: usize = 1000;

impl SentIds {
    fn insert(&mut self, key: (Arc<str>, String), ack: SentAck) {
        if self.acks.insert(key.clone(), ack).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > SENT_IDS_PER_ROOM {
            if let Some(oldest) = self.order.pop_front() {
                self.acks.remove(&oldest);
            }
        }
    }
}

struct RoomUser {
    name: Arc<str>,
    /// A moderator or admin (from the token of its latest join).
    moderator: bool,
    conns: Vec<ConnRef>,
}

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
        }
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
    pub fn with_presence_grace(mut self, grace: std::time::Duration) -> Self {
        self.presence_grace = grace;
        self
    }

    fn shard_index(&self, room: &RoomKey) -> usize {
        let mut hasher = self.hasher.build_hasher();
        room.hash(&mut hasher);
        hasher.finish() as usize % NUM_SHARDS
    }

    fn shard(&self, room: &RoomKey) -> &Mutex<HashMap<RoomKey, Room>> {
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
    pub fn handle(&self, sink: &dyn EdgeSink, op: OwnerOp, owns: impl Fn(&RoomKey) -> bool) -> Result<(), OwnerOp> {
        let mut shard = self.shard(op.room()).lock();
        if !shard.contains_key(op.room()) && !owns(op.room()) {
            return Err(op);
        }
        if self.store.durable() {
            self.gate(&mut shard, sink, op);
        } else {
            self.apply(&mut shard, sink, op);
        }
        Ok(())
    }

    /// Applies one op to the room's state in memory.
    fn apply(&self, shard: &mut HashMap<RoomKey, Room>, sink: &dyn EdgeSink, op: OwnerOp) {
        let mut shard = shard;
        let (room, sender, op_id, kind) = match op {
            OwnerOp::Resubscribe { room, members } => return self.resubscribe(shard, sink, room, members),
            OwnerOp::Request(Request { room, sender, op_id, kind }) => (room, sender, op_id, kind),
        };
        match kind {
            RequestKind::UserGroups { added, removed } => {
                // Every connection of a user is in its personal room.
                if let Some(room) = shard.get(&room) {
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
            RequestKind::Join { since } => self.join(&mut shard, sink, room, sender, op_id, since),
            RequestKind::Leave => {
                let personal = room.room().starts_with("user:");
                let removed = leave(&mut shard, sink, room.clone(), sender.clone(), op_id);
                if personal && removed != Removed::NotThere {
                    self.user_conn_gone(shard.get(&room), sink, &room, &sender.conn);
                }
            }
            RequestKind::Presence(op) => self.presence_op(&shard, sink, &room, &sender, op_id.as_deref(), op),
            RequestKind::Members => members(&shard, sink, &room, &sender, op_id),
            RequestKind::Publish(message) => self.publish(&mut shard, sink, &room, &sender, op_id.as_deref(), message),
            RequestKind::Act(action) => self.act(&mut shard, sink, &room, &sender, op_id.as_deref(), action),
            RequestKind::ToUser(delivery) => self.to_user(&mut shard, sink, &room, &sender, op_id.as_deref(), delivery),
        }
    }

    fn new_room(&self) -> Room {
        metrics::rooms_owned(1.0);
        Room {
            epoch: Arc::from(self.ids.epoch(time::now_millis())),
            seq: 0,
            history: VecDeque::new(),
            nodes: HashMap::new(),
            users: HashMap::new(),
            sent: SentIds::default(),
            typing: Vec::new(),
            load: if self.store.durable() { durable::Load::Stale } else { durable::Load::Ready },
            gen: 0,
            stored: false,
            in_flight: 0,
        }
    }

    fn resubscribe(&self, shard: &mut HashMap<RoomKey, Room>, sink: &dyn EdgeSink, key: RoomKey, members: Vec<Sender>) {
        let room = shard.entry(key.clone()).or_insert_with(|| self.new_room());
        for member in members {
            room.add_conn(&member.user_id, &member.name, member.is_moderator, &member.conn);
            sink.send_to_edge(
                &member.conn.node,
                EdgeMsg::Joined { room: key.clone(), conn_id: member.conn.conn_id, request_id: 0, frames: Vec::new() },
            );
        }
    }

    fn join(
        &self,
        shard: &mut HashMap<RoomKey, Room>,
        sink: &dyn EdgeSink,
        key: RoomKey,
        sender: Sender,
        op_id: Option<String>,
        since: Option<Since>,
    ) {
        if self.is_banned(&key, &sender.user_id) {
            let error = ReplyError::new(ErrorCode::Forbidden, "banned from this room");
            metrics::error_sent(error.code.as_str());
            let frames = vec![frames::error(op_id.as_deref(), &error)];
            let left = EdgeMsg::Left { room: key, conn_id: sender.conn.conn_id, request_id: sender.request_id, frames };
            return sink.send_to_edge(&sender.conn.node, left);
        }
        let room = shard.entry(key.clone()).or_insert_with(|| self.new_room());
        let added = room.add_conn(&sender.user_id, &sender.name, sender.is_moderator, &sender.conn);
        let mut frames = if key.room().starts_with("user:") { self.take_inbox(&key) } else { Vec::new() };
        let recovered = since.map(|since| {
            let replay = room.replay_after(&since);
            if let Some(messages) = &replay {
                frames.extend(messages.iter().map(|message| message.render(key.room(), true)));
            }
            replay.is_some()
        });
        #[derive(Serialize)]
        struct JoinAck<'a> {
            room: &'a str,
            status: &'static str,
            seq: u64,
            epoch: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            recovered: Option<bool>,
        }
        let ack = JoinAck { room: key.room(), status: "joined", seq: room.seq, epoch: &room.epoch, recovered };
        frames.extend(frames::ack(op_id.as_deref(), ack));
        sink.send_to_edge(
            &sender.conn.node,
            EdgeMsg::Joined { room: key.clone(), conn_id: sender.conn.conn_id, request_id: sender.request_id, frames },
        );
        if key.room().starts_with("user:") && added != Added::AlreadyIn {
            self.user_conn_added(room, sink, &key, &sender.conn, added == Added::FirstOfUser);
        }
        if added == Added::FirstOfUser {
            #[derive(Serialize)]
            struct MemberJoined<'a> {
                room: &'a str,
                user_id: &'a str,
                name: &'a str,
            }
            let ts = time::rfc3339_millis(time::now_millis());
            let frame = frames::event(
                "member.joined",
                MemberJoined { room: key.room(), user_id: &sender.user_id, name: &sender.name },
                &ts,
            );
            room.fan_out(sink, &key, Some(&sender.conn), frame);
        }
    }

    fn publish(
        &self,
        shard: &mut HashMap<RoomKey, Room>,
        sink: &dyn EdgeSink,
        key: &RoomKey,
        sender: &Sender,
        op_id: Option<&str>,
        message: ChatSend,
    ) {
        let Some(room) = shard.get_mut(key).filter(|room| room.has_conn(&sender.user_id, &sender.conn)) else {
            return reply_error(sink, sender, op_id, ReplyError::new(ErrorCode::Forbidden, "not in room"));
        };
        #[derive(Serialize)]
        struct SendAck<'a> {
            room: &'a str,
            id: &'a str,
            seq: u64,
            ts: &'a str,
        }
        let sent_key = message.client_id.clone().map(|client_id| (sender.user_id.clone(), client_id));
        if let Some(first) = sent_key.as_ref().and_then(|sent_key| room.sent.acks.get(sent_key)) {
            // A retry: the first ack again, nothing stored or sent twice.
            let data = SendAck { room: key.room(), id: &first.id, seq: first.seq, ts: &first.ts };
            if let Some(ack) = frames::ack(op_id, data) {
                let reply = EdgeMsg::Reply {
                    conn_id: sender.conn.conn_id,
                    request_id: sender.request_id,
                    frame: ack,
                    is_error: false,
                };
                sink.send_to_edge(&sender.conn.node, reply);
            }
            return;
        }
        let thread_root = match &message.reply_to {
            None => None,
            Some(reply_to) => match room.history.iter().find(|stored| &stored.id == reply_to) {
                Some(parent) => Some(parent.thread_root.clone().unwrap_or_else(|| parent.id.clone())),
                // The parent may have aged out of the bounded history: keep the reference.
                None => Some(reply_to.clone()),
            },
        };
        let now = time::now_millis();
        room.seq += 1;
        let stored = Arc::new(StoredMessage {
            id: self.ids.message_id(now),
            seq: room.seq,
            ts: time::rfc3339_millis(now),
            user_id: sender.user_id.clone(),
            name: sender.name.clone(),
            text: message.text,
            attachments: message.attachments,
            reply_to: message.reply_to,
            thread_root,
            extra: None,
        });
        let frame = stored.render(key.room(), false);
        journal::record_with(|| Write::Append { message: stored.clone(), client_id: message.client_id.clone() });
        room.history.push_back(stored.clone());
        while room.history.len() > self.history_size {
            room.history.pop_front();
        }
        if let Some(sent_key) = sent_key {
            room.sent.insert(sent_key, SentAck { id: stored.id.clone(), seq: stored.seq, ts: stored.ts.clone() });
        }
        if let Some(ack) =
            frames::ack(op_id, SendAck { room: key.room(), id: &stored.id, seq: stored.seq, ts: &stored.ts })
        {
            sink.send_to_edge(
                &sender.conn.node,
                EdgeMsg::Reply {
                    conn_id: sender.conn.conn_id,
                    request_id: sender.request_id,
                    frame: ack,
                    is_error: false,
                },
            );
        }
        room.fan_out(sink, key, Some(&sender.conn), frame);
    }
}

fn ack<T: Serialize>(sink: &dyn EdgeSink, sender: &Sender, op_id: Option<&str>, data: T) {
    if let Some(frame) = frames::ack(op_id, data) {
        let msg =
            EdgeMsg::Reply { conn_id: sender.conn.conn_id, request_id: sender.request_id, frame, is_error: false };
        sink.send_to_edge(&sender.conn.node, msg);
    }
}

fn reply_error(sink: &dyn EdgeSink, sender: &Sender, op_id: Option<&str>, error: ReplyError) {
    let frame = frames::error(op_id, &error);
    metrics::error_sent(error.code.as_str());
    sink.send_to_edge(
        &sender.conn.node,
        EdgeMsg::Reply { conn_id: sender.conn.conn_id, request_id: sender.request_id, frame, is_error: true },
    );
}

fn member_left_frame(key: &RoomKey, user_id: &str) -> Bytes {
    #[derive(Serialize)]
    struct MemberLeft<'a> {
        room: &'a str,
        user_id: &'a str,
    }
    let ts = time::rfc3339_millis(time::now_millis());
    frames::event("member.left", MemberLeft { room: key.room(), user_id }, &ts)
}
