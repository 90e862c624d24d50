//! How durable state is written in the store: JSON records of messages, bans and DM
//! idempotency keys, and the inbox entry layout. Shared by every durable store.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{MessageExtra, SentAck, StoredMessage};
use crate::protocol::Attachment;

#[derive(Serialize, Deserialize)]
struct MessageRecord {
    id: String,
    seq: u64,
    ts: String,
    user_id: String,
    name: String,
    text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<Attachment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    thread_root: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    meta: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    extra: Option<ExtraRecord>,
}

#[derive(Serialize, Deserialize)]
struct ExtraRecord {
    version: u32,
    edited_at: Option<String>,
    versions: Vec<(u32, String, String)>,
    deleted: bool,
    redacted: Option<String>,
    reactions: Vec<(String, Vec<String>)>,
}

/// A message as one JSON record (with its `client_id` when it is an append).
pub fn encode_message(message: &StoredMessage, client_id: Option<&str>) -> String {
    let record = MessageRecord {
        id: message.id.clone(),
        seq: message.seq,
        ts: message.ts.clone(),
        user_id: message.user_id.to_string(),
        name: message.name.to_string(),
        text: message.text.clone(),
        attachments: message.attachments.clone(),
        reply_to: message.reply_to.clone(),
        thread_root: message.thread_root.clone(),
        client_id: client_id.map(str::to_string),
        meta: message.meta.as_deref().cloned(),
        extra: message.extra.as_deref().map(|extra| ExtraRecord {
            version: extra.version,
            edited_at: extra.edited_at.clone(),
            versions: extra.versions.clone(),
            deleted: extra.deleted,
            redacted: extra.redacted.clone(),
            reactions: extra
                .reactions
                .iter()
                .map(|(emoji, users)| (emoji.clone(), users.iter().map(|user| user.to_string()).collect()))
                .collect(),
        }),
    };
    serde_json::to_string(&record).unwrap_or_default()
}

/// A message record back, with its `client_id`; `None` when it does not parse.
pub fn decode_message(text: &[u8]) -> Option<(StoredMessage, Option<String>)> {
    let record: MessageRecord = serde_json::from_slice(text).ok()?;
    let message = StoredMessage {
        id: record.id,
        seq: record.seq,
        ts: record.ts,
        user_id: Arc::from(record.user_id),
        name: Arc::from(record.name),
        text: record.text,
        attachments: record.attachments,
        reply_to: record.reply_to,
        thread_root: record.thread_root,
        meta: record.meta.map(Arc::new),
        extra: record.extra.map(|extra| {
            Box::new(MessageExtra {
                version: extra.version,
                edited_at: extra.edited_at,
                versions: extra.versions,
                deleted: extra.deleted,
                redacted: extra.redacted,
                reactions: extra
                    .reactions
                    .into_iter()
                    .map(|(emoji, users)| (emoji, users.into_iter().map(Arc::from).collect()))
                    .collect(),
            })
        }),
    };
    Some((message, record.client_id))
}

pub fn encode_bans(bans: &[(Arc<str>, Option<u64>)]) -> String {
    let list: Vec<(&str, Option<u64>)> = bans.iter().map(|(user, until)| (&**user, *until)).collect();
    serde_json::to_string(&list).unwrap_or_default()
}

pub fn decode_bans(text: &[u8]) -> Vec<(Arc<str>, Option<u64>)> {
    let list: Vec<(String, Option<u64>)> = serde_json::from_slice(text).unwrap_or_default();
    list.into_iter().map(|(user, until)| (Arc::from(user), until)).collect()
}

/// A user's server-side room subscriptions, as a JSON list.
pub fn encode_rooms(rooms: &[String]) -> String {
    serde_json::to_string(rooms).unwrap_or_default()
}

pub fn decode_rooms(text: &[u8]) -> Vec<String> {
    serde_json::from_slice(text).unwrap_or_default()
}

/// An inbox entry: the expiry as 16 hex digits, then the frame as sent.
pub fn encode_inbox(expires: u64, frame: &[u8]) -> Vec<u8> {
    let mut entry = format!("{expires:016x}").into_bytes();
    entry.extend_from_slice(frame);
    entry
}

pub fn decode_inbox(entry: &[u8]) -> Option<(u64, Bytes)> {
    let head = std::str::from_utf8(entry.get(..16)?).ok()?;
    let expires = u64::from_str_radix(head, 16).ok()?;
    Some((expires, Bytes::copy_from_slice(&entry[16..])))
}

/// The field of a DM idempotency key: sender, a NUL, the client id.
pub fn dm_sent_field(from: &str, client_id: &str) -> String {
    format!("{from}\u{0}{client_id}")
}

pub fn encode_sent_ack(ack: &SentAck) -> String {
    serde_json::to_string(&(&ack.id, ack.seq, &ack.ts)).unwrap_or_default()
}

pub fn decode_dm_sent(field: &[u8], value: &[u8]) -> Option<(Arc<str>, String, SentAck)> {
    let field = std::str::from_utf8(field).ok()?;
    let (from, client_id) = field.split_once('\u{0}')?;
    let (id, seq, ts): (String, u64, String) = serde_json::from_slice(value).ok()?;
    Some((Arc::from(from), client_id.to_string(), SentAck { id, seq, ts }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_with_its_changes_reads_back_the_same() {
        let message = StoredMessage {
            id: "m1".into(),
            seq: 7,
            ts: "2026-11-22T05:00:00.000Z".into(),
            user_id: Arc::from("alice"),
            name: Arc::from("Alice"),
            text: "hi".into(),
            attachments: vec![Attachment {
                url: "https://x/y".into(),
                name: "y".into(),
                size: 3,
                mime: "text/plain".into(),
            }],
            reply_to: Some("m0".into()),
            thread_root: Some("m0".into()),
            meta: Some(Arc::new(serde_json::json!({"kind": "invoice", "amount": 12}))),
            extra: Some(Box::new(MessageExtra {
                version: 2,
                edited_at: Some("t".into()),
                versions: vec![(1, "hello".into(), "t0".into())],
                deleted: false,
                redacted: None,
                reactions: vec![("👍".into(), vec![Arc::from("bob")])],
            })),
        };
        let text = encode_message(&message, Some("c1"));
        assert_eq!(decode_message(text.as_bytes()), Some((message, Some("c1".to_string()))));
        assert_eq!(decode_message(b"{not json"), None);
    }

    #[test]
    fn inbox_entries_bans_and_dm_keys_read_back() {
        let entry = encode_inbox(0x1234, b"{\"type\":\"dm.message\"}");
        assert_eq!(decode_inbox(&entry), Some((0x1234, Bytes::from_static(b"{\"type\":\"dm.message\"}"))));
        assert_eq!(decode_inbox(b"short"), None);
        let bans = vec![(Arc::from("eve"), Some(5)), (Arc::from("mallory"), None)];
        assert_eq!(decode_bans(encode_bans(&bans).as_bytes()), bans);
        let ack = SentAck { id: "d1".into(), seq: 0, ts: "t".into() };
        let field = dm_sent_field("bob", "c9");
        assert_eq!(
            decode_dm_sent(field.as_bytes(), encode_sent_ack(&ack).as_bytes()),
            Some((Arc::from("bob"), "c9".to_string(), ack))
        );
    }
}
