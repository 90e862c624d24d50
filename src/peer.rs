//! The edge↔owner values on the wire: [`OwnerOp`], [`EdgeMsg`] and the hand-offs
//! ([`RoomSnapshot`], [`InboxSnapshot`], [`RoomMeta`]) as peer-frame payloads, each value
//! through its [`Encode`]/[`Decode`] impl (`codec.rs`): `peer/ops.rs` for the edge↔owner
//! values, `peer/handoff.rs` for the hand-offs. A `Deliver`'s client frame is the tail of its
//! payload, so the receiving edge slices it out of the link's buffer and queues it without a
//! copy.
//!
//! # Adding an operation
//! Say a room action: its variant in [`RoomAction`](crate::ops::RoomAction)
//! (`src/protocol/request.rs`);
//! a variant of `ActTag` (`peer/ops.rs`) with the next free byte (never reuse one: nodes of
//! two builds share a cluster during an upgrade); its arm in `impl Encode for RoomAction`
//! (the tag, then each field) and in `impl Decode for RoomAction` (each field, in the same
//! order). The matches are exhaustive: the compiler points at every arm still missing. A
//! new [`RequestKind`](crate::ops::RequestKind) is the same with `OpTag` (and its arm in
//! `OpTag::of`), a new [`EdgeMsg`] with `MsgTag`. A new struct on the wire is one line of
//! `fields!`. Then pin its bytes in `peer/pinned.rs`.

use bytes::Bytes;
use ringcast_cluster::wire::FIRST_USER_KIND;
use ringcast_cluster::PeerFrame;

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::ops::{EdgeMsg, OwnerOp};
use crate::owner::{InboxSnapshot, RoomMeta, RoomSnapshot};
use crate::room::RoomKey;

mod handoff;
mod ops;

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
    PeerFrame { flags: if answer { ADMIN_ANSWER } else { 0 }, ..frame(KIND_ADMIN, &(request_id, json)) }
}

/// `(request_id, answer, json)` of an admin frame.
pub fn decode_admin(frame: &PeerFrame) -> Result<(u64, bool, Bytes), DecodeError> {
    let (request_id, json) = decode(frame.payload.clone())?;
    Ok((request_id, frame.flags == ADMIN_ANSWER, json))
}

/// A frame of `kind` carrying `value`.
fn frame(kind: u8, value: &impl Encode) -> PeerFrame {
    let mut writer = Writer::new();
    writer.put(value);
    let (payload, tail) = writer.finish();
    PeerFrame::with_tail(kind, payload, tail)
}

/// The value a payload carries (its tail included).
fn decode<T: Decode>(payload: Bytes) -> Result<T, DecodeError> {
    Reader::new(payload).get()
}

/// An op; the frame's flags carry its hop count.
pub fn encode_op(op: &OwnerOp, hops: u16) -> PeerFrame {
    PeerFrame { flags: hops, ..frame(KIND_OWNER_OP, op) }
}

pub fn decode_op(payload: Bytes) -> Result<OwnerOp, DecodeError> {
    decode(payload)
}

pub fn encode_msg(msg: &EdgeMsg) -> PeerFrame {
    frame(KIND_EDGE_MSG, msg)
}

pub fn decode_msg(payload: Bytes) -> Result<EdgeMsg, DecodeError> {
    decode(payload)
}

pub fn encode_snapshot(snapshot: &RoomSnapshot) -> PeerFrame {
    frame(KIND_HANDOFF, snapshot)
}

pub fn decode_snapshot(payload: Bytes) -> Result<RoomSnapshot, DecodeError> {
    decode(payload)
}

pub fn encode_meta(key: &RoomKey, meta: &RoomMeta) -> PeerFrame {
    frame(KIND_META, &(key, meta))
}

pub fn decode_meta(payload: Bytes) -> Result<(RoomKey, RoomMeta), DecodeError> {
    decode(payload)
}

pub fn encode_inbox(inbox: &InboxSnapshot) -> PeerFrame {
    frame(KIND_INBOX, inbox)
}

pub fn decode_inbox(payload: Bytes) -> Result<InboxSnapshot, DecodeError> {
    decode(payload)
}

#[cfg(test)]
mod pinned;
#[cfg(test)]
mod tests;
