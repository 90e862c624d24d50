//! The client protocol (PROTOCOL.md §2): the envelope is parsed once, in place, with simd-json
//! on the frame's own buffer, then turned into a typed [`Request`].
//!
//! Parsing never panics and never allocates more than the strings the request keeps.

use std::borrow::Cow;
use std::cell::RefCell;

use simd_json::prelude::*;
use simd_json::BorrowedValue;

/// The longest `op_id` a client may send.
pub const MAX_OP_ID_CHARS: usize = 64;
/// The most attachments one message may carry.
pub const MAX_ATTACHMENTS: usize = 10;
/// The longest `client_id` (idempotency key).
pub const MAX_CLIENT_ID_CHARS: usize = 64;

/// Error codes of PROTOCOL.md §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidMessage,
    UnknownType,
    Unauthorized,
    Forbidden,
    NotFound,
    RateLimited,
    TooLarge,
    Conflict,
    Unsupported,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// Every code, for metrics registered at start.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::InvalidMessage,
        ErrorCode::UnknownType,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::RateLimited,
        ErrorCode::TooLarge,
        ErrorCode::Conflict,
        ErrorCode::Unsupported,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A refused request: a code and a short lowercase message for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
}

impl ReplyError {
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        ReplyError { code, message: message.into() }
    }

    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidMessage, message)
    }
}

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

/// The result of parsing one client frame: the `op_id` (when it could be read) and the
/// request or the error to answer.
pub struct Parsed {
    pub op_id: Option<String>,
    pub request: Result<Request, ReplyError>,
}

thread_local! {
    /// simd-json's scratch buffers, reused by every parse on this thread instead of being
    /// allocated per message (or kept per connection).
    static BUFFERS: RefCell<simd_json::Buffers> = RefCell::new(simd_json::Buffers::default());
}

/// Parses one text frame in place. `buf` is the frame's payload; simd-json rewrites it.
pub fn parse(buf: &mut [u8]) -> Parsed {
    BUFFERS.with(|buffers| {
        let mut buffers = buffers.borrow_mut();
        match simd_json::to_borrowed_value_with_buffers(buf, &mut buffers) {
            Ok(value) => parse_value(&value),
            Err(_) => Parsed { op_id: None, request: Err(ReplyError::invalid("not json")) },
        }
    })
}

fn parse_value(value: &BorrowedValue<'_>) -> Parsed {
    let Some(object) = value.as_object() else {
        return Parsed { op_id: None, request: Err(ReplyError::invalid("not a json object")) };
    };
    let op_id = match object.get("op_id") {
        None => None,
        Some(op_id) => match op_id.as_str() {
            Some(op_id) if op_id.chars().count() <= MAX_OP_ID_CHARS => Some(op_id.to_string()),
            Some(_) => return Parsed { op_id: None, request: Err(ReplyError::invalid("op_id longer than 64 chars")) },
            None if op_id.is_null() => None,
            None => return Parsed { op_id: None, request: Err(ReplyError::invalid("op_id must be a string")) },
        },
    };
    let kind = match object.get("type") {
        None => return Parsed { op_id, request: Err(ReplyError::invalid("missing type")) },
        Some(kind) => match kind.as_str() {
            Some(kind) => kind,
            None => return Parsed { op_id, request: Err(ReplyError::invalid("type must be a string")) },
        },
    };
    let data = object.get("data");
    let request = match data {
        Some(data) if !data.is_object() && !data.is_null() => Err(ReplyError::invalid("data must be an object")),
        _ => parse_request(kind, Data(data)),
    };
    Parsed { op_id, request }
}

fn parse_request(kind: &str, data: Data<'_, '_>) -> Result<Request, ReplyError> {
    match kind {
        "auth" => Ok(Request::Auth { token: data.string("token")? }),
        "auth.refresh" => Ok(Request::AuthRefresh { token: data.string("token")? }),
        "room.join" => Ok(Request::RoomJoin { room: data.room()?, since: data.since()? }),
        "room.leave" => Ok(Request::RoomLeave { room: data.room()? }),
        "room.members" => Ok(Request::RoomMembers { room: data.room()? }),
        "chat.send" => {
            let attachments = data.attachments()?;
            let text = match data.optional_string("text")? {
                Some(text) => text,
                None if !attachments.is_empty() => String::new(),
                None => return Err(ReplyError::invalid("data.text is required")),
            };
            Ok(Request::ChatSend(ChatSend {
                room: data.room()?,
                text,
                attachments,
                reply_to: data.optional_string("reply_to")?,
                client_id: data.bounded_string("client_id", MAX_CLIENT_ID_CHARS)?,
            }))
        }
        "presence.ping" => Ok(Request::PresencePing),
        "chat.edit" => room_action(data, RoomAction::Edit { id: data.message_id()?, text: data.string("text")? }),
        "chat.versions" => room_action(data, RoomAction::Versions { id: data.message_id()? }),
        "chat.delete" => {
            let hard = match data.optional_string("mode")?.as_deref() {
                None | Some("soft") => false,
                Some("hard") => true,
                Some(_) => return Err(ReplyError::invalid("data.mode must be soft or hard")),
            };
            room_action(data, RoomAction::Delete { id: data.message_id()?, hard })
        }
        "chat.redact" => room_action(
            data,
            RoomAction::Redact { id: data.message_id()?, reason: data.bounded_string("reason", 256)? },
        ),
        "chat.react" => {
            let emoji = data
                .bounded_string("emoji", MAX_EMOJI_CHARS)?
                .ok_or_else(|| ReplyError::invalid("data.emoji is required"))?;
            room_action(data, RoomAction::React { id: data.message_id()?, emoji, add: data.bool("add")? })
        }
        "chat.typing" => room_action(data, RoomAction::Typing { typing: data.bool("typing")? }),
        "chat.read" | "chat.delivered" => {
            room_action(data, RoomAction::Receipt { seq: data.u64("seq")?, read: kind == "chat.read" })
        }
        "chat.upload" => room_action(
            data,
            RoomAction::Upload {
                upload_id: data
                    .bounded_string("upload_id", 128)?
                    .ok_or_else(|| ReplyError::invalid("data.upload_id is required"))?,
                name: data.bounded_string("name", 256)?.ok_or_else(|| ReplyError::invalid("data.name is required"))?,
                size: data.u64("size")?,
                sent: data.u64("sent")?,
            },
        ),
        "dm.send" => {
            let attachments = data.attachments()?;
            let text = match data.optional_string("text")? {
                Some(text) => text,
                None if !attachments.is_empty() => String::new(),
                None => return Err(ReplyError::invalid("data.text is required")),
            };
            Ok(Request::Dm {
                to: data.user_id("to")?,
                text,
                attachments,
                client_id: data.bounded_string("client_id", MAX_CLIENT_ID_CHARS)?,
            })
        }
        "call.offer" | "call.answer" | "call.ice" | "call.hangup" => {
            let call_id =
                data.bounded_string("call_id", 128)?.ok_or_else(|| ReplyError::invalid("data.call_id is required"))?;
            let signal = match kind {
                "call.offer" => {
                    let kind = data.optional_string("kind")?.unwrap_or_else(|| "audio".to_string());
                    if !matches!(kind.as_str(), "audio" | "video" | "screen") {
                        return Err(ReplyError::invalid("data.kind must be audio, video or screen"));
                    }
                    CallSignal::Offer { call_id, sdp: data.string("sdp")?, kind }
                }
                "call.answer" => CallSignal::Answer { call_id, sdp: data.string("sdp")? },
                "call.ice" => {
                    let candidate =
                        data.get("candidate").ok_or_else(|| ReplyError::invalid("data.candidate is required"))?;
                    if !(candidate.is_str() || candidate.is_object()) {
                        return Err(ReplyError::invalid("data.candidate must be a string or an object"));
                    }
                    CallSignal::Ice { call_id, candidate: candidate.encode() }
                }
                _ => CallSignal::Hangup { call_id },
            };
            Ok(Request::Call { to: data.user_id("to")?, signal })
        }
        "presence.set" => {
            let status = data.string("status")?;
            if !matches!(status.as_str(), "online" | "away" | "busy") {
                return Err(ReplyError::invalid("data.status must be online, away or busy"));
            }
            Ok(Request::PresenceSet { status, message: data.bounded_string("message", 256)? })
        }
        "presence.subscribe" => Ok(Request::PresenceSubscribe { users: data.users()?, subscribe: true }),
        "presence.unsubscribe" => Ok(Request::PresenceSubscribe { users: data.users()?, subscribe: false }),
        "presence.query" => Ok(Request::PresenceQuery { users: data.users()? }),
        "room.request_join" => {
            let room = data.room()?;
            if !room.starts_with("private:") {
                return Err(ReplyError::invalid("only private: rooms take join requests"));
            }
            Ok(Request::Room { room, action: RoomAction::RequestJoin })
        }
        "room.approve" => room_action(data, RoomAction::Approve { user_id: data.user_id("user_id")? }),
        "room.deny" => room_action(data, RoomAction::Deny { user_id: data.user_id("user_id")? }),
        "room.kick" => room_action(data, RoomAction::Kick { user_id: data.user_id("user_id")? }),
        "room.ban" => {
            let seconds = match data.get("seconds") {
                None => None,
                Some(seconds) => match seconds.as_u64() {
                    Some(seconds) if seconds > 0 => Some(seconds),
                    _ => return Err(ReplyError::invalid("data.seconds must be an integer > 0")),
                },
            };
            room_action(data, RoomAction::Ban { user_id: data.user_id("user_id")?, seconds })
        }
        "room.history" => {
            let limit = match data.get("limit") {
                None => MAX_HISTORY_LIMIT,
                Some(limit) => match limit.as_u64() {
                    Some(limit) if (1..=MAX_HISTORY_LIMIT).contains(&limit) => limit,
                    _ => return Err(ReplyError::invalid("data.limit must be an integer 1-100")),
                },
            };
            let before_seq = match data.get("before_seq") {
                None => None,
                Some(seq) => {
                    Some(seq.as_u64().ok_or_else(|| ReplyError::invalid("data.before_seq must be an integer >= 0"))?)
                }
            };
            room_action(data, RoomAction::History { before_seq, limit })
        }
        _ => Err(ReplyError::new(ErrorCode::UnknownType, "unknown type")),
    }
}

fn room_action(data: Data<'_, '_>, action: RoomAction) -> Result<Request, ReplyError> {
    Ok(Request::Room { room: data.room()?, action })
}

/// Typed access to the `data` object with errors that name the field.
#[derive(Clone, Copy)]
struct Data<'v, 'a>(Option<&'v BorrowedValue<'a>>);

impl<'v, 'a> Data<'v, 'a> {
    fn get(&self, field: &str) -> Option<&'v BorrowedValue<'a>> {
        self.0.and_then(|data| data.get(field)).filter(|value| !value.is_null())
    }

    fn string(&self, field: &'static str) -> Result<String, ReplyError> {
        self.optional_string(field)?.ok_or_else(|| ReplyError::invalid(format!("data.{field} is required")))
    }

    fn optional_string(&self, field: &'static str) -> Result<Option<String>, ReplyError> {
        match self.get(field) {
            None => Ok(None),
            Some(value) => match value.as_str() {
                Some(text) => Ok(Some(text.to_string())),
                None => Err(ReplyError::invalid(format!("data.{field} must be a string"))),
            },
        }
    }

    fn bounded_string(&self, field: &'static str, max_chars: usize) -> Result<Option<String>, ReplyError> {
        let value = self.optional_string(field)?;
        if value.as_ref().is_some_and(|value| value.is_empty() || value.chars().count() > max_chars) {
            return Err(ReplyError::invalid(format!("data.{field} must be 1-{max_chars} chars")));
        }
        Ok(value)
    }

    fn bool(&self, field: &'static str) -> Result<bool, ReplyError> {
        match self.get(field) {
            None => Err(ReplyError::invalid(format!("data.{field} is required"))),
            Some(value) => {
                value.as_bool().ok_or_else(|| ReplyError::invalid(format!("data.{field} must be true or false")))
            }
        }
    }

    fn u64(&self, field: &'static str) -> Result<u64, ReplyError> {
        match self.get(field) {
            None => Err(ReplyError::invalid(format!("data.{field} is required"))),
            Some(value) => {
                value.as_u64().ok_or_else(|| ReplyError::invalid(format!("data.{field} must be an integer >= 0")))
            }
        }
    }

    fn users(&self) -> Result<Vec<String>, ReplyError> {
        let bad = || ReplyError::invalid(format!("data.users must be 1-{MAX_PRESENCE_USERS} user ids"));
        let items = self.get("users").and_then(|users| users.as_array()).ok_or_else(bad)?;
        if items.is_empty() || items.len() > MAX_PRESENCE_USERS {
            return Err(bad());
        }
        let mut users: Vec<String> = Vec::with_capacity(items.len());
        for item in items {
            let user = item.as_str().filter(|user| crate::auth::is_valid_id(user)).ok_or_else(bad)?;
            if !users.iter().any(|known| known == user) {
                users.push(user.to_string());
            }
        }
        Ok(users)
    }

    fn user_id(&self, field: &'static str) -> Result<String, ReplyError> {
        let user_id = self.string(field)?;
        if !crate::auth::is_valid_id(&user_id) {
            return Err(ReplyError::invalid(format!("data.{field} is not a valid user id")));
        }
        Ok(user_id)
    }

    fn message_id(&self) -> Result<String, ReplyError> {
        self.bounded_string("id", 64)?.ok_or_else(|| ReplyError::invalid("data.id is required"))
    }

    fn room(&self) -> Result<String, ReplyError> {
        let room = self.string("room")?;
        if !is_valid_room_name(&room) {
            return Err(ReplyError::invalid("invalid room name: 1-128 chars of [A-Za-z0-9_.:@-]"));
        }
        Ok(room)
    }

    fn since(&self) -> Result<Option<Since>, ReplyError> {
        let Some(since) = self.get("since") else {
            return Ok(None);
        };
        let bad = || ReplyError::invalid("data.since must be {seq: integer >= 0, epoch: string}");
        let seq = since.get("seq").and_then(|seq| seq.as_u64()).ok_or_else(bad)?;
        let epoch = since.get("epoch").and_then(|epoch| epoch.as_str()).ok_or_else(bad)?;
        Ok(Some(Since { seq, epoch: epoch.to_string() }))
    }

    fn attachments(&self) -> Result<Vec<Attachment>, ReplyError> {
        let Some(value) = self.get("attachments") else {
            return Ok(Vec::new());
        };
        let Some(items) = value.as_array() else {
            return Err(ReplyError::invalid("data.attachments must be an array"));
        };
        if items.len() > MAX_ATTACHMENTS {
            return Err(ReplyError::invalid(format!("data.attachments holds more than {MAX_ATTACHMENTS} items")));
        }
        let bad = || ReplyError::invalid("each attachment must be {url, name, size, mime}");
        items
            .iter()
            .map(|item| {
                let field = |name: &str| item.get(name).and_then(|value| value.as_str()).map(str::to_string);
                let attachment = Attachment {
                    url: field("url").ok_or_else(bad)?,
                    name: field("name").ok_or_else(bad)?,
                    size: item.get("size").and_then(|size| size.as_u64()).ok_or_else(bad)?,
                    mime: field("mime").ok_or_else(bad)?,
                };
                let url_ok = attachment.url.starts_with("https://") || attachment.url.starts_with("http://");
                if !url_ok || attachment.url.len() > 2048 || attachment.name.is_empty() || attachment.name.len() > 256 {
                    return Err(ReplyError::invalid("attachment url must be http(s), name 1-256 chars"));
                }
                if !attachment.mime.contains('/') || attachment.mime.len() > 128 {
                    return Err(ReplyError::invalid("attachment mime must look like type/subtype"));
                }
                Ok(attachment)
            })
            .collect()
    }
}

/// Room names: 1–128 chars of `[A-Za-z0-9_.:@-]`; a prefix (`user:`, `group:`, `private:`)
/// must be followed by a non-empty id.
pub fn is_valid_room_name(room: &str) -> bool {
    if !crate::auth::is_valid_id(room) {
        return false;
    }
    for prefix in ["user:", "group:", "private:"] {
        if let Some(rest) = room.strip_prefix(prefix) {
            return !rest.is_empty();
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Parsed {
        let mut bytes = text.as_bytes().to_vec();
        parse(&mut bytes)
    }

    fn error_of(text: &str) -> (Option<String>, ErrorCode) {
        let parsed = parse_str(text);
        (parsed.op_id, parsed.request.unwrap_err().code)
    }

    #[test]
    fn test_parses_chat_send() {
        let parsed = parse_str(r#"{"type":"chat.send","op_id":"c-1","data":{"room":"lobby","text":"hi \u00e9"}}"#);
        assert_eq!(parsed.op_id.as_deref(), Some("c-1"));
        match parsed.request.unwrap() {
            Request::ChatSend(send) => {
                assert_eq!(send.room, "lobby");
                assert_eq!(send.text, "hi é");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn test_bad_envelopes() {
        assert_eq!(error_of("not json"), (None, ErrorCode::InvalidMessage));
        assert_eq!(error_of("[1,2]"), (None, ErrorCode::InvalidMessage));
        assert_eq!(error_of(r#"{"op_id":"a"}"#), (Some("a".into()), ErrorCode::InvalidMessage));
        assert_eq!(error_of(r#"{"type":5,"op_id":"a"}"#), (Some("a".into()), ErrorCode::InvalidMessage));
        assert_eq!(error_of(r#"{"type":"nope","op_id":"a"}"#), (Some("a".into()), ErrorCode::UnknownType));
        let long = "x".repeat(65);
        assert_eq!(
            error_of(&format!(r#"{{"type":"presence.ping","op_id":"{long}"}}"#)),
            (None, ErrorCode::InvalidMessage)
        );
        assert_eq!(error_of(r#"{"type":"room.join","data":{"room":7}}"#), (None, ErrorCode::InvalidMessage));
        assert_eq!(error_of(r#"{"type":"room.join","data":{"room":"a b"}}"#), (None, ErrorCode::InvalidMessage));
        assert_eq!(error_of(r#"{"type":"room.join","data":"x"}"#), (None, ErrorCode::InvalidMessage));
        assert_eq!(error_of(r#"{"type":"presence.set","data":{}}"#), (None, ErrorCode::InvalidMessage));
        assert_eq!(error_of(r#"{"type":"presence.query","data":{"users":[]}}"#).1, ErrorCode::InvalidMessage);
        assert_eq!(error_of(r#"{"type":"room.kick","data":{}}"#), (None, ErrorCode::InvalidMessage));
        assert_eq!(error_of(r#"{"type":"dm.send","data":{}}"#), (None, ErrorCode::InvalidMessage));
        assert_eq!(error_of(r#"{"type":"chat.edit","data":{"room":"r","id":"x"}}"#).1, ErrorCode::InvalidMessage);
        assert_eq!(
            error_of(r#"{"type":"chat.react","data":{"room":"r","id":"x","emoji":"y","add":"yes"}}"#).1,
            ErrorCode::InvalidMessage
        );
        assert_eq!(error_of(r#"{"type":"room.history","data":{"room":"r","limit":101}}"#).1, ErrorCode::InvalidMessage);
        assert_eq!(
            error_of(r#"{"type":"chat.delete","data":{"room":"r","id":"x","mode":"maybe"}}"#).1,
            ErrorCode::InvalidMessage
        );
    }

    #[test]
    fn test_attachments_are_validated() {
        let eleven = vec![r#"{"url":"https://x/y","name":"n","size":1,"mime":"a/b"}"#; 11].join(",");
        let text = format!(r#"{{"type":"chat.send","data":{{"room":"r","text":"t","attachments":[{eleven}]}}}}"#);
        assert_eq!(error_of(&text).1, ErrorCode::InvalidMessage);
        let bad = r#"{"type":"chat.send","data":{"room":"r","attachments":[{"url":"ftp://x","name":"n","size":1,"mime":"a/b"}]}}"#;
        assert_eq!(error_of(bad).1, ErrorCode::InvalidMessage);
        let good = r#"{"type":"chat.send","data":{"room":"r","attachments":[{"url":"https://x","name":"n","size":1,"mime":"a/b"}]}}"#;
        assert!(parse_str(good).request.is_ok());
    }

    #[test]
    fn test_room_names() {
        assert!(is_valid_room_name("lobby"));
        assert!(is_valid_room_name("a.b_c-d:e@f"));
        assert!(is_valid_room_name(&"x".repeat(128)));
        assert!(!is_valid_room_name(&"x".repeat(129)));
        assert!(!is_valid_room_name(""));
        assert!(!is_valid_room_name("has space"));
        assert!(!is_valid_room_name("slash/no"));
        assert!(!is_valid_room_name("user:"));
        assert!(!is_valid_room_name("émoji"));
    }
}
