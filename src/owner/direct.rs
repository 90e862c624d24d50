//! Deliveries to one user (PROTOCOL.md §5 direct messages, §8 calls), applied by the owner of
//! the user's personal room: every connection of a user is in that room, so its owner reaches
//! them all, and it keeps the inbox of a user who has none.

use bytes::Bytes;
use serde::Serialize;

use super::presence::user_of;
use super::{InboxSnapshot, OpCtx, Owner, Rooms, SentAck, UserBox};
use crate::ops::{EdgeMsg, OwnerOp, RequestKind, Sender, UserDelivery};
use crate::protocol::{ErrorCode, ReplyError};
use crate::room::RoomKey;
use crate::store::{journal, Write};
use crate::time;
use crate::webhook::{self, EventType, Field};

impl Owner {
    pub(super) fn to_user(&self, shard: &mut Rooms, ctx: &OpCtx<'_>, delivery: UserDelivery) {
        let (sink, key, sender) = (ctx.sink, ctx.key, ctx.sender);
        let online = shard.get(key).filter(|room| !room.users.is_empty());
        match delivery {
            UserDelivery::Copy { frame, exclude } => {
                if let Some(room) = online {
                    room.fan_out(sink, key, Some(&exclude), frame);
                }
            }
            UserDelivery::Call { call_id, frame } => {
                let Some(room) = online else {
                    return ctx.error(ReplyError::new(ErrorCode::NotFound, "user is offline"));
                };
                room.fan_out(sink, key, None, frame);
                #[derive(Serialize)]
                struct CallAck<'a> {
                    to: &'a str,
                    call_id: &'a str,
                }
                ctx.ack(CallAck { to: &user_of(key), call_id: &call_id });
            }
            UserDelivery::Dm { id, ts, frame, offline_frame, client_id } => {
                let mut inboxes = self.inbox_shard(key).lock();
                let user_box = inboxes.entry(key.clone()).or_default();
                let sent_key = client_id.map(|client_id| (sender.user_id.clone(), client_id));
                if let Some(first) = sent_key.as_ref().and_then(|sent_key| user_box.sent.get(sent_key)) {
                    // A retry: the first ack again, nothing delivered twice.
                    return ctx.ack(DmAck { id: &first.id, ts: &first.ts });
                }
                if let Some(sent_key) = sent_key {
                    let first = SentAck { id: id.clone(), seq: 0, ts: ts.clone() };
                    journal::record_with(|| Write::DmSent {
                        from: sent_key.0.clone(),
                        client_id: sent_key.1.clone(),
                        ack: first.clone(),
                    });
                    user_box.sent.insert(sent_key, first);
                }
                self.webhooks.emit(EventType::DmSent, key, false, &sender.user_id, || {
                    let mut fields = webhook::message(&frame);
                    fields.push(("to", Field::Value(user_of(key).into())));
                    fields
                });
                match online {
                    Some(room) => room.fan_out(sink, key, None, frame.clone()),
                    None => {
                        let expires = time::now_millis() + self.inbox_ttl.as_millis() as u64;
                        journal::record_with(|| Write::InboxPush { expires, frame: offline_frame.clone() });
                        user_box.messages.push_back((expires, offline_frame));
                        while user_box.messages.len() > self.inbox_size {
                            user_box.messages.pop_front();
                        }
                    }
                }
                drop(inboxes);
                ctx.ack(DmAck { id: &id, ts: &ts });
                // The sender's other connections get the message too: the owner of the
                // sender's personal room reaches them. Routed by the sender's edge.
                let copy = OwnerOp::request(
                    RoomKey::user(key.tenant(), &sender.user_id),
                    Sender { request_id: 0, ..sender.clone() },
                    None,
                    RequestKind::ToUser(UserDelivery::Copy { frame, exclude: sender.conn.clone() }),
                );
                sink.send_to_edge(&sender.conn.node, EdgeMsg::Route(Box::new(copy)));
            }
        }
    }

    /// The DMs waiting for the user of personal room `key` (unexpired), taken out.
    pub(super) fn take_inbox(&self, key: &RoomKey) -> Vec<Bytes> {
        let mut inboxes = self.inbox_shard(key).lock();
        let Some(user_box) = inboxes.get_mut(key) else { return Vec::new() };
        if !user_box.messages.is_empty() {
            journal::record(Write::InboxClear);
        }
        let now = time::now_millis();
        let messages: Vec<Bytes> =
            user_box.messages.drain(..).filter(|(expires, _)| *expires > now).map(|(_, frame)| frame).collect();
        if user_box.is_idle() {
            inboxes.remove(key);
        }
        messages
    }

    /// Removes and returns every inbox whose key this node no longer owns, for hand-off.
    pub fn take_inboxes_not_owned(&self, owns: impl Fn(&RoomKey) -> bool) -> Vec<InboxSnapshot> {
        let mut snapshots = Vec::new();
        for shard in self.inboxes.iter() {
            let mut shard = shard.lock();
            let moving: Vec<RoomKey> = shard.keys().filter(|key| !owns(key)).cloned().collect();
            for key in moving {
                if let Some(mut user_box) = shard.remove(&key) {
                    let sent = std::mem::take(&mut user_box.sent).into_ordered();
                    snapshots.push(InboxSnapshot {
                        key,
                        messages: user_box.messages.into(),
                        sent,
                        status: user_box.status,
                        message: user_box.message,
                        subscribers: user_box.subscribers,
                        rooms: user_box.rooms,
                    });
                }
            }
        }
        snapshots
    }

    /// Takes over an inbox handed off by the previous owner (merged with one started here).
    pub fn install_inbox(&self, snapshot: InboxSnapshot) {
        let mut inboxes = self.inbox_shard(&snapshot.key).lock();
        let user_box: &mut UserBox = inboxes.entry(snapshot.key).or_default();
        for message in snapshot.messages.into_iter().rev() {
            user_box.messages.push_front(message);
        }
        while user_box.messages.len() > self.inbox_size {
            user_box.messages.pop_front();
        }
        for (user_id, client_id, ack) in snapshot.sent {
            user_box.sent.insert((user_id, client_id), ack);
        }
        if user_box.status.is_none() {
            user_box.status = snapshot.status;
            user_box.message = snapshot.message;
        }
        for subscriber in snapshot.subscribers {
            if !user_box.subscribers.contains(&subscriber) {
                user_box.subscribers.push(subscriber);
            }
        }
        for room in snapshot.rooms {
            if !user_box.rooms.contains(&room) {
                user_box.rooms.push(room);
            }
        }
    }

    /// Keeps the server-side room subscriptions among `added` and `removed` (the groups of a
    /// `UserGroups` op on personal room `key`) for the user's connections to come.
    pub(super) fn remember_subscriptions(&self, key: &RoomKey, added: &[String], removed: &[String]) {
        let is_subscription = |entry: &&String| crate::ops::subscribed_room(entry).is_some();
        if !added.iter().chain(removed).any(|entry| is_subscription(&entry)) {
            return;
        }
        let mut inboxes = self.inbox_shard(key).lock();
        let user_box = inboxes.entry(key.clone()).or_default();
        let before = user_box.rooms.clone();
        user_box.rooms.retain(|room| !removed.contains(room));
        for entry in added.iter().filter(is_subscription) {
            if !user_box.rooms.contains(entry) {
                user_box.rooms.push(entry.clone());
            }
        }
        if user_box.rooms != before {
            journal::record_with(|| Write::Subscriptions(user_box.rooms.clone()));
        }
        if user_box.is_idle() {
            inboxes.remove(key);
        }
    }

    /// Drops expired inbox messages (called with the typing sweep).
    pub fn expire_inboxes(&self) {
        let now = time::now_millis();
        for shard in self.inboxes.iter() {
            let mut shard = shard.lock();
            for user_box in shard.values_mut() {
                user_box.messages.retain(|(expires, _)| *expires > now);
            }
            shard.retain(|_, user_box| !user_box.is_idle());
        }
    }
}

#[derive(Serialize)]
struct DmAck<'a> {
    id: &'a str,
    ts: &'a str,
}
