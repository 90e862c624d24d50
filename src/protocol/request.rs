//! The typed client requests ([`Request`] and the values it carries, such as [`RoomAction`])
//! and the limits of their fields.

/// The most attachments one message may carry.
pub const MAX_ATTACHMENTS: usize = 10;

/// The largest `meta` of a message, serialized.
pub const MAX_META_BYTES: usize = 4096;

/// A message's `meta`: a JSON object of the sender's, relayed and stored as it is.
pub type Meta = std::sync::Arc<serde_json::Value>;
/// The longest `client_id` (idempotency key).
pub const MAX_CLIENT_ID_CHARS: usize = 64;

/// `since` of `room.join`: the last position the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    pub seq: u64,
    pub epoch: String,
}

/// Attachment metadata of a message (the server stores no files).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    pub url: String,
    pub name: String,
    pub size: u64,
    pub mime: String,
}

/// `chat.send` data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSend {
    pub room: String,
    pub text: String,
    pub attachments: Vec<Attachment>,
    pub reply_to: Option<String>,
    pub client_id: Option<String>,
    pub meta: Option<Meta>,
}

/// A typed client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Auth {
        token: String,
    },
    AuthRefresh {
        token: String,
    },
    RoomJoin {
        room: String,
        since: Option<Since>,
    },
    RoomLeave {
        room: String,
    },
    RoomMembers {
        room: String,
    },
    ChatSend(ChatSend),
    /// A room-scoped operation other than send (edit, delete, react, typing, history, ...).
    Room {
        room: String,
        action: RoomAction,
    },
    /// `dm.send`.
    Dm {
        to: String,
        text: String,
        attachments: Vec<Attachment>,
        client_id: Option<String>,
        meta: Option<Meta>,
    },
    /// `call.offer` / `call.answer` / `call.ice` / `call.hangup`: relayed to `to`.
    Call {
        to: String,
        signal: CallSignal,
    },
    /// `presence.set`.
    PresenceSet {
        status: String,
        message: Option<String>,
    },
    /// `presence.subscribe` (`subscribe: true`) / `presence.unsubscribe`.
    PresenceSubscribe {
        users: Vec<String>,
        subscribe: bool,
    },
    /// `presence.query`.
    PresenceQuery {
        users: Vec<String>,
    },
    PresencePing,
}

/// A WebRTC signaling step, relayed to every connection of the callee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallSignal {
    Offer {
        call_id: String,
        sdp: String,
        kind: String,
    },
    Answer {
        call_id: String,
        sdp: String,
    },
    /// `candidate` is the raw JSON of the client's candidate (a string or an object).
    Ice {
        call_id: String,
        candidate: String,
    },
    Hangup {
        call_id: String,
    },
}

impl CallSignal {
    pub fn call_id(&self) -> &str {
        match self {
            CallSignal::Offer { call_id, .. }
            | CallSignal::Answer { call_id, .. }
            | CallSignal::Ice { call_id, .. }
            | CallSignal::Hangup { call_id } => call_id,
        }
    }
}

/// An operation on a room's messages or activity (PROTOCOL.md §4–§5), applied by the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomAction {
    /// `chat.edit`: the author replaces the text; the old one is kept as a version.
    Edit { id: String, text: String },
    /// `chat.versions`: every version of a message.
    Versions { id: String },
    /// `chat.delete`: soft leaves a tombstone, hard removes the message.
    Delete { id: String, hard: bool },
    /// `chat.redact`: a moderator removes the text from history and every later read.
    Redact { id: String, reason: Option<String> },
    /// `chat.react`: add or remove the user's emoji.
    React { id: String, emoji: String, add: bool },
    /// `chat.typing`: a `true` not renewed within the typing timeout is ended by the owner.
    Typing { typing: bool },
    /// `chat.read` (`read: true`) / `chat.delivered`.
    Receipt { seq: u64, read: bool },
    /// `chat.upload`: progress of a file upload made elsewhere, relayed.
    Upload { upload_id: String, name: String, size: u64, sent: u64 },
    /// `room.history`: stored messages before `before_seq`, newest last.
    History { before_seq: Option<u64>, limit: u64 },
    /// `room.request_join` to a `private:` room (the asker is not in it yet).
    RequestJoin,
    /// `room.approve` (moderator): the requester joins.
    Approve { user_id: String },
    /// `room.deny` (moderator).
    Deny { user_id: String },
    /// `room.kick` (moderator): every connection of the user leaves.
    Kick { user_id: String },
    /// `room.ban` (moderator): kick, and refuse the user's joins until the ban ends.
    Ban { user_id: String, seconds: Option<u64> },
}

/// The most users one presence request names.
pub const MAX_PRESENCE_USERS: usize = 100;

/// The longest emoji (a grapheme cluster can be long; this bounds it).
pub const MAX_EMOJI_CHARS: usize = 32;
/// The most messages one `room.history` returns.
pub const MAX_HISTORY_LIMIT: u64 = 100;
