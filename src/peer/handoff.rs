//! The hand-off payloads on the wire: a room's whole state ([`RoomSnapshot`]), its
//! moderation state ([`RoomMeta`]) and a user's inbox ([`InboxSnapshot`]), moved from a key's
//! old owner to its new one.

use std::sync::Arc;

use bytes::Bytes;
use ringcast_cluster::{NodeId, PeerFrame};

use super::{get_attachments, get_sender, put_attachments, put_sender, room_key, KIND_HANDOFF, KIND_INBOX, KIND_META};
use crate::codec::{DecodeError, Reader, Writer};
use crate::ops::ConnRef;
use crate::owner::{InboxSnapshot, MessageExtra, RoomMeta, RoomSnapshot, SentAck, StoredMessage};
use crate::room::RoomKey;

pub fn encode_snapshot(snapshot: &RoomSnapshot) -> PeerFrame {
    let mut writer = Writer::new();
    writer.str(snapshot.key.as_str()).str(&snapshot.epoch).u64(snapshot.seq).len(snapshot.history.len());
    for message in &snapshot.history {
        writer.str(&message.id).u64(message.seq).str(&message.ts).str(&message.user_id).str(&message.name);
        writer.str(&message.text);
        put_attachments(&mut writer, &message.attachments);
        writer.opt_str(message.reply_to.as_deref()).opt_str(message.thread_root.as_deref());
        put_extra(&mut writer, message.extra.as_deref());
    }
    writer.len(snapshot.users.len());
    for (user_id, name, moderator, conns) in &snapshot.users {
        writer.str(user_id).str(name).bool(*moderator).len(conns.len());
        for conn in conns {
            writer.str(conn.node.as_str()).u64(conn.conn_id);
        }
    }
    put_sent(&mut writer, &snapshot.sent);
    PeerFrame::new(KIND_HANDOFF, writer.finish())
}

pub fn decode_snapshot(payload: Bytes) -> Result<RoomSnapshot, DecodeError> {
    let mut reader = Reader::new(payload);
    let key = room_key(&mut reader)?;
    let epoch = reader.string()?;
    let seq = reader.u64()?;
    let count = reader.len()?;
    let mut history = Vec::with_capacity(count);
    for _ in 0..count {
        history.push(StoredMessage {
            id: reader.string()?,
            seq: reader.u64()?,
            ts: reader.string()?,
            user_id: Arc::from(reader.string()?),
            name: Arc::from(reader.string()?),
            text: reader.string()?,
            attachments: get_attachments(&mut reader)?,
            reply_to: reader.opt_string()?,
            thread_root: reader.opt_string()?,
            extra: get_extra(&mut reader)?,
        });
    }
    let count = reader.len()?;
    let mut users = Vec::with_capacity(count);
    for _ in 0..count {
        let user_id: Arc<str> = Arc::from(reader.string()?);
        let name: Arc<str> = Arc::from(reader.string()?);
        let moderator = reader.bool()?;
        let num_conns = reader.len()?;
        let conns = (0..num_conns)
            .map(|_| Ok(ConnRef { node: NodeId::new(reader.string()?), conn_id: reader.u64()? }))
            .collect::<Result<Vec<_>, DecodeError>>()?;
        users.push((user_id, name, moderator, conns));
    }
    let sent = get_sent(&mut reader)?;
    Ok(RoomSnapshot { key, epoch, seq, history, users, sent })
}

pub fn encode_meta(key: &RoomKey, meta: &RoomMeta) -> PeerFrame {
    let mut writer = Writer::new();
    writer.str(key.as_str()).len(meta.bans.len());
    for (user_id, until) in &meta.bans {
        writer.str(user_id).opt_u64(*until);
    }
    writer.len(meta.pending.len());
    for sender in &meta.pending {
        put_sender(&mut writer, sender);
    }
    PeerFrame::new(KIND_META, writer.finish())
}

pub fn decode_meta(payload: Bytes) -> Result<(RoomKey, RoomMeta), DecodeError> {
    let mut reader = Reader::new(payload);
    let key = room_key(&mut reader)?;
    let count = reader.len()?;
    let mut bans = Vec::with_capacity(count);
    for _ in 0..count {
        bans.push((Arc::from(reader.string()?), reader.opt_u64()?));
    }
    let count = reader.len()?;
    let pending = (0..count).map(|_| get_sender(&mut reader)).collect::<Result<_, _>>()?;
    Ok((key, RoomMeta { bans, pending }))
}

pub fn encode_inbox(inbox: &InboxSnapshot) -> PeerFrame {
    let mut writer = Writer::new();
    writer.str(inbox.key.as_str()).len(inbox.messages.len());
    for (expires, frame) in &inbox.messages {
        writer.u64(*expires).bytes(frame);
    }
    put_sent(&mut writer, &inbox.sent);
    writer.opt_str(inbox.status.as_deref()).opt_str(inbox.message.as_deref()).len(inbox.subscribers.len());
    for conn in &inbox.subscribers {
        writer.str(conn.node.as_str()).u64(conn.conn_id);
    }
    PeerFrame::new(KIND_INBOX, writer.finish())
}

pub fn decode_inbox(payload: Bytes) -> Result<InboxSnapshot, DecodeError> {
    let mut reader = Reader::new(payload);
    let key = room_key(&mut reader)?;
    let count = reader.len()?;
    let mut messages = Vec::with_capacity(count);
    for _ in 0..count {
        messages.push((reader.u64()?, reader.bytes()?));
    }
    let sent = get_sent(&mut reader)?;
    let status = reader.opt_string()?;
    let message = reader.opt_string()?;
    let count = reader.len()?;
    let subscribers = (0..count)
        .map(|_| Ok(ConnRef { node: NodeId::new(reader.string()?), conn_id: reader.u64()? }))
        .collect::<Result<_, DecodeError>>()?;
    Ok(InboxSnapshot { key, messages, sent, status, message, subscribers })
}

pub(super) fn put_extra(writer: &mut Writer, extra: Option<&MessageExtra>) {
    let Some(extra) = extra else {
        writer.u8(0);
        return;
    };
    writer.u8(1).u64(u64::from(extra.version)).opt_str(extra.edited_at.as_deref()).len(extra.versions.len());
    for (version, text, at) in &extra.versions {
        writer.u64(u64::from(*version)).str(text).str(at);
    }
    writer.bool(extra.deleted).opt_str(extra.redacted.as_deref()).len(extra.reactions.len());
    for (emoji, users) in &extra.reactions {
        writer.str(emoji).len(users.len());
        for user in users {
            writer.str(user);
        }
    }
}

pub(super) fn get_extra(reader: &mut Reader) -> Result<Option<Box<MessageExtra>>, DecodeError> {
    if reader.u8()? == 0 {
        return Ok(None);
    }
    let version = u32::try_from(reader.u64()?).map_err(|_| DecodeError)?;
    let edited_at = reader.opt_string()?;
    let count = reader.len()?;
    let mut versions = Vec::with_capacity(count);
    for _ in 0..count {
        let version = u32::try_from(reader.u64()?).map_err(|_| DecodeError)?;
        versions.push((version, reader.string()?, reader.string()?));
    }
    let deleted = reader.bool()?;
    let redacted = reader.opt_string()?;
    let count = reader.len()?;
    let mut reactions = Vec::with_capacity(count);
    for _ in 0..count {
        let emoji = reader.string()?;
        let num_users = reader.len()?;
        let users = (0..num_users).map(|_| Ok(Arc::from(reader.string()?))).collect::<Result<Vec<_>, DecodeError>>()?;
        reactions.push((emoji, users));
    }
    Ok(Some(Box::new(MessageExtra { version, edited_at, versions, deleted, redacted, reactions })))
}

/// Idempotency keys (user or sender, client_id, first ack), oldest first.
fn put_sent(writer: &mut Writer, sent: &[(Arc<str>, String, SentAck)]) {
    writer.len(sent.len());
    for (user_id, client_id, ack) in sent {
        writer.str(user_id).str(client_id).str(&ack.id).u64(ack.seq).str(&ack.ts);
    }
}

fn get_sent(reader: &mut Reader) -> Result<Vec<(Arc<str>, String, SentAck)>, DecodeError> {
    let count = reader.len()?;
    let mut sent = Vec::with_capacity(count);
    for _ in 0..count {
        let user_id: Arc<str> = Arc::from(reader.string()?);
        let client_id = reader.string()?;
        sent.push((user_id, client_id, SentAck { id: reader.string()?, seq: reader.u64()?, ts: reader.string()? }));
    }
    Ok(sent)
}
