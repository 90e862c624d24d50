//! The hand-off values on the wire: a room's whole state ([`RoomSnapshot`]), its moderation
//! state ([`RoomMeta`]) and a user's inbox ([`InboxSnapshot`]), moved from a key's old owner
//! to its new one. Each is its fields in order; room keys, connections and senders are
//! encoded as in `ops.rs`.

use crate::codec::{fields, Decode, DecodeError, Encode, Reader, Writer};
use crate::owner::{InboxSnapshot, MessageExtra, RoomMeta, RoomSnapshot, SentAck, StoredMessage};

fields! {
    MessageExtra { version, edited_at, versions, deleted, redacted, reactions }
    // The first ack of an idempotency key (user or sender, client_id).
    SentAck { id, seq, ts }
    RoomMeta { bans, pending }
}

// A room's state; the messages' `meta` came later: a message is its fields without it, and
// the room ends with the `meta` of each message that has one (seq, JSON text). An older
// build ignores that tail, and its snapshots, which end before it, decode with no meta.
impl Encode for StoredMessage {
    fn encode(&self, writer: &mut Writer) {
        writer.put(&self.id).put(&self.seq).put(&self.ts).put(&self.user_id).put(&self.name).put(&self.text);
        writer.put(&self.attachments).put(&self.reply_to).put(&self.thread_root).put(&self.extra);
    }
}

impl Decode for StoredMessage {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(StoredMessage {
            id: reader.get()?,
            seq: reader.get()?,
            ts: reader.get()?,
            user_id: reader.get()?,
            name: reader.get()?,
            text: reader.get()?,
            attachments: reader.get()?,
            reply_to: reader.get()?,
            thread_root: reader.get()?,
            meta: None,
            extra: reader.get()?,
        })
    }
}

/// The `meta` of each message of `history` that has one: (seq, JSON text), in order.
fn metas_of(history: &[StoredMessage]) -> Vec<(u64, String)> {
    history.iter().filter_map(|message| Some((message.seq, message.meta.as_deref()?.to_string()))).collect()
}

impl Encode for RoomSnapshot {
    fn encode(&self, writer: &mut Writer) {
        writer.put(&self.key).put(&self.epoch).put(&self.seq).put(&self.history).put(&self.users).put(&self.sent);
        writer.put(&metas_of(&self.history));
    }
}

impl Decode for RoomSnapshot {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        let mut snapshot = RoomSnapshot {
            key: reader.get()?,
            epoch: reader.get()?,
            seq: reader.get()?,
            history: reader.get()?,
            users: reader.get()?,
            sent: reader.get()?,
        };
        let metas: Vec<(u64, String)> = reader.get_added()?;
        for (seq, meta) in &metas {
            let message = snapshot.history.iter_mut().find(|message| message.seq == *seq).ok_or(DecodeError)?;
            message.meta = super::ops::decode_meta(Some(meta.clone()))?;
        }
        // One per message, in the history's order: nothing else is sent.
        if metas_of(&snapshot.history) != metas {
            return Err(DecodeError);
        }
        Ok(snapshot)
    }
}

// A user's inbox; `rooms` (the server-side subscriptions) came later, at the end: an older
// build ignores it, and its frames, which end before it, decode with none.
impl Encode for InboxSnapshot {
    fn encode(&self, writer: &mut Writer) {
        writer.put(&self.key).put(&self.messages).put(&self.sent).put(&self.status).put(&self.message);
        writer.put(&self.subscribers).put(&self.rooms);
    }
}

impl Decode for InboxSnapshot {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(InboxSnapshot {
            key: reader.get()?,
            messages: reader.get()?,
            sent: reader.get()?,
            status: reader.get()?,
            message: reader.get()?,
            subscribers: reader.get()?,
            rooms: reader.get_added()?,
        })
    }
}
