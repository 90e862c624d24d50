//! Moderation (PROTOCOL.md §7), applied by the room's owner: join requests to `private:` rooms
//! with approval or denial, kicks, and bans that refuse joins until they end. Requests and bans
//! outlive the room's members (a banned user's room may empty), so they live in the owner's
//! per-key `RoomMeta`, handed over with the key.

use std::sync::Arc;

use serde::Serialize;

use super::context::{event_now, push};
use super::membership::{member_left_frame, membership_event};
use super::{Added, OpCtx, Owner, Removed, Room, RoomMeta, Rooms};
use crate::frames;
use crate::ops::{EdgeMsg, Sender};
use crate::protocol::{ErrorCode, ReplyError};
use crate::room::RoomKey;
use crate::store::{journal, Write};
use crate::time;
use crate::webhook::EventType;

#[derive(Serialize)]
struct Requested<'a> {
    room: &'a str,
    user_id: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct Decision<'a> {
    room: &'a str,
    by: &'a str,
}

impl Owner {
    /// True while `user_id` is banned from `key` (ended bans are dropped on the way).
    pub(super) fn is_banned(&self, key: &RoomKey, user_id: &str) -> bool {
        let mut meta = self.meta_shard(key).lock();
        let Some(room_meta) = meta.get_mut(key) else { return false };
        let now = time::now_millis();
        room_meta.bans.retain(|(_, until)| until.is_none_or(|until| until > now));
        let banned = room_meta.bans.iter().any(|(banned, _)| &**banned == user_id);
        if room_meta.is_empty() {
            meta.remove(key);
        }
        banned
    }

    pub(super) fn request_join(&self, shard: &mut Rooms, ctx: &OpCtx<'_>) {
        let (key, sender) = (ctx.key, ctx.sender);
        if self.is_banned(key, &sender.user_id) {
            return ctx.error(ReplyError::new(ErrorCode::Forbidden, "banned from this room"));
        }
        {
            let mut meta = self.meta_shard(key).lock();
            let room_meta = meta.entry(key.clone()).or_default();
            room_meta.pending.retain(|pending| pending.user_id != sender.user_id);
            room_meta.pending.push(Sender { request_id: 0, ..sender.clone() });
        }
        #[derive(Serialize)]
        struct Pending<'a> {
            room: &'a str,
            status: &'static str,
        }
        ctx.ack(Pending { room: key.room(), status: "pending" });
        if let Some(room) = shard.get(key) {
            let requested = Requested { room: key.room(), user_id: &sender.user_id, name: &sender.name };
            let frame = event_now("request.join.pending", requested);
            for user in room.users.values().filter(|user| user.moderator) {
                for conn in &user.conns {
                    push(ctx.sink, conn, frame.clone());
                }
            }
        }
    }

    /// `room.approve` / `room.deny` by a moderator in the room.
    pub(super) fn decide(
        &self,
        room: &mut Room,
        ctx: &OpCtx<'_>,
        user_id: &str,
        approve: bool,
    ) -> Result<(), ReplyError> {
        let (sink, key) = (ctx.sink, ctx.key);
        let requester = {
            let mut meta = self.meta_shard(key).lock();
            let room_meta = meta.get_mut(key).ok_or_else(no_request)?;
            let index =
                room_meta.pending.iter().position(|pending| &*pending.user_id == user_id).ok_or_else(no_request)?;
            let requester = room_meta.pending.remove(index);
            if room_meta.is_empty() {
                meta.remove(key);
            }
            requester
        };
        let ts = time::rfc3339_millis(time::now_millis());
        let decision = Decision { room: key.room(), by: &ctx.sender.user_id };
        if approve {
            let frame = frames::event("request.join.approved", decision, &ts);
            let added = room.add_conn(&requester.user_id, &requester.name, requester.is_moderator, &requester.conn);
            let joined = EdgeMsg::Joined {
                room: key.clone(),
                conn_id: requester.conn.conn_id,
                request_id: 0,
                frames: vec![frame],
            };
            sink.send_to_edge(&requester.conn.node, joined);
            if added == Added::FirstOfUser {
                let frame = frames::event(
                    "member.joined",
                    Requested { room: key.room(), user_id: &requester.user_id, name: &requester.name },
                    &ts,
                );
                room.fan_out(sink, key, Some(&requester.conn), frame);
                membership_event(&self.webhooks, EventType::RoomJoined, key, &requester.user_id);
            }
        } else {
            push(sink, &requester.conn, frames::event("request.join.denied", decision, &ts));
        }
        #[derive(Serialize)]
        struct DecisionAck<'a> {
            room: &'a str,
            user_id: &'a str,
            status: &'static str,
        }
        let status = if approve { "approved" } else { "denied" };
        ctx.ack(DecisionAck { room: key.room(), user_id, status });
        Ok(())
    }

    /// `room.kick` and `room.ban` by a moderator in the room.
    pub(super) fn remove_user(
        &self,
        room: &mut Room,
        ctx: &OpCtx<'_>,
        user_id: &str,
        ban: Option<Option<u64>>,
    ) -> Result<(), ReplyError> {
        let (sink, key, by) = (ctx.sink, ctx.key, &ctx.sender.user_id);
        let until = ban.map(|seconds| seconds.map(|seconds| time::now_millis() + seconds * 1000));
        if let Some(until) = until {
            let mut meta = self.meta_shard(key).lock();
            let room_meta = meta.entry(key.clone()).or_default();
            room_meta.bans.retain(|(banned, _)| &**banned != user_id);
            room_meta.bans.push((Arc::from(user_id), until));
            journal::record_with(|| Write::Bans(room_meta.bans.clone()));
        } else if !room.users.contains_key(user_id) {
            return Err(ReplyError::new(ErrorCode::NotFound, "user is not in the room"));
        }
        let ts = time::rfc3339_millis(time::now_millis());
        #[derive(Serialize)]
        struct Removal<'a> {
            room: &'a str,
            by: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            until: Option<String>,
        }
        let (kind, removal) = match until {
            None => ("admin.kick", Removal { room: key.room(), by, until: None }),
            Some(until) => {
                let until = until.map(time::rfc3339_millis);
                ("admin.ban", Removal { room: key.room(), by, until })
            }
        };
        let frame = frames::event(kind, &removal, &ts);
        let conns = room.users.get(user_id).map(|user| user.conns.clone()).unwrap_or_default();
        let mut last = Removed::NotThere;
        for conn in conns {
            last = room.remove_conn(user_id, &conn);
            let left =
                EdgeMsg::Left { room: key.clone(), conn_id: conn.conn_id, request_id: 0, frames: vec![frame.clone()] };
            sink.send_to_edge(&conn.node, left);
        }
        if last == Removed::LastOfUser {
            room.fan_out(sink, key, None, member_left_frame(key, user_id));
            membership_event(&self.webhooks, EventType::RoomLeft, key, user_id);
        }
        #[derive(Serialize)]
        struct RemovalAck<'a> {
            room: &'a str,
            user_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            until: Option<String>,
        }
        ctx.ack(RemovalAck { room: key.room(), user_id, until: removal.until.clone() });
        Ok(())
    }
}

impl RoomMeta {
    pub(super) fn is_empty(&self) -> bool {
        self.bans.is_empty() && self.pending.is_empty()
    }
}

fn no_request() -> ReplyError {
    ReplyError::new(ErrorCode::NotFound, "no pending join request from this user")
}
