//! How a stored message reads back to clients: the `chat.message` data of history reads,
//! replays and live delivery (the record itself is [`crate::store::StoredMessage`]).

use bytes::Bytes;
use serde::Serialize;

use super::StoredMessage;
use crate::frames;
use crate::protocol::Attachment;

#[derive(Serialize)]
pub(super) struct From<'a> {
    user_id: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
pub(super) struct ChatMessageData<'a> {
    room: &'a str,
    id: &'a str,
    seq: u64,
    ts: &'a str,
    from: From<'a>,
    text: &'a str,
    attachments: &'a [Attachment],
    reply_to: Option<&'a str>,
    thread_root: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    recovered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    edited_at: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    redacted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    redact_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reactions: Option<std::collections::BTreeMap<&'a str, usize>>,
}

impl StoredMessage {
    pub(super) fn data<'a>(&'a self, room: &'a str, recovered: bool) -> ChatMessageData<'a> {
        let extra = self.extra.as_deref();
        ChatMessageData {
            room,
            id: &self.id,
            seq: self.seq,
            ts: &self.ts,
            from: From { user_id: &self.user_id, name: &self.name },
            text: &self.text,
            attachments: &self.attachments,
            reply_to: self.reply_to.as_deref(),
            thread_root: self.thread_root.as_deref(),
            meta: self.meta.as_deref(),
            recovered,
            version: extra.map(|extra| extra.version).filter(|version| *version > 1),
            edited_at: extra.and_then(|extra| extra.edited_at.as_deref()),
            deleted: extra.is_some_and(|extra| extra.deleted),
            redacted: extra.is_some_and(|extra| extra.redacted.is_some()),
            redact_reason: extra.and_then(|extra| extra.redacted.as_deref()).filter(|reason| !reason.is_empty()),
            reactions: extra
                .filter(|extra| !extra.reactions.is_empty())
                .map(|extra| extra.reactions.iter().map(|(emoji, users)| (emoji.as_str(), users.len())).collect()),
        }
    }

    pub(super) fn render(&self, room: &str, recovered: bool) -> Bytes {
        frames::event("chat.message", self.data(room, recovered), &self.ts)
    }
}
