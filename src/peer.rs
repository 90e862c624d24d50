//! The edge↔owner values on the wire: [`OwnerOp`], [`EdgeMsg`] and [`RoomSnapshot`] as
//! peer-frame payloads. A `Deliver`'s client frame is the tail of its payload, so the
//! receiving edge slices it out of the link's buffer and queues it without a copy.

use std::sync::Arc;

use bytes::Bytes;
use ringcast_cluster::wire::FIRST_USER_KIND;
use ringcast_cluster::{NodeId, PeerFrame};

use crate::codec::{DecodeError, Reader, Writer};
use crate::ops::{ConnRef, EdgeMsg, OwnerOp, PresenceOp, Request, RequestKind, RoomAction, Sender, UserDelivery};
use crate::protocol::{Attachment, ChatSend, Since};
use crate::room::RoomKey;

mod handoff;
pub use handoff::{decode_inbox, decode_meta, decode_snapshot, encode_inbox, encode_meta, encode_snapshot};

/// An [`OwnerOp`]; the frame's flags carry the hop count.
pub const KIND_OWNER_OP: u8 = FIRST_USER_KIND;
/// An [`EdgeMsg`].
pub const KIND_EDGE_MSG: u8 = FIRST_USER_KIND + 1;
/// A [`RoomSnapshot`] from a room's previous owner.
pub const KIND_HANDOFF: u8 = FIRST_USER_KIND + 2;
/// "I (re)appeared in your view: resubscribe the rooms you have that I own." Sent by a node
/// to a member that appears, so connections an owner dropped while it thought their edge
/// dead are restored when the edge turns out to be alive.
pub const KIND_RESYNC: u8 = FIRST_USER_KIND + 3;
/// An [`InboxSnapshot`]: a user's offline DMs, handed to the new owner of its personal room.
pub const KIND_INBOX: u8 = FIRST_USER_KIND + 4;
/// A room key's moderation state (bans, join requests), handed to its new owner.
pub const KIND_META: u8 = FIRST_USER_KIND + 5;
/// An admin API request or answer (`src/admin/query.rs`): a JSON payload behind a request id.
pub const KIND_ADMIN: u8 = FIRST_USER_KIND + 6;
/// The sender finished its hand-offs for a ring (payload: the ring's hash, u64 LE); sent
/// on each link behind the snapshots (see `takeover.rs`).
pub const KIND_TAKEOVER_DONE: u8 = FIRST_USER_KIND + 7;

pub fn encode_takeover_done(hash: u64) -> PeerFrame {
    PeerFrame::new(KIND_TAKEOVER_DONE, Bytes::copy_from_slice(&hash.to_le_bytes()))
}

pub fn decode_takeover_done(payload: &[u8]) -> Result<u64, DecodeError> {
    let bytes: [u8; 8] = payload.try_into().map_err(|_| DecodeError)?;
    Ok(u64::from_le_bytes(bytes))
}

/// The frame flags of an admin answer (a request has none).
const ADMIN_ANSWER: u16 = 1;

/// An admin request (`answer: false`) or its answer, with its request id and JSON body.
pub fn encode_admin(request_id: u64, answer: bool, json: &[u8]) -> PeerFrame {
    let mut writer = Writer::new();
    writer.u64(request_id).bytes(json);
    let mut frame = PeerFrame::new(KIND_ADMIN, writer.finish());
    frame.flags = if answer { ADMIN_ANSWER } else { 0 };
    frame
}

/// `(request_id, answer, json)` of an admin frame.
pub fn decode_admin(frame: &PeerFrame) -> Result<(u64, bool, Bytes), DecodeError> {
    let mut reader = Reader::new(frame.payload.clone());
    Ok((reader.u64()?, frame.flags == ADMIN_ANSWER, reader.bytes()?))
}

const OP_JOIN: u8 = 1;
const OP_LEAVE: u8 = 2;
const OP_MEMBERS: u8 = 3;
const OP_PUBLISH: u8 = 4;
const OP_RESUBSCRIBE: u8 = 5;
const OP_USER_GROUPS: u8 = 6;
const OP_ACT: u8 = 7;
const OP_TO_USER: u8 = 8;
const OP_PRESENCE: u8 = 9;

const DELIVERY_DM: u8 = 1;
const DELIVERY_CALL: u8 = 2;
const DELIVERY_COPY: u8 = 3;

const ACT_EDIT: u8 = 1;
const ACT_VERSIONS: u8 = 2;
const ACT_DELETE: u8 = 3;
const ACT_REDACT: u8 = 4;
const ACT_REACT: u8 = 5;
const ACT_TYPING: u8 = 6;
const ACT_RECEIPT: u8 = 7;
const ACT_UPLOAD: u8 = 8;
const ACT_HISTORY: u8 = 9;
const ACT_REQUEST_JOIN: u8 = 10;
const ACT_APPROVE: u8 = 11;
const ACT_DENY: u8 = 12;
const ACT_KICK: u8 = 13;
const ACT_BAN: u8 = 14;

const MSG_DELIVER: u8 = 1;
const MSG_REPLY: u8 = 2;
const MSG_JOINED: u8 = 3;
const MSG_LEFT: u8 = 4;
const MSG_GROUPS: u8 = 5;
const MSG_ROUTE: u8 = 6;
const MSG_PRESENCE_INFO: u8 = 7;

pub fn encode_op(op: &OwnerOp, hops: u16) -> PeerFrame {
    let mut writer = Writer::new();
    match op {
        OwnerOp::Resubscribe { room, members } => {
            writer.u8(OP_RESUBSCRIBE).str(room.as_str()).len(members.len());
            for member in members {
                put_sender(&mut writer, member);
            }
        }
        OwnerOp::Request(Request { room, sender, op_id, kind }) => {
            let tag = match kind {
                RequestKind::Join { .. } => OP_JOIN,
                RequestKind::Leave => OP_LEAVE,
                RequestKind::Members => OP_MEMBERS,
                RequestKind::Publish(_) => OP_PUBLISH,
                RequestKind::UserGroups { .. } => OP_USER_GROUPS,
                RequestKind::Act(_) => OP_ACT,
                RequestKind::ToUser(_) => OP_TO_USER,
                RequestKind::Presence(_) => OP_PRESENCE,
            };
            writer.u8(tag).str(room.as_str());
            put_sender(&mut writer, sender);
            writer.opt_str(op_id.as_deref());
            put_request_kind(&mut writer, kind);
        }
    }
    let mut frame = PeerFrame::new(KIND_OWNER_OP, writer.finish());
    frame.flags = hops;
    frame
}

fn put_request_kind(writer: &mut Writer, kind: &RequestKind) {
    match kind {
        RequestKind::Join { since } => {
            match since {
                None => writer.u8(0),
                Some(since) => writer.u8(1).u64(since.seq).str(&since.epoch),
            };
        }
        RequestKind::Leave | RequestKind::Members => {}
        RequestKind::Publish(message) => {
            writer.str(&message.room).str(&message.text);
            put_attachments(writer, &message.attachments);
            writer.opt_str(message.reply_to.as_deref()).opt_str(message.client_id.as_deref());
        }
        RequestKind::Act(action) => put_action(writer, action),
        RequestKind::ToUser(delivery) => match delivery {
            UserDelivery::Dm { id, ts, frame, offline_frame, client_id } => {
                writer.u8(DELIVERY_DM).str(id).str(ts).bytes(frame).bytes(offline_frame).opt_str(client_id.as_deref());
            }
            UserDelivery::Call { call_id, frame } => {
                writer.u8(DELIVERY_CALL).str(call_id).bytes(frame);
            }
            UserDelivery::Copy { frame, exclude } => {
                writer.u8(DELIVERY_COPY).bytes(frame).str(exclude.node.as_str()).u64(exclude.conn_id);
            }
        },
        RequestKind::Presence(op) => {
            match op {
                PresenceOp::Set { status, message } => writer.u8(1).str(status).opt_str(message.as_deref()),
                PresenceOp::Subscribe => writer.u8(2),
                PresenceOp::Unsubscribe => writer.u8(3),
                PresenceOp::Query { query_id } => writer.u8(4).u64(*query_id),
            };
        }
        RequestKind::UserGroups { added, removed } => {
            put_strings(writer, added);
            put_strings(writer, removed);
        }
    }
}

pub fn decode_op(payload: Bytes) -> Result<OwnerOp, DecodeError> {
    let mut reader = Reader::new(payload);
    let tag = reader.u8()?;
    let room = room_key(&mut reader)?;
    if tag == OP_RESUBSCRIBE {
        let count = reader.len()?;
        let members = (0..count).map(|_| get_sender(&mut reader)).collect::<Result<_, _>>()?;
        return Ok(OwnerOp::Resubscribe { room, members });
    }
    let sender = get_sender(&mut reader)?;
    let op_id = reader.opt_string()?;
    let kind = match tag {
        OP_JOIN => {
            let since = match reader.u8()? {
                0 => None,
                1 => Some(Since { seq: reader.u64()?, epoch: reader.string()? }),
                _ => return Err(DecodeError),
            };
            RequestKind::Join { since }
        }
        OP_LEAVE => RequestKind::Leave,
        OP_MEMBERS => RequestKind::Members,
        OP_PUBLISH => RequestKind::Publish(ChatSend {
            room: reader.string()?,
            text: reader.string()?,
            attachments: get_attachments(&mut reader)?,
            reply_to: reader.opt_string()?,
            client_id: reader.opt_string()?,
        }),
        OP_ACT => RequestKind::Act(get_action(&mut reader)?),
        OP_TO_USER => RequestKind::ToUser(match reader.u8()? {
            DELIVERY_DM => UserDelivery::Dm {
                id: reader.string()?,
                ts: reader.string()?,
                frame: reader.bytes()?,
                offline_frame: reader.bytes()?,
                client_id: reader.opt_string()?,
            },
            DELIVERY_CALL => UserDelivery::Call { call_id: reader.string()?, frame: reader.bytes()? },
            DELIVERY_COPY => UserDelivery::Copy {
                frame: reader.bytes()?,
                exclude: ConnRef { node: NodeId::new(reader.string()?), conn_id: reader.u64()? },
            },
            _ => return Err(DecodeError),
        }),
        OP_PRESENCE => RequestKind::Presence(match reader.u8()? {
            1 => PresenceOp::Set { status: reader.string()?, message: reader.opt_string()? },
            2 => PresenceOp::Subscribe,
            3 => PresenceOp::Unsubscribe,
            4 => PresenceOp::Query { query_id: reader.u64()? },
            _ => return Err(DecodeError),
        }),
        OP_USER_GROUPS => {
            RequestKind::UserGroups { added: get_strings(&mut reader)?, removed: get_strings(&mut reader)? }
        }
        _ => return Err(DecodeError),
    };
    Ok(OwnerOp::request(room, sender, op_id, kind))
}

pub fn encode_msg(msg: &EdgeMsg) -> PeerFrame {
    let mut writer = Writer::new();
    match msg {
        EdgeMsg::Deliver { room, exclude, frame } => {
            writer.u8(MSG_DELIVER).str(room.as_str()).opt_u64(*exclude);
            // The client frame is the tail: sent from its own buffer, sliced on arrival.
            return PeerFrame::with_tail(KIND_EDGE_MSG, writer.finish(), frame.clone());
        }
        EdgeMsg::Reply { conn_id, request_id, frame, is_error } => {
            writer.u8(MSG_REPLY).u64(*conn_id).u64(*request_id).bool(*is_error);
            return PeerFrame::with_tail(KIND_EDGE_MSG, writer.finish(), frame.clone());
        }
        EdgeMsg::Joined { room, conn_id, request_id, frames } => {
            writer.u8(MSG_JOINED).str(room.as_str()).u64(*conn_id).u64(*request_id).len(frames.len());
            for frame in frames {
                writer.bytes(frame);
            }
        }
        EdgeMsg::Left { room, conn_id, request_id, frames } => {
            writer.u8(MSG_LEFT).str(room.as_str()).u64(*conn_id).u64(*request_id).len(frames.len());
            for frame in frames {
                writer.bytes(frame);
            }
        }
        EdgeMsg::Groups { conn_id, added, removed } => {
            writer.u8(MSG_GROUPS).u64(*conn_id);
            put_strings(&mut writer, added);
            put_strings(&mut writer, removed);
        }
        EdgeMsg::PresenceInfo { conn_id, query_id, entry } => {
            writer.u8(MSG_PRESENCE_INFO).u64(*conn_id).u64(*query_id);
            return PeerFrame::with_tail(KIND_EDGE_MSG, writer.finish(), entry.clone());
        }
        EdgeMsg::Route(op) => {
            // The op's own encoding is the tail.
            writer.u8(MSG_ROUTE);
            return PeerFrame::with_tail(KIND_EDGE_MSG, writer.finish(), encode_op(op, 0).payload);
        }
    }
    PeerFrame::new(KIND_EDGE_MSG, writer.finish())
}

pub fn decode_msg(payload: Bytes) -> Result<EdgeMsg, DecodeError> {
    let mut reader = Reader::new(payload);
    let msg = match reader.u8()? {
        MSG_DELIVER => {
            let room = room_key(&mut reader)?;
            let exclude = reader.opt_u64()?;
            EdgeMsg::Deliver { room, exclude, frame: reader.rest() }
        }
        MSG_REPLY => {
            let conn_id = reader.u64()?;
            let request_id = reader.u64()?;
            let is_error = reader.bool()?;
            EdgeMsg::Reply { conn_id, request_id, frame: reader.rest(), is_error }
        }
        tag @ (MSG_JOINED | MSG_LEFT) => {
            let room = room_key(&mut reader)?;
            let conn_id = reader.u64()?;
            let request_id = reader.u64()?;
            let count = reader.len()?;
            let frames = (0..count).map(|_| reader.bytes()).collect::<Result<_, _>>()?;
            if tag == MSG_JOINED {
                EdgeMsg::Joined { room, conn_id, request_id, frames }
            } else {
                EdgeMsg::Left { room, conn_id, request_id, frames }
            }
        }
        MSG_ROUTE => EdgeMsg::Route(Box::new(decode_op(reader.rest())?)),
        MSG_PRESENCE_INFO => {
            let conn_id = reader.u64()?;
            let query_id = reader.u64()?;
            EdgeMsg::PresenceInfo { conn_id, query_id, entry: reader.rest() }
        }
        MSG_GROUPS => EdgeMsg::Groups {
            conn_id: reader.u64()?,
            added: get_strings(&mut reader)?,
            removed: get_strings(&mut reader)?,
        },
        _ => return Err(DecodeError),
    };
    Ok(msg)
}

fn room_key(reader: &mut Reader) -> Result<RoomKey, DecodeError> {
    let key = reader.string()?;
    let (tenant, room) = key.split_once('/').ok_or(DecodeError)?;
    Ok(RoomKey::new(tenant, room))
}

fn put_sender(writer: &mut Writer, sender: &Sender) {
    writer.str(sender.conn.node.as_str()).u64(sender.conn.conn_id).str(&sender.user_id).str(&sender.name);
    writer.bool(sender.is_moderator).u64(sender.request_id);
}

fn get_sender(reader: &mut Reader) -> Result<Sender, DecodeError> {
    Ok(Sender {
        conn: ConnRef { node: NodeId::new(reader.string()?), conn_id: reader.u64()? },
        user_id: Arc::from(reader.string()?),
        name: Arc::from(reader.string()?),
        is_moderator: reader.bool()?,
        request_id: reader.u64()?,
    })
}

fn put_action(writer: &mut Writer, action: &RoomAction) {
    match action {
        RoomAction::Edit { id, text } => writer.u8(ACT_EDIT).str(id).str(text),
        RoomAction::Versions { id } => writer.u8(ACT_VERSIONS).str(id),
        RoomAction::Delete { id, hard } => writer.u8(ACT_DELETE).str(id).bool(*hard),
        RoomAction::Redact { id, reason } => writer.u8(ACT_REDACT).str(id).opt_str(reason.as_deref()),
        RoomAction::React { id, emoji, add } => writer.u8(ACT_REACT).str(id).str(emoji).bool(*add),
        RoomAction::Typing { typing } => writer.u8(ACT_TYPING).bool(*typing),
        RoomAction::Receipt { seq, read } => writer.u8(ACT_RECEIPT).u64(*seq).bool(*read),
        RoomAction::Upload { upload_id, name, size, sent } => {
            writer.u8(ACT_UPLOAD).str(upload_id).str(name).u64(*size).u64(*sent)
        }
        RoomAction::History { before_seq, limit } => writer.u8(ACT_HISTORY).opt_u64(*before_seq).u64(*limit),
        RoomAction::RequestJoin => writer.u8(ACT_REQUEST_JOIN),
        RoomAction::Approve { user_id } => writer.u8(ACT_APPROVE).str(user_id),
        RoomAction::Deny { user_id } => writer.u8(ACT_DENY).str(user_id),
        RoomAction::Kick { user_id } => writer.u8(ACT_KICK).str(user_id),
        RoomAction::Ban { user_id, seconds } => writer.u8(ACT_BAN).str(user_id).opt_u64(*seconds),
    };
}

fn get_action(reader: &mut Reader) -> Result<RoomAction, DecodeError> {
    Ok(match reader.u8()? {
        ACT_EDIT => RoomAction::Edit { id: reader.string()?, text: reader.string()? },
        ACT_VERSIONS => RoomAction::Versions { id: reader.string()? },
        ACT_DELETE => RoomAction::Delete { id: reader.string()?, hard: reader.bool()? },
        ACT_REDACT => RoomAction::Redact { id: reader.string()?, reason: reader.opt_string()? },
        ACT_REACT => RoomAction::React { id: reader.string()?, emoji: reader.string()?, add: reader.bool()? },
        ACT_TYPING => RoomAction::Typing { typing: reader.bool()? },
        ACT_RECEIPT => RoomAction::Receipt { seq: reader.u64()?, read: reader.bool()? },
        ACT_UPLOAD => RoomAction::Upload {
            upload_id: reader.string()?,
            name: reader.string()?,
            size: reader.u64()?,
            sent: reader.u64()?,
        },
        ACT_HISTORY => RoomAction::History { before_seq: reader.opt_u64()?, limit: reader.u64()? },
        ACT_REQUEST_JOIN => RoomAction::RequestJoin,
        ACT_APPROVE => RoomAction::Approve { user_id: reader.string()? },
        ACT_DENY => RoomAction::Deny { user_id: reader.string()? },
        ACT_KICK => RoomAction::Kick { user_id: reader.string()? },
        ACT_BAN => RoomAction::Ban { user_id: reader.string()?, seconds: reader.opt_u64()? },
        _ => return Err(DecodeError),
    })
}

fn put_strings(writer: &mut Writer, strings: &[String]) {
    writer.len(strings.len());
    for string in strings {
        writer.str(string);
    }
}

fn get_strings(reader: &mut Reader) -> Result<Vec<String>, DecodeError> {
    let count = reader.len()?;
    (0..count).map(|_| reader.string()).collect()
}

fn put_attachments(writer: &mut Writer, attachments: &[Attachment]) {
    writer.len(attachments.len());
    for attachment in attachments {
        writer.str(&attachment.url).str(&attachment.name).u64(attachment.size).str(&attachment.mime);
    }
}

fn get_attachments(reader: &mut Reader) -> Result<Vec<Attachment>, DecodeError> {
    let count = reader.len()?;
    (0..count)
        .map(|_| {
            Ok(Attachment {
                url: reader.string()?,
                name: reader.string()?,
                size: reader.u64()?,
                mime: reader.string()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod pinned;
#[cfg(test)]
mod tests;
