//! Publishing a chat message (PROTOCOL.md §4): its seq and id, the thread it belongs to, the
//! room's bounded history, the idempotency of a send with a `client_id`, the ack and the
//! fan-out.

use std::sync::Arc;

use serde::Serialize;

use super::{OpCtx, Owner, Rooms, SentAck, StoredMessage};
use crate::metrics;
use crate::protocol::{ChatSend, ErrorCode, ReplyError};
use crate::store::{journal, Write};
use crate::time;
use crate::webhook::{self, EventType};

#[derive(Serialize)]
struct SendAck<'a> {
    room: &'a str,
    id: &'a str,
    seq: u64,
    ts: &'a str,
    epoch: &'a str,
}

impl Owner {
    pub(super) fn publish(&self, shard: &mut Rooms, ctx: &OpCtx<'_>, message: ChatSend) {
        if ctx.sender.is_service() {
            // The backend publishes to a room whether or not anyone is in it.
            shard.entry(ctx.key.clone()).or_insert_with(|| self.new_room());
        }
        let Some(room) = ctx.in_room(shard) else { return };
        let sent_key = message.client_id.clone().map(|client_id| (ctx.sender.user_id.clone(), client_id));
        if let Some(first) = sent_key.as_ref().and_then(|sent_key| room.sent.get(sent_key)) {
            // A retry: the first ack again, nothing stored or sent twice.
            let ack = SendAck { room: ctx.room(), id: &first.id, seq: first.seq, ts: &first.ts, epoch: &room.epoch };
            return ctx.ack(ack);
        }
        let thread_root = match &message.reply_to {
            None => None,
            Some(reply_to) => match room.history.iter().find(|stored| &stored.id == reply_to) {
                Some(parent) => Some(parent.thread_root.clone().unwrap_or_else(|| parent.id.clone())),
                // The parent may have aged out of the bounded history: keep the reference.
                None => Some(reply_to.clone()),
            },
        };
        if room.nodes.iter().any(|(node, _)| ctx.sink.congested(node)) {
            metrics::publish_congested();
            return ctx.error(ReplyError::new(ErrorCode::Unavailable, "delivery queue full"));
        }
        let now = time::now_millis();
        room.seq += 1;
        let stored = Arc::new(StoredMessage {
            id: self.ids.message_id(now),
            seq: room.seq,
            ts: time::rfc3339_millis(now),
            user_id: ctx.sender.user_id.clone(),
            name: ctx.sender.name.clone(),
            text: message.text,
            attachments: message.attachments,
            reply_to: message.reply_to,
            thread_root,
            meta: message.meta,
            extra: None,
        });
        let frame = stored.render(ctx.room(), false);
        journal::record_with(|| Write::Append { message: stored.clone(), client_id: message.client_id.clone() });
        room.history.push_back(stored.clone());
        while room.history.len() > self.history_size {
            room.history.pop_front();
        }
        if let Some(sent_key) = sent_key {
            room.sent.insert(sent_key, SentAck { id: stored.id.clone(), seq: stored.seq, ts: stored.ts.clone() });
        }
        ctx.room_event(EventType::MessageCreated, || webhook::message(&frame));
        // Deliveries first: the ack waits for their receipts (see `route/receipts.rs`).
        ctx.fan_out(room, frame);
        ctx.ack(SendAck { room: ctx.room(), id: &stored.id, seq: stored.seq, ts: &stored.ts, epoch: &room.epoch });
        if !self.store.durable() && room.can_forget() {
            // A service's message to a room nobody is in: in memory, an empty room is forgotten.
            shard.remove(ctx.key);
        }
    }
}
