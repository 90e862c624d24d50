//! The hand-off values on the wire: a room's whole state ([`RoomSnapshot`]), its moderation
//! state ([`RoomMeta`]) and a user's inbox ([`InboxSnapshot`]), moved from a key's old owner
//! to its new one. Each is its fields in order; room keys, connections and senders are
//! encoded as in `ops.rs`.

use crate::codec::fields;
use crate::owner::{InboxSnapshot, MessageExtra, RoomMeta, RoomSnapshot, SentAck, StoredMessage};

fields! {
    RoomSnapshot { key, epoch, seq, history, users, sent }
    StoredMessage { id, seq, ts, user_id, name, text, attachments, reply_to, thread_root, extra }
    MessageExtra { version, edited_at, versions, deleted, redacted, reactions }
    // The first ack of an idempotency key (user or sender, client_id).
    SentAck { id, seq, ts }
    RoomMeta { bans, pending }
    InboxSnapshot { key, messages, sent, status, message, subscribers }
}
