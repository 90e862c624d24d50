//! The edge: this node's registry of its own connections and of the rooms they are in, and
//! the local fan-out of [`EdgeMsg`]s from owners.
//!
//! The hub only ever queues into outboxes; it never calls an owner, so an owner may call it
//! while holding a room lock (lock order: owner shard → hub shard → connection).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use parking_lot::Mutex;
use smallvec::SmallVec;

use crate::close::Disconnect;
use crate::edge::conn::{Conn, ConnId, Pushed};
use crate::edge::deflate::SharedText;
use crate::metrics;
use crate::ops::EdgeMsg;
use crate::room::RoomKey;

const NUM_SHARDS: usize = 64;

/// A room's local connections: one, inline, in every personal room (a `Vec` would allocate
/// room for four).
type RoomConns = SmallVec<[Arc<Conn>; 1]>;

pub struct Hub {
    rooms: Box<[Mutex<HashMap<RoomKey, RoomConns>>]>,
    conns: Box<[Mutex<HashMap<ConnId, Arc<Conn>>>]>,
    hasher: std::collections::hash_map::RandomState,
    error_limit: u32,
    error_window: std::time::Duration,
    /// Messages in and out of the connections that closed, by tenant (the admin stats).
    closed_counts: Mutex<HashMap<Arc<str>, (u64, u64)>>,
    /// Server-side requests of this node waiting for their answers.
    pub service: super::service::ServiceReplies,
}

impl Hub {
    pub fn new(error_limit: u32, error_window: std::time::Duration) -> Self {
        Hub {
            rooms: (0..NUM_SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            conns: (0..NUM_SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            error_limit,
            error_window,
            closed_counts: Mutex::new(HashMap::new()),
            service: Default::default(),
        }
    }

    fn room_shard(&self, room: &RoomKey) -> &Mutex<HashMap<RoomKey, RoomConns>> {
        let mut hasher = self.hasher.build_hasher();
        room.hash(&mut hasher);
        &self.rooms[hasher.finish() as usize % NUM_SHARDS]
    }

    fn conn_shard(&self, conn_id: ConnId) -> &Mutex<HashMap<ConnId, Arc<Conn>>> {
        &self.conns[conn_id as usize % NUM_SHARDS]
    }

    pub fn register(&self, conn: Arc<Conn>) {
        self.conn_shard(conn.id).lock().insert(conn.id, conn);
    }

    pub fn get(&self, conn_id: ConnId) -> Option<Arc<Conn>> {
        self.conn_shard(conn_id).lock().get(&conn_id).cloned()
    }

    pub fn num_connections(&self) -> usize {
        self.conns.iter().map(|shard| shard.lock().len()).sum()
    }

    /// Rooms with at least one local connection.
    pub fn num_rooms(&self) -> usize {
        self.rooms.iter().map(|shard| shard.lock().len()).sum()
    }

    /// Frames queued to all local connections, and to the most backed-up one.
    pub fn queued_frames(&self) -> (usize, usize) {
        let (mut total, mut deepest) = (0, 0);
        for shard in self.conns.iter() {
            for conn in shard.lock().values() {
                let queued = conn.outbox.queued();
                total += queued;
                deepest = deepest.max(queued);
            }
        }
        (total, deepest)
    }

    /// Every live connection (for shutdown).
    pub fn all(&self) -> Vec<Arc<Conn>> {
        self.conns.iter().flat_map(|shard| shard.lock().values().cloned().collect::<Vec<_>>()).collect()
    }

    /// Forgets a closed connection and returns the rooms it was in (or joining), which the
    /// caller leaves at their owners.
    pub fn unregister(&self, conn: &Arc<Conn>) -> Vec<RoomKey> {
        self.conn_shard(conn.id).lock().remove(&conn.id);
        let rooms: Vec<RoomKey> = {
            let mut conn_rooms = conn.rooms.lock();
            conn_rooms.closed = true;
            conn_rooms.rooms.drain().collect()
        };
        for room in &rooms {
            self.remove_from_room(room, conn.id);
        }
        if let Some(identity) = conn.identity() {
            let mut closed = self.closed_counts.lock();
            let counts = closed.entry(identity.tenant.clone()).or_default();
            counts.0 += conn.received.load(std::sync::atomic::Ordering::Relaxed);
            counts.1 += conn.outbox.sent();
        }
        rooms
    }

    /// Messages received from and sent to the clients of `tenant` since the node started.
    pub fn message_counts(&self, tenant: &str) -> (u64, u64) {
        let (mut received, mut sent) = self.closed_counts.lock().get(tenant).copied().unwrap_or_default();
        for conn in self.all() {
            if conn.identity().is_some_and(|identity| &*identity.tenant == tenant) {
                received += conn.received.load(std::sync::atomic::Ordering::Relaxed);
                sent += conn.outbox.sent();
            }
        }
        (received, sent)
    }

    /// This node's connections in `room`.
    pub fn in_room(&self, room: &RoomKey) -> Vec<Arc<Conn>> {
        self.room_shard(room).lock().get(room).map(|conns| conns.to_vec()).unwrap_or_default()
    }

    fn remove_from_room(&self, room: &RoomKey, conn_id: ConnId) {
        let mut shard = self.room_shard(room).lock();
        if let Some(conns) = shard.get_mut(room) {
            conns.retain(|conn| conn.id != conn_id);
            if conns.is_empty() {
                shard.remove(room);
            }
        }
    }

    /// Applies a message from an owner.
    pub fn handle(&self, msg: EdgeMsg) {
        match msg {
            EdgeMsg::Deliver { room, exclude, frame } => {
                let shard = self.room_shard(&room).lock();
                let Some(conns) = shard.get(&room) else {
                    return;
                };
                let mut delivered = 0;
                // One shared frame: its compressed form, if any recipient wants one, is made once.
                let frame = Arc::new(SharedText::new(frame));
                for conn in conns {
                    if Some(conn.id) != exclude && conn.outbox.push_shared(frame.clone()) == Pushed::Queued {
                        delivered += 1;
                    }
                }
                metrics::deliveries(delivered);
            }
            EdgeMsg::Reply { conn_id, frame, is_error, .. } => {
                let Some(conn) = self.get(conn_id) else {
                    if !self.service.answer(conn_id, frame) {
                        tracing::debug!(conn_id, "reply to a connection gone");
                    }
                    return;
                };
                conn.outbox.push_text(frame);
                if is_error && conn.record_error(self.error_limit, self.error_window) {
                    conn.outbox.close(Disconnect::TOO_MANY_ERRORS);
                }
            }
            EdgeMsg::Joined { room, conn_id, frames, .. } => {
                let Some(conn) = self.get(conn_id) else {
                    return;
                };
                {
                    let mut shard = self.room_shard(&room).lock();
                    let mut conn_rooms = conn.rooms.lock();
                    if conn_rooms.closed {
                        return;
                    }
                    let entry = shard.entry(room.clone());
                    // The connection keeps the hub's key of the room (the first joiner's),
                    // not one string per member.
                    conn_rooms.rooms.replace(entry.key().clone());
                    let conns = entry.or_default();
                    if !conns.iter().any(|c| c.id == conn_id) {
                        conns.push(conn.clone());
                    }
                }
                if room.room().starts_with("user:") {
                    // In its personal room now: the connection may be told it is connected.
                    conn.release_welcome();
                }
                conn.outbox.push_answer(frames);
            }
            EdgeMsg::Groups { conn_id, added, removed } => {
                // Joining and leaving rooms means calling owners, which the hub never does
                // (an owner may be calling it): the connection's writer applies the change.
                if let Some(conn) = self.get(conn_id) {
                    conn.push_group_change(added, removed);
                }
            }
            EdgeMsg::Route(_) | EdgeMsg::PresenceInfo { .. } => {
                // Routed by the node before it reaches the hub.
                tracing::warn!("route request reached the hub, dropped");
            }
            EdgeMsg::Left { room, conn_id, frames, .. } => {
                let Some(conn) = self.get(conn_id) else {
                    return;
                };
                conn.rooms.lock().rooms.remove(&room);
                self.remove_from_room(&room, conn_id);
                if room.room().starts_with("user:") {
                    if frames.first() == Some(&crate::frames::user_connections_refused()) {
                        // Its user has as many connections as it may: never welcomed.
                        return conn.outbox.close(Disconnect::USER_CONNECTIONS);
                    }
                    // Refused its personal room: the connection is still told it is connected.
                    conn.release_welcome();
                }
                conn.outbox.push_answer(frames);
            }
        }
    }
}
