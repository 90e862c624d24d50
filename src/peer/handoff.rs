//! The hand-off values on the wire: a room's whole state ([`RoomSnapshot`]), its moderation
//! state ([`RoomMeta`]) and a user's inbox ([`InboxSnapshot`]), moved from a key's old owner
//! to its new one. Each is its fields in order; room keys, connections and senders are
//! encoded as in `ops.rs`.

use crate::codec::{fields, Decode, DecodeError, Encode, Reader, Writer};
use crate::owner::{InboxSnapshot, MessageExtra, RoomMeta, RoomSnapshot, SentAck, StoredMessage};

fields! {
    RoomSnapshot { key, epoch, seq, history, users, sent }
    StoredMessage { id, seq, ts, user_id, name, text, attachments, reply_to, thread_root, extra }
    MessageExtra { version, edited_at, versions, deleted, redacted, reactions }
    // The first ack of an idempotency key (user or sender, client_id).
    SentAck { id, seq, ts }
    RoomMeta { bans, pending }
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
            rooms: if reader.is_empty() { Vec::new() } else { reader.get()? },
        })
    }
}
