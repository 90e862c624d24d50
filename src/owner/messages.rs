//! Owner-side operations on a room's messages and activity (PROTOCOL.md §4–§5): edits and
//! versions, soft and hard deletes, redaction, reactions, typing with its expiry, receipts,
//! upload progress and history reads. Every one needs the asking connection to be in the
//! room; the permission rules (author, moderator) are checked here, at the owner.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::context::event_now;
use super::{EdgeSink, MessageExtra, OpCtx, Owner, Room, Rooms, StoredMessage};
use crate::frames;
use crate::ops::RoomAction;
use crate::protocol::{ErrorCode, ReplyError};
use crate::room::RoomKey;
use crate::store::{journal, Write};
use crate::time;
use crate::webhook::{self, EventType};

impl Owner {
    pub(super) fn act(&self, shard: &mut Rooms, ctx: &OpCtx<'_>, action: RoomAction) {
        if action == RoomAction::RequestJoin {
            return self.request_join(shard, ctx);
        }
        let Some(room) = ctx.in_room(shard) else { return };
        let moderator_only = matches!(
            action,
            RoomAction::Approve { .. } | RoomAction::Deny { .. } | RoomAction::Kick { .. } | RoomAction::Ban { .. }
        );
        if moderator_only && !ctx.sender.is_moderator {
            return ctx.error(ReplyError::new(ErrorCode::Forbidden, "moderators and admins only"));
        }
        let result = match action {
            RoomAction::RequestJoin => Ok(()),
            RoomAction::Approve { user_id } => self.decide(room, ctx, &user_id, true),
            RoomAction::Deny { user_id } => self.decide(room, ctx, &user_id, false),
            RoomAction::Kick { user_id } => self.remove_user(room, ctx, &user_id, None),
            RoomAction::Ban { user_id, seconds } => self.remove_user(room, ctx, &user_id, Some(seconds)),
            RoomAction::Edit { id, text } => edit(room, ctx, &id, text),
            RoomAction::Versions { id } => versions(room, ctx, &id),
            RoomAction::Delete { id, hard } => delete(room, ctx, &id, hard),
            RoomAction::Redact { id, reason } => redact(room, ctx, &id, reason),
            RoomAction::React { id, emoji, add } => react(room, ctx, &id, emoji, add),
            RoomAction::Typing { typing } => self.typing(room, ctx, typing),
            RoomAction::Receipt { seq, read } => receipt(room, ctx, seq, read),
            RoomAction::Upload { upload_id, name, size, sent } => upload(room, ctx, &upload_id, &name, size, sent),
            RoomAction::History { before_seq, limit } => history(room, ctx, before_seq, limit),
        };
        if let Err(error) = result {
            ctx.error(error);
        }
        // A kick or ban may have emptied the room: forget it, as a leave would.
        if shard.get(ctx.key).is_some_and(|room| room.can_forget()) {
            shard.remove(ctx.key);
            crate::metrics::rooms_owned(-1.0);
        }
    }

    /// `chat.typing`: a change goes to the room; the `ack` in any case.
    fn typing(&self, room: &mut Room, ctx: &OpCtx<'_>, typing: bool) -> Result<(), ReplyError> {
        let user_id = &ctx.sender.user_id;
        let position = room.typing.iter().position(|(typing_id, _)| typing_id == user_id);
        let changed = match (typing, position) {
            (true, Some(index)) => {
                room.typing[index].1 = Instant::now() + self.typing_timeout;
                false
            }
            (true, None) => {
                room.typing.push((user_id.clone(), Instant::now() + self.typing_timeout));
                self.typing_rooms.lock().insert(ctx.key.clone());
                true
            }
            (false, Some(index)) => {
                room.typing.swap_remove(index);
                true
            }
            (false, None) => false,
        };
        if changed {
            ctx.fan_out(room, typing_frame(ctx.key, user_id, typing));
        }
        ctx.ack(RoomOnly { room: ctx.room() });
        Ok(())
    }

    /// Ends every `typing:true` not renewed in time (`typing:false` to the room). Called
    /// periodically; looks only at rooms where someone types.
    pub fn expire_typing(&self, sink: &dyn EdgeSink) {
        let rooms: Vec<RoomKey> = self.typing_rooms.lock().iter().cloned().collect();
        let now = Instant::now();
        for key in rooms {
            let mut shard = self.shard(&key).lock();
            let Some(room) = shard.get_mut(&key) else {
                self.typing_rooms.lock().remove(&key);
                continue;
            };
            let expired: Vec<Arc<str>> =
                room.typing.iter().filter(|(_, until)| *until <= now).map(|(user_id, _)| user_id.clone()).collect();
            room.typing.retain(|(_, until)| *until > now);
            for user_id in expired {
                room.fan_out(sink, &key, None, typing_frame(&key, &user_id, false));
            }
            if room.typing.is_empty() {
                self.typing_rooms.lock().remove(&key);
            }
        }
    }
}

#[derive(Serialize)]
struct RoomOnly<'a> {
    room: &'a str,
}

fn typing_frame(key: &RoomKey, user_id: &str, typing: bool) -> bytes::Bytes {
    #[derive(Serialize)]
    struct Typing<'a> {
        room: &'a str,
        user_id: &'a str,
        typing: bool,
    }
    event_now("chat.typing.user", Typing { room: key.room(), user_id, typing })
}

fn receipt(room: &Room, ctx: &OpCtx<'_>, seq: u64, read: bool) -> Result<(), ReplyError> {
    #[derive(Serialize)]
    struct Receipt<'a> {
        room: &'a str,
        user_id: &'a str,
        seq: u64,
        kind: &'static str,
    }
    let kind = if read { "read" } else { "delivered" };
    let data = Receipt { room: ctx.room(), user_id: &ctx.sender.user_id, seq, kind };
    ctx.fan_out(room, event_now("chat.receipt", data));
    ctx.ack(RoomOnly { room: ctx.room() });
    Ok(())
}

fn upload(room: &Room, ctx: &OpCtx<'_>, upload_id: &str, name: &str, size: u64, sent: u64) -> Result<(), ReplyError> {
    #[derive(Serialize)]
    struct Progress<'a> {
        room: &'a str,
        upload_id: &'a str,
        user_id: &'a str,
        name: &'a str,
        size: u64,
        sent: u64,
    }
    let data = Progress { room: ctx.room(), upload_id, user_id: &ctx.sender.user_id, name, size, sent };
    ctx.fan_out(room, event_now("chat.upload.progress", data));
    ctx.ack(RoomOnly { room: ctx.room() });
    Ok(())
}

fn history(room: &Room, ctx: &OpCtx<'_>, before_seq: Option<u64>, limit: u64) -> Result<(), ReplyError> {
    #[derive(Serialize)]
    struct History<'a> {
        room: &'a str,
        messages: Vec<super::ChatMessageData<'a>>,
    }
    let before = before_seq.unwrap_or(u64::MAX);
    let mut messages: Vec<_> = room
        .history
        .iter()
        .rev()
        .filter(|message| message.seq < before)
        .take(limit as usize)
        .map(|message| message.data(ctx.room(), false))
        .collect();
    messages.reverse();
    ctx.ack(History { room: ctx.room(), messages });
    Ok(())
}

fn gone() -> ReplyError {
    ReplyError::new(ErrorCode::Conflict, "message was deleted or redacted")
}

/// Records a changed message for the store.
fn changed(message: &StoredMessage) {
    journal::record_with(|| Write::Update(Arc::new(message.clone())));
}

fn not_found() -> ReplyError {
    ReplyError::new(ErrorCode::NotFound, "unknown message id")
}

/// The message `id` of the room's history, for change: `not_found` when unknown (or aged
/// out of the bounded history).
fn message_mut<'r>(room: &'r mut Room, id: &str) -> Result<&'r mut StoredMessage, ReplyError> {
    let message = room.history.iter_mut().find(|message| message.id == id).ok_or_else(not_found)?;
    Ok(Arc::make_mut(message))
}

fn edit(room: &mut Room, ctx: &OpCtx<'_>, id: &str, text: String) -> Result<(), ReplyError> {
    let message = message_mut(room, id)?;
    if message.user_id != ctx.sender.user_id {
        return Err(ReplyError::new(ErrorCode::Forbidden, "only the author edits a message"));
    }
    if message.is_gone() {
        return Err(gone());
    }
    // Field by field (not `extra_mut`): the text and timestamps are borrowed alongside.
    let extra = message.extra.get_or_insert_with(MessageExtra::as_sent);
    let edited_at = time::rfc3339_millis(time::now_millis());
    let previous_at = extra.edited_at.clone().unwrap_or_else(|| message.ts.clone());
    extra.versions.push((extra.version, std::mem::replace(&mut message.text, text), previous_at));
    extra.version += 1;
    extra.edited_at = Some(edited_at.clone());
    let version = extra.version;
    changed(message);
    #[derive(Serialize)]
    struct Edited<'a> {
        room: &'a str,
        id: &'a str,
        text: &'a str,
        version: u32,
        edited_at: &'a str,
        by: &'a str,
    }
    let by = &ctx.sender.user_id;
    let data = Edited { room: ctx.room(), id, text: &message.text, version, edited_at: &edited_at, by };
    let frame = frames::event("chat.edited", data, &edited_at);
    ctx.room_event(EventType::MessageEdited, || webhook::message(&frame));
    ctx.fan_out(room, frame);
    #[derive(Serialize)]
    struct EditAck<'a> {
        room: &'a str,
        id: &'a str,
        version: u32,
        edited_at: &'a str,
    }
    ctx.ack(EditAck { room: ctx.room(), id, version, edited_at: &edited_at });
    Ok(())
}

fn versions(room: &mut Room, ctx: &OpCtx<'_>, id: &str) -> Result<(), ReplyError> {
    let message = room.history.iter().find(|message| message.id == id).ok_or_else(not_found)?;
    #[derive(Serialize)]
    struct Version<'a> {
        version: u32,
        text: &'a str,
        edited_at: &'a str,
    }
    #[derive(Serialize)]
    struct Versions<'a> {
        room: &'a str,
        id: &'a str,
        versions: Vec<Version<'a>>,
    }
    let mut list: Vec<Version<'_>> = Vec::new();
    match message.extra.as_deref() {
        None => list.push(Version { version: 1, text: &message.text, edited_at: &message.ts }),
        Some(extra) => {
            list.extend(extra.versions.iter().map(|(version, text, at)| Version {
                version: *version,
                text,
                edited_at: at,
            }));
            let current_at = extra.edited_at.as_deref().unwrap_or(&message.ts);
            list.push(Version { version: extra.version, text: &message.text, edited_at: current_at });
        }
    }
    ctx.ack(Versions { room: ctx.room(), id, versions: list });
    Ok(())
}

fn delete(room: &mut Room, ctx: &OpCtx<'_>, id: &str, hard: bool) -> Result<(), ReplyError> {
    let index = room.history.iter().position(|message| message.id == id).ok_or_else(not_found)?;
    if room.history[index].user_id != ctx.sender.user_id && !ctx.sender.is_moderator {
        return Err(ReplyError::new(ErrorCode::Forbidden, "only the author or a moderator deletes a message"));
    }
    if hard {
        let seq = room.history[index].seq;
        room.history.remove(index);
        journal::record(Write::Remove(seq));
    } else {
        let message = Arc::make_mut(&mut room.history[index]);
        message.erase_text().deleted = true;
        changed(message);
    }
    #[derive(Serialize)]
    struct Deleted<'a> {
        room: &'a str,
        id: &'a str,
        mode: &'static str,
        by: &'a str,
    }
    let mode = if hard { "hard" } else { "soft" };
    let data = Deleted { room: ctx.room(), id, mode, by: &ctx.sender.user_id };
    ctx.room_event(EventType::MessageDeleted, || webhook::value("message", &data));
    ctx.announce(room, "chat.deleted", data);
    Ok(())
}

fn redact(room: &mut Room, ctx: &OpCtx<'_>, id: &str, reason: Option<String>) -> Result<(), ReplyError> {
    if !ctx.sender.is_moderator {
        return Err(ReplyError::new(ErrorCode::Forbidden, "only a moderator or an admin redacts"));
    }
    let message = message_mut(room, id)?;
    message.erase_text().redacted = Some(reason.clone().unwrap_or_default());
    changed(message);
    #[derive(Serialize)]
    struct Redacted<'a> {
        room: &'a str,
        id: &'a str,
        reason: Option<&'a str>,
        by: &'a str,
    }
    let data = Redacted { room: ctx.room(), id, reason: reason.as_deref(), by: &ctx.sender.user_id };
    // A redaction deletes the text for everyone: told as a deletion, its data being chat.redacted's.
    ctx.room_event(EventType::MessageDeleted, || webhook::value("message", &data));
    ctx.announce(room, "chat.redacted", data);
    Ok(())
}

fn react(room: &mut Room, ctx: &OpCtx<'_>, id: &str, emoji: String, add: bool) -> Result<(), ReplyError> {
    let user_id = &ctx.sender.user_id;
    let message = message_mut(room, id)?;
    if message.is_gone() {
        return Err(gone());
    }
    let extra = message.extra_mut();
    let position = extra.reactions.iter().position(|(known, _)| *known == emoji);
    let count = match (add, position) {
        (true, Some(index)) => {
            let users = &mut extra.reactions[index].1;
            if !users.contains(user_id) {
                users.push(user_id.clone());
            }
            users.len()
        }
        (true, None) => {
            if extra.reactions.len() >= 64 {
                return Err(ReplyError::new(ErrorCode::Conflict, "too many different reactions on this message"));
            }
            extra.reactions.push((emoji.clone(), vec![user_id.clone()]));
            1
        }
        (false, Some(index)) => {
            let users = &mut extra.reactions[index].1;
            users.retain(|user| user != user_id);
            let count = users.len();
            if count == 0 {
                extra.reactions.remove(index);
            }
            count
        }
        (false, None) => 0,
    };
    changed(message);
    #[derive(Serialize)]
    struct Reaction<'a> {
        room: &'a str,
        id: &'a str,
        emoji: &'a str,
        user_id: &'a str,
        add: bool,
        count: usize,
    }
    ctx.announce(room, "chat.reaction", Reaction { room: ctx.room(), id, emoji: &emoji, user_id, add, count });
    Ok(())
}
