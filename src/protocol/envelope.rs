//! The envelope parser: one text frame parsed in place into its `op_id` and a typed
//! [`Request`], by the request's `type`.

use std::cell::RefCell;

use simd_json::prelude::*;
use simd_json::BorrowedValue;

use super::error::{ErrorCode, ReplyError};
use super::fields::Data;
use super::request::{
    CallSignal, ChatSend, Request, RoomAction, MAX_CLIENT_ID_CHARS, MAX_EMOJI_CHARS, MAX_HISTORY_LIMIT,
};

/// The longest `op_id` a client may send.
pub const MAX_OP_ID_CHARS: usize = 64;

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
                meta: data.meta()?,
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
                meta: data.meta()?,
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
}
