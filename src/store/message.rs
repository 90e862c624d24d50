//! The records of a room's durable state: a message as the history keeps it, what happened to
//! it after it was sent, and the first ack of a send with a `client_id`.

use std::sync::Arc;

use crate::protocol::{Attachment, Meta};

/// A message as the room's history keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: String,
    pub seq: u64,
    pub ts: String,
    pub user_id: Arc<str>,
    pub name: Arc<str>,
    pub text: String,
    pub attachments: Vec<Attachment>,
    pub reply_to: Option<String>,
    pub thread_root: Option<String>,
    /// The sender's `meta` object, as sent.
    pub meta: Option<Meta>,
    /// Edits, moderation and reactions (most messages have none: boxed to keep history small).
    pub extra: Option<Box<MessageExtra>>,
}

/// What happened to a message after it was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageExtra {
    /// The current version (1 = as sent).
    pub version: u32,
    pub edited_at: Option<String>,
    /// Earlier versions, oldest first: (version, text, when it was written).
    pub versions: Vec<(u32, String, String)>,
    /// Soft-deleted: a tombstone without text.
    pub deleted: bool,
    /// Redacted by a moderator, with the reason given.
    pub redacted: Option<String>,
    /// Each emoji with the users who reacted with it, in order of first use.
    pub reactions: Vec<(String, Vec<Arc<str>>)>,
}

/// What the first send with a `client_id` was acknowledged with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentAck {
    pub id: String,
    pub seq: u64,
    pub ts: String,
}

impl MessageExtra {
    /// The after-send state of a message nothing happened to yet (version 1).
    pub fn as_sent() -> Box<MessageExtra> {
        Box::new(MessageExtra { version: 1, ..Default::default() })
    }
}

impl StoredMessage {
    /// Deleted or redacted: no more edits or reactions.
    pub fn is_gone(&self) -> bool {
        self.extra.as_deref().is_some_and(|extra| extra.deleted || extra.redacted.is_some())
    }

    /// The message's after-send state, made on first use.
    pub fn extra_mut(&mut self) -> &mut MessageExtra {
        self.extra.get_or_insert_with(MessageExtra::as_sent)
    }

    /// Removes the text and attachments from the message and from every earlier version.
    pub fn erase_text(&mut self) -> &mut MessageExtra {
        self.text.clear();
        self.attachments.clear();
        self.meta = None;
        let extra = self.extra_mut();
        for (_, text, _) in &mut extra.versions {
            text.clear();
        }
        extra
    }
}
