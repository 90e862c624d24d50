//! One room on its owner: its sequence and history, who is in it and on which nodes, its
//! idempotency memory, and the fan-out of a frame to every node subscribed to it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use ringcast_cluster::NodeId;

use super::{durable, EdgeSink, Owner, SentAck, StoredMessage};
use crate::metrics;
use crate::ops::{ConnRef, EdgeMsg};
use crate::protocol::Since;
use crate::room::RoomKey;
use crate::time;

/// One room on its owner.
pub(super) struct Room {
    pub(super) epoch: Arc<str>,
    pub(super) seq: u64,
    /// The last `history_size` messages, oldest first.
    pub(super) history: VecDeque<Arc<StoredMessage>>,
    /// Subscribed nodes and how many of the room's connections each holds.
    pub(super) nodes: HashMap<NodeId, u32>,
    pub(super) users: HashMap<Arc<str>, RoomUser>,
    /// Recent `client_id`s by (user, client_id), with the ack they got, oldest first.
    pub(super) sent: SentIds,
    /// Users typing, with the instant their `typing:true` runs out.
    pub(super) typing: Vec<(Arc<str>, std::time::Instant)>,
    /// Whether the durable state is in memory (always ready without a durable store).
    pub(super) load: durable::Load,
    /// Store generation: bumped by a failed write (see [`durable`]).
    pub(super) gen: u64,
    /// The store is known to hold this room's epoch.
    pub(super) stored: bool,
    /// Jobs of this room submitted to the store and not answered yet.
    pub(super) in_flight: u32,
    /// Started by a resubscription over a durable store: its members get `room.reset` if the
    /// load finds the store without the room.
    pub(super) reset_due: bool,
    /// Started by a peer's resubscription before this node owned the key (see
    /// [`Owner::handle`]): no other op applies until it does.
    pub(super) early: bool,
}

/// The idempotency memory of a room: the last [`SENT_IDS_PER_ROOM`] sends that carried a
/// `client_id`, so a retry gets the first ack again instead of a second message.
#[derive(Default)]
pub(super) struct SentIds {
    pub(super) acks: HashMap<(Arc<str>, String), SentAck>,
    pub(super) order: VecDeque<(Arc<str>, String)>,
}

const SENT_IDS_PER_ROOM: usize = 1000;

impl SentIds {
    pub(super) fn insert(&mut self, key: (Arc<str>, String), ack: SentAck) {
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

pub(super) struct RoomUser {
    pub(super) name: Arc<str>,
    /// A moderator or admin (from the token of its latest join).
    pub(super) moderator: bool,
    pub(super) conns: Vec<ConnRef>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Added {
    AlreadyIn,
    OneMoreOfUser,
    FirstOfUser,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Removed {
    NotThere,
    OneOfUser,
    LastOfUser,
}

impl Owner {
    pub(super) fn new_room(&self) -> Room {
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
            reset_due: false,
            early: false,
        }
    }
}

impl Room {
    pub(super) fn add_conn(&mut self, user_id: &Arc<str>, name: &Arc<str>, moderator: bool, conn: &ConnRef) -> Added {
        let user = self.users.entry(user_id.clone()).or_insert_with(|| RoomUser {
            name: name.clone(),
            moderator,
            conns: Vec::new(),
        });
        user.moderator = moderator;
        if user.conns.contains(conn) {
            return Added::AlreadyIn;
        }
        let first = user.conns.is_empty();
        user.conns.push(conn.clone());
        *self.nodes.entry(conn.node.clone()).or_insert(0) += 1;
        if first {
            Added::FirstOfUser
        } else {
            Added::OneMoreOfUser
        }
    }

    /// Nobody in it and nothing pending: the room may be forgotten (its state, if any, is in
    /// the store). A room waiting for its load or for answers of the store is kept.
    pub(super) fn can_forget(&self) -> bool {
        self.users.is_empty() && self.in_flight == 0 && !matches!(self.load, durable::Load::Loading(_))
    }

    pub(super) fn has_conn(&self, user_id: &str, conn: &ConnRef) -> bool {
        self.users.get(user_id).is_some_and(|user| user.conns.contains(conn))
    }

    pub(super) fn remove_conn(&mut self, user_id: &str, conn: &ConnRef) -> Removed {
        let Some(user) = self.users.get_mut(user_id) else {
            return Removed::NotThere;
        };
        let Some(index) = user.conns.iter().position(|c| c == conn) else {
            return Removed::NotThere;
        };
        user.conns.swap_remove(index);
        if let Some(count) = self.nodes.get_mut(&conn.node) {
            *count -= 1;
            if *count == 0 {
                self.nodes.remove(&conn.node);
            }
        }
        if user.conns.is_empty() {
            self.users.remove(user_id);
            Removed::LastOfUser
        } else {
            Removed::OneOfUser
        }
    }

    /// The stored messages after `since`, or `None` when they cannot all be given back
    /// (another epoch, or the history no longer reaches back that far).
    pub(super) fn replay_after(&self, since: &Since) -> Option<Vec<Arc<StoredMessage>>> {
        if since.epoch != *self.epoch || since.seq > self.seq {
            return None;
        }
        let oldest_kept = self.history.front().map(|message| message.seq).unwrap_or(self.seq + 1);
        if since.seq + 1 < oldest_kept {
            return None;
        }
        Some(self.history.iter().filter(|message| message.seq > since.seq).cloned().collect())
    }

    /// Sends `frame` once to every subscribed node.
    pub(super) fn fan_out(&self, sink: &dyn EdgeSink, key: &RoomKey, exclude: Option<&ConnRef>, frame: Bytes) {
        for node in self.nodes.keys() {
            let exclude_here = exclude.filter(|conn| &conn.node == node).map(|conn| conn.conn_id);
            sink.send_to_edge(
                node,
                EdgeMsg::Deliver { room: key.clone(), exclude: exclude_here, frame: frame.clone() },
            );
        }
    }
}
