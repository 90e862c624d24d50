//! The edge↔owner values of `src/ops.rs` on the wire: [`OwnerOp`], [`EdgeMsg`] and what they
//! carry. Each sum type has one tag enum; each type one [`Encode`] and one [`Decode`] impl,
//! its fields in order.

use ringcast_cluster::NodeId;

use crate::codec::{fields, tags, Decode, DecodeError, Encode, Reader, Writer};
use crate::ops::{ConnRef, EdgeMsg, OwnerOp, PresenceOp, Request, RequestKind, RoomAction, Sender, UserDelivery};
use crate::protocol::{Attachment, ChatSend, Since};
use crate::room::RoomKey;

tags! {
    /// An [`OwnerOp`]: a resubscription or the [`RequestKind`] of a request.
    enum OpTag {
        Join = 1, Leave = 2, Members = 3, Publish = 4, Resubscribe = 5, UserGroups = 6, Act = 7,
        ToUser = 8, Presence = 9,
    }

    /// A [`RoomAction`].
    enum ActTag {
        Edit = 1, Versions = 2, Delete = 3, Redact = 4, React = 5, Typing = 6, Receipt = 7,
        Upload = 8, History = 9, RequestJoin = 10, Approve = 11, Deny = 12, Kick = 13, Ban = 14,
    }

    /// A [`UserDelivery`].
    enum DeliveryTag {
        Dm = 1, Call = 2, Copy = 3,
    }

    /// A [`PresenceOp`].
    enum PresenceTag {
        Set = 1, Subscribe = 2, Unsubscribe = 3, Query = 4,
    }

    /// An [`EdgeMsg`].
    enum MsgTag {
        Deliver = 1, Reply = 2, Joined = 3, Left = 4, Groups = 5, Route = 6, PresenceInfo = 7,
    }
}

/// `tenant/room`.
impl Encode for RoomKey {
    fn encode(&self, writer: &mut Writer) {
        writer.put(self.as_str());
    }
}

impl Decode for RoomKey {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        let key = reader.str(|key| key.split_once('/').map(|(tenant, room)| RoomKey::new(tenant, room)))?;
        key.ok_or(DecodeError)
    }
}

impl Encode for ConnRef {
    fn encode(&self, writer: &mut Writer) {
        writer.put(self.node.as_str()).put(&self.conn_id);
    }
}

impl Decode for ConnRef {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ConnRef { node: reader.str(|node| NodeId::new(node))?, conn_id: reader.get()? })
    }
}

fields! {
    Sender { conn, user_id, name, is_moderator, request_id }
    Since { seq, epoch }
    Attachment { url, name, size, mime }
}

// `meta` came later, at the end of the op's frame: an older build ignores it, and the frames
// of an older build, which end before it, decode without one.
impl Encode for ChatSend {
    fn encode(&self, writer: &mut Writer) {
        writer.put(&self.room).put(&self.text).put(&self.attachments).put(&self.reply_to).put(&self.client_id);
        writer.put(&self.meta.as_deref().map(|meta| meta.to_string()));
    }
}

impl Decode for ChatSend {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ChatSend {
            room: reader.get()?,
            text: reader.get()?,
            attachments: reader.get()?,
            reply_to: reader.get()?,
            client_id: reader.get()?,
            meta: decode_meta(reader.get_added()?)?,
        })
    }
}

/// A `meta` on the wire: its JSON text, as serde_json writes it (anything else does not come
/// from a node, and would not encode back to its bytes).
pub(crate) fn decode_meta(text: Option<String>) -> Result<Option<crate::protocol::Meta>, DecodeError> {
    let Some(text) = text else { return Ok(None) };
    let meta: serde_json::Value = serde_json::from_str(&text).map_err(|_| DecodeError)?;
    if !meta.is_object() || serde_json::to_string(&meta).ok().as_deref() != Some(text.as_str()) {
        return Err(DecodeError);
    }
    Ok(Some(std::sync::Arc::new(meta)))
}

impl Encode for RoomAction {
    fn encode(&self, writer: &mut Writer) {
        match self {
            RoomAction::Edit { id, text } => writer.put(&ActTag::Edit).put(id).put(text),
            RoomAction::Versions { id } => writer.put(&ActTag::Versions).put(id),
            RoomAction::Delete { id, hard } => writer.put(&ActTag::Delete).put(id).put(hard),
            RoomAction::Redact { id, reason } => writer.put(&ActTag::Redact).put(id).put(reason),
            RoomAction::React { id, emoji, add } => writer.put(&ActTag::React).put(id).put(emoji).put(add),
            RoomAction::Typing { typing } => writer.put(&ActTag::Typing).put(typing),
            RoomAction::Receipt { seq, read } => writer.put(&ActTag::Receipt).put(seq).put(read),
            RoomAction::Upload { upload_id, name, size, sent } => {
                writer.put(&ActTag::Upload).put(upload_id).put(name).put(size).put(sent)
            }
            RoomAction::History { before_seq, limit } => writer.put(&ActTag::History).put(before_seq).put(limit),
            RoomAction::RequestJoin => writer.put(&ActTag::RequestJoin),
            RoomAction::Approve { user_id } => writer.put(&ActTag::Approve).put(user_id),
            RoomAction::Deny { user_id } => writer.put(&ActTag::Deny).put(user_id),
            RoomAction::Kick { user_id } => writer.put(&ActTag::Kick).put(user_id),
            RoomAction::Ban { user_id, seconds } => writer.put(&ActTag::Ban).put(user_id).put(seconds),
        };
    }
}

impl Decode for RoomAction {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match reader.get()? {
            ActTag::Edit => RoomAction::Edit { id: reader.get()?, text: reader.get()? },
            ActTag::Versions => RoomAction::Versions { id: reader.get()? },
            ActTag::Delete => RoomAction::Delete { id: reader.get()?, hard: reader.get()? },
            ActTag::Redact => RoomAction::Redact { id: reader.get()?, reason: reader.get()? },
            ActTag::React => RoomAction::React { id: reader.get()?, emoji: reader.get()?, add: reader.get()? },
            ActTag::Typing => RoomAction::Typing { typing: reader.get()? },
            ActTag::Receipt => RoomAction::Receipt { seq: reader.get()?, read: reader.get()? },
            ActTag::Upload => RoomAction::Upload {
                upload_id: reader.get()?,
                name: reader.get()?,
                size: reader.get()?,
                sent: reader.get()?,
            },
            ActTag::History => RoomAction::History { before_seq: reader.get()?, limit: reader.get()? },
            ActTag::RequestJoin => RoomAction::RequestJoin,
            ActTag::Approve => RoomAction::Approve { user_id: reader.get()? },
            ActTag::Deny => RoomAction::Deny { user_id: reader.get()? },
            ActTag::Kick => RoomAction::Kick { user_id: reader.get()? },
            ActTag::Ban => RoomAction::Ban { user_id: reader.get()?, seconds: reader.get()? },
        })
    }
}

impl Encode for PresenceOp {
    fn encode(&self, writer: &mut Writer) {
        match self {
            PresenceOp::Set { status, message } => writer.put(&PresenceTag::Set).put(status).put(message),
            PresenceOp::Subscribe => writer.put(&PresenceTag::Subscribe),
            PresenceOp::Unsubscribe => writer.put(&PresenceTag::Unsubscribe),
            PresenceOp::Query { query_id } => writer.put(&PresenceTag::Query).put(query_id),
        };
    }
}

impl Decode for PresenceOp {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match reader.get()? {
            PresenceTag::Set => PresenceOp::Set { status: reader.get()?, message: reader.get()? },
            PresenceTag::Subscribe => PresenceOp::Subscribe,
            PresenceTag::Unsubscribe => PresenceOp::Unsubscribe,
            PresenceTag::Query => PresenceOp::Query { query_id: reader.get()? },
        })
    }
}

impl Encode for UserDelivery {
    fn encode(&self, writer: &mut Writer) {
        match self {
            UserDelivery::Dm { id, ts, frame, offline_frame, client_id } => {
                writer.put(&DeliveryTag::Dm).put(id).put(ts).put(frame).put(offline_frame).put(client_id)
            }
            UserDelivery::Call { call_id, frame } => writer.put(&DeliveryTag::Call).put(call_id).put(frame),
            UserDelivery::Copy { frame, exclude } => writer.put(&DeliveryTag::Copy).put(frame).put(exclude),
        };
    }
}

impl Decode for UserDelivery {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match reader.get()? {
            DeliveryTag::Dm => UserDelivery::Dm {
                id: reader.get()?,
                ts: reader.get()?,
                frame: reader.get()?,
                offline_frame: reader.get()?,
                client_id: reader.get()?,
            },
            DeliveryTag::Call => UserDelivery::Call { call_id: reader.get()?, frame: reader.get()? },
            DeliveryTag::Copy => UserDelivery::Copy { frame: reader.get()?, exclude: reader.get()? },
        })
    }
}

impl OpTag {
    fn of(kind: &RequestKind) -> Self {
        match kind {
            RequestKind::Join { .. } => OpTag::Join,
            RequestKind::Leave => OpTag::Leave,
            RequestKind::Members => OpTag::Members,
            RequestKind::Publish(_) => OpTag::Publish,
            RequestKind::Act(_) => OpTag::Act,
            RequestKind::ToUser(_) => OpTag::ToUser,
            RequestKind::Presence(_) => OpTag::Presence,
            RequestKind::UserGroups { .. } => OpTag::UserGroups,
        }
    }
}

/// A request's tag comes first, then the header every request shares, then what its kind
/// carries: `tag room sender op_id fields`.
impl Encode for Request {
    fn encode(&self, writer: &mut Writer) {
        let Request { room, sender, op_id, kind } = self;
        writer.put(&OpTag::of(kind)).put(room).put(sender);
        if !carries_no_op_id(OpTag::of(kind)) {
            writer.put(op_id);
        }
        match kind {
            RequestKind::Join { since } => writer.put(since),
            RequestKind::Leave | RequestKind::Members => writer,
            RequestKind::Publish(message) => writer.put(message),
            RequestKind::Act(action) => writer.put(action),
            RequestKind::ToUser(delivery) => writer.put(delivery),
            RequestKind::Presence(op) => writer.put(op),
            RequestKind::UserGroups { added, removed } => writer.put(added).put(removed),
        };
    }
}

/// What a request of `tag` carries, behind its header.
fn decode_kind(tag: OpTag, reader: &mut Reader) -> Result<RequestKind, DecodeError> {
    Ok(match tag {
        OpTag::Join => RequestKind::Join { since: reader.get()? },
        OpTag::Leave => RequestKind::Leave,
        OpTag::Members => RequestKind::Members,
        OpTag::Publish => RequestKind::Publish(reader.get()?),
        OpTag::Act => RequestKind::Act(reader.get()?),
        OpTag::ToUser => RequestKind::ToUser(reader.get()?),
        OpTag::Presence => RequestKind::Presence(reader.get()?),
        OpTag::UserGroups => RequestKind::UserGroups { added: reader.get()?, removed: reader.get()? },
        // Not a request: decoded by `OwnerOp`.
        OpTag::Resubscribe => return Err(DecodeError),
    })
}

/// `tag room`, then a resubscription's members or a request's sender, op_id and fields.
impl Encode for OwnerOp {
    fn encode(&self, writer: &mut Writer) {
        match self {
            OwnerOp::Request(request) => writer.put(request),
            OwnerOp::Resubscribe { room, members } => writer.put(&OpTag::Resubscribe).put(room).put(members),
        };
    }
}

impl Decode for OwnerOp {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        let tag = reader.get()?;
        let room = reader.get()?;
        if tag == OpTag::Resubscribe {
            return Ok(OwnerOp::Resubscribe { room, members: reader.get()? });
        }
        let sender = reader.get()?;
        let op_id = if carries_no_op_id(tag) { None } else { reader.get()? };
        Ok(OwnerOp::request(room, sender, op_id, decode_kind(tag, reader)?))
    }
}

/// A group change is never acknowledged: its frame has no `op_id` (as in the builds before
/// the shared request header, which nodes of a rolling upgrade still speak).
fn carries_no_op_id(tag: OpTag) -> bool {
    tag == OpTag::UserGroups
}

/// A client frame an owner sends (`Deliver`, `Reply`, `PresenceInfo`) is the frame's tail:
/// sent from its own buffer, sliced out of the link's buffer on arrival.
impl Encode for EdgeMsg {
    fn encode(&self, writer: &mut Writer) {
        match self {
            EdgeMsg::Deliver { room, exclude, frame } => {
                writer.put(&MsgTag::Deliver).put(room).put(exclude).tail(frame)
            }
            EdgeMsg::Reply { conn_id, request_id, frame, is_error } => {
                writer.put(&MsgTag::Reply).put(conn_id).put(request_id).put(is_error).tail(frame)
            }
            EdgeMsg::Joined { room, conn_id, request_id, frames } => {
                writer.put(&MsgTag::Joined).put(room).put(conn_id).put(request_id).put(frames)
            }
            EdgeMsg::Left { room, conn_id, request_id, frames } => {
                writer.put(&MsgTag::Left).put(room).put(conn_id).put(request_id).put(frames)
            }
            EdgeMsg::Groups { conn_id, added, removed } => {
                writer.put(&MsgTag::Groups).put(conn_id).put(added).put(removed)
            }
            EdgeMsg::PresenceInfo { conn_id, query_id, entry } => {
                writer.put(&MsgTag::PresenceInfo).put(conn_id).put(query_id).tail(entry)
            }
            EdgeMsg::Route(op) => writer.put(&MsgTag::Route).put(op),
        };
    }
}

impl Decode for EdgeMsg {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match reader.get()? {
            MsgTag::Deliver => EdgeMsg::Deliver { room: reader.get()?, exclude: reader.get()?, frame: reader.rest() },
            MsgTag::Reply => EdgeMsg::Reply {
                conn_id: reader.get()?,
                request_id: reader.get()?,
                is_error: reader.get()?,
                frame: reader.rest(),
            },
            tag @ (MsgTag::Joined | MsgTag::Left) => {
                let (room, conn_id, request_id, frames) = reader.get()?;
                if tag == MsgTag::Joined {
                    EdgeMsg::Joined { room, conn_id, request_id, frames }
                } else {
                    EdgeMsg::Left { room, conn_id, request_id, frames }
                }
            }
            MsgTag::Groups => EdgeMsg::Groups { conn_id: reader.get()?, added: reader.get()?, removed: reader.get()? },
            MsgTag::PresenceInfo => {
                EdgeMsg::PresenceInfo { conn_id: reader.get()?, query_id: reader.get()?, entry: reader.rest() }
            }
            MsgTag::Route => EdgeMsg::Route(reader.get()?),
        })
    }
}
