//! Who is in a room: its users and their connections, the nodes to fan out to, joining and
//! leaving, the member list, and replay after a `since`.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::{durable, member_left_frame, reply_error, EdgeSink, Room, RoomUser, StoredMessage};
use crate::frames;
use crate::metrics;
use crate::ops::{ConnRef, EdgeMsg, Sender};
use crate::protocol::{ErrorCode, ReplyError, Since};
use crate::room::RoomKey;

pub(super) fn leave(
    shard: &mut HashMap<RoomKey, Room>,
    sink: &dyn EdgeSink,
    key: RoomKey,
    sender: Sender,
    op_id: Option<String>,
) -> Removed {
    #[derive(Serialize)]
    struct LeaveAck<'a> {
        room: &'a str,
        status: &'static str,
    }
    let frames: Vec<Bytes> =
        frames::ack(op_id.as_deref(), LeaveAck { room: key.room(), status: "left" }).into_iter().collect();
    let Some(room) = shard.get_mut(&key) else {
        // Not in the room: leaving is idempotent.
        sink.send_to_edge(
            &sender.conn.node,
            EdgeMsg::Left { room: key, conn_id: sender.conn.conn_id, request_id: sender.request_id, frames },
        );
        return Removed::NotThere;
    };
    let removed = room.remove_conn(&sender.user_id, &sender.conn);
    sink.send_to_edge(
        &sender.conn.node,
        EdgeMsg::Left { room: key.clone(), conn_id: sender.conn.conn_id, request_id: sender.request_id, frames },
    );
    if removed == Removed::LastOfUser {
        room.fan_out(sink, &key, None, member_left_frame(&key, &sender.user_id));
    }
    if room.can_forget() {
        // Empty rooms are forgotten; without persistence their history goes with them and
        // the next join starts a new epoch.
        shard.remove(&key);
        metrics::rooms_owned(-1.0);
    }
    removed
}

pub(super) fn members(
    shard: &HashMap<RoomKey, Room>,
    sink: &dyn EdgeSink,
    key: &RoomKey,
    sender: &Sender,
    op_id: Option<String>,
) {
    let Some(room) = shard.get(key).filter(|room| room.has_conn(&sender.user_id, &sender.conn)) else {
        return reply_error(sink, sender, op_id.as_deref(), ReplyError::new(ErrorCode::Forbidden, "not in room"));
    };
    #[derive(Serialize)]
    struct Member<'a> {
        user_id: &'a str,
        name: &'a str,
        status: &'static str,
        connections: usize,
    }
    #[derive(Serialize)]
    struct MembersAck<'a> {
        room: &'a str,
        members: Vec<Member<'a>>,
    }
    let mut members: Vec<Member<'_>> = room
        .users
        .iter()
        .map(|(user_id, user)| Member { user_id, name: &user.name, status: "online", connections: user.conns.len() })
        .collect();
    members.sort_by(|a, b| a.user_id.cmp(b.user_id));
    if let Some(frame) = frames::ack(op_id.as_deref(), MembersAck { room: key.room(), members }) {
        sink.send_to_edge(
            &sender.conn.node,
            EdgeMsg::Reply { conn_id: sender.conn.conn_id, request_id: sender.request_id, frame, is_error: false },
        );
    }
}

/// Sends the `ack` of `sender`'s request (nothing when it had no `op_id`).

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

// === impl Room ===

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
