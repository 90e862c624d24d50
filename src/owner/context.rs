//! The request an owner serves: who asks about which room, the `ack` it wants and where the
//! answers go, with the answers every request kind gives (ack, error, joined, left, fan-out).

use bytes::Bytes;
use serde::Serialize;

use super::{EdgeSink, Room, Rooms};
use crate::frames;
use crate::metrics;
use crate::ops::{ConnRef, EdgeMsg, Sender};
use crate::protocol::{ErrorCode, ReplyError};
use crate::room::RoomKey;
use crate::time;
use crate::webhook::{EventType, Field, Webhooks};

/// One request as its owner serves it, made once per request in `Owner::apply`. It only
/// borrows the request, so passing it on costs nothing.
#[derive(Clone, Copy)]
pub(super) struct OpCtx<'a> {
    pub sink: &'a dyn EdgeSink,
    pub key: &'a RoomKey,
    pub sender: &'a Sender,
    /// `None`: the client wants no `ack`.
    pub op_id: Option<&'a str>,
    /// Where the owner's events are posted.
    pub webhooks: &'a Webhooks,
}

impl<'a> OpCtx<'a> {
    /// The room's name, as frames show it.
    pub fn room(&self) -> &'a str {
        self.key.room()
    }

    /// The room, if the asking connection is in it; otherwise the request is answered
    /// `forbidden` and there is nothing more to do.
    pub fn in_room<'r>(&self, shard: &'r mut Rooms) -> Option<&'r mut Room> {
        if self.sender.is_service() {
            // A server-side request (admin API) needs no membership; the room must exist.
            let room = shard.get_mut(self.key).map(|room| &mut **room);
            if room.is_none() {
                self.error(ReplyError::new(ErrorCode::NotFound, "unknown room"));
            }
            return room;
        }
        let room = shard
            .get_mut(self.key)
            .map(|room| &mut **room)
            .filter(|room| room.has_conn(&self.sender.user_id, &self.sender.conn));
        if room.is_none() {
            self.error(ReplyError::new(ErrorCode::Forbidden, "not in room"));
        }
        room
    }

    /// Sends the `ack` of the request with `data` (nothing when it had no `op_id`).
    pub fn ack<T: Serialize>(&self, data: T) {
        if let Some(frame) = frames::ack(self.op_id, data) {
            self.reply(frame, false);
        }
    }

    /// Answers the request with an `error`, counted against the connection's error limit
    /// unless it is `unavailable` (the server's condition, as in `Router::refuse`).
    pub fn error(&self, error: ReplyError) {
        self.reply(self.error_frame(&error), error.code != ErrorCode::Unavailable);
    }

    /// The `error` frame answering the request, counted as sent.
    pub fn error_frame(&self, error: &ReplyError) -> Bytes {
        metrics::error_sent(error.code.as_str());
        frames::error(self.op_id, error)
    }

    fn reply(&self, frame: Bytes, is_error: bool) {
        let conn = &self.sender.conn;
        let msg = EdgeMsg::Reply { conn_id: conn.conn_id, request_id: self.sender.request_id, frame, is_error };
        self.sink.send_to_edge(&conn.node, msg);
    }

    /// The asking connection is in the room now; `frames` go to it first.
    pub fn joined(&self, frames: Vec<Bytes>) {
        let conn = &self.sender.conn;
        let room = self.key.clone();
        let msg = EdgeMsg::Joined { room, conn_id: conn.conn_id, request_id: self.sender.request_id, frames };
        self.sink.send_to_edge(&conn.node, msg);
    }

    /// The asking connection is out of the room (or was never let in); `frames` go to it.
    pub fn left(&self, frames: Vec<Bytes>) {
        let conn = &self.sender.conn;
        let room = self.key.clone();
        let msg = EdgeMsg::Left { room, conn_id: conn.conn_id, request_id: self.sender.request_id, frames };
        self.sink.send_to_edge(&conn.node, msg);
    }

    /// Posts event `kind` about the request's room, by its sender; `fields` is called only
    /// when such events are posted.
    pub fn room_event(&self, kind: EventType, fields: impl FnOnce() -> Vec<(&'static str, Field)>) {
        self.webhooks.emit(kind, self.key, true, &self.sender.user_id, fields);
    }

    /// Sends `frame` to everyone in `room` but the asking connection.
    pub fn fan_out(&self, room: &Room, frame: Bytes) {
        room.fan_out(self.sink, self.key, Some(&self.sender.conn), frame);
    }

    /// Tells everyone else in `room` what changed, as event `kind` with `data`, and acks the
    /// request with the same data.
    pub fn announce<T: Serialize>(&self, room: &Room, kind: &str, data: T) {
        self.fan_out(room, event_now(kind, &data));
        self.ack(data);
    }
}

/// Event `kind` with `data`, stamped now.
pub(super) fn event_now<T: Serialize>(kind: &str, data: T) -> Bytes {
    frames::event(kind, data, &time::rfc3339_millis(time::now_millis()))
}

/// Sends `frame` to one connection, outside any request of its own (an update it subscribed
/// to, a moderator's notice, the outcome of its join request).
pub(super) fn push(sink: &dyn EdgeSink, conn: &ConnRef, frame: Bytes) {
    sink.send_to_edge(&conn.node, EdgeMsg::Reply { conn_id: conn.conn_id, request_id: 0, frame, is_error: false });
}
