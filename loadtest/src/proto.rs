//! The harness's side of the client protocol: request frames, op ids that carry their own
//! send time, payload stamps, and a fast scanner for server frames.
//!
//! `chat.message` frames dominate the receive path (one per subscriber per publish), so they
//! are scanned for the few fields the checks need without building a JSON tree; every other
//! frame (acks, errors, events) is parsed with serde_json.

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use memchr::memmem::Finder;
use serde::Deserialize;

use crate::ws::find;

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Nanoseconds since the Unix epoch.
pub fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// The kind of a request, encoded as the first character of its `op_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    Join,
    Leave,
    Send,
    Members,
    Ping,
    Typing,
    Read,
    Delivered,
    Dm,
}

impl OpKind {
    pub const ALL: [OpKind; 9] = [
        OpKind::Join,
        OpKind::Leave,
        OpKind::Send,
        OpKind::Members,
        OpKind::Ping,
        OpKind::Typing,
        OpKind::Read,
        OpKind::Delivered,
        OpKind::Dm,
    ];

    pub fn letter(self) -> char {
        match self {
            OpKind::Join => 'j',
            OpKind::Leave => 'l',
            OpKind::Send => 's',
            OpKind::Members => 'm',
            OpKind::Ping => 'p',
            OpKind::Typing => 't',
            OpKind::Read => 'r',
            OpKind::Delivered => 'v',
            OpKind::Dm => 'd',
        }
    }

    pub fn from_letter(c: u8) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|kind| kind.letter() as u8 == c)
    }

    /// The protocol type of the request.
    pub fn type_name(self) -> &'static str {
        match self {
            OpKind::Join => "room.join",
            OpKind::Leave => "room.leave",
            OpKind::Send => "chat.send",
            OpKind::Members => "room.members",
            OpKind::Ping => "presence.ping",
            OpKind::Typing => "chat.typing",
            OpKind::Read => "chat.read",
            OpKind::Delivered => "chat.delivered",
            OpKind::Dm => "dm.send",
        }
    }
}

/// An `op_id` as the harness writes it: `{letter}{n}@{send_micros}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpRef {
    pub kind: OpKind,
    pub n: u64,
    pub sent_micros: u64,
}

impl OpRef {
    pub fn new(kind: OpKind, n: u64) -> OpRef {
        OpRef { kind, n, sent_micros: now_micros() }
    }

    pub fn encode(&self) -> String {
        format!("{}{}@{}", self.kind.letter(), self.n, self.sent_micros)
    }

    pub fn parse(op_id: &str) -> Option<OpRef> {
        let bytes = op_id.as_bytes();
        let kind = OpKind::from_letter(*bytes.first()?)?;
        let (n, micros) = op_id[1..].split_once('@')?;
        Some(OpRef { kind, n: n.parse().ok()?, sent_micros: micros.parse().ok()? })
    }
}

/// The stamp carried in every published text: `t:{unix_nanos}:{publisher}:{n}:{padding}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub sent_nanos: u64,
    pub publisher: u32,
    pub n: u64,
}

/// Words the padding is made of: chat-like text, so that a compressed run (`--compression`)
/// deflates about as well as real messages do, not as well as a run of one letter.
const PAD_WORDS: [&str; 32] = [
    "the",
    "meeting",
    "moved",
    "to",
    "thursday",
    "afternoon",
    "can",
    "you",
    "send",
    "me",
    "latest",
    "draft",
    "before",
    "lunch",
    "thanks",
    "i",
    "think",
    "we",
    "should",
    "ship",
    "it",
    "after",
    "review",
    "sounds",
    "good",
    "let's",
    "sync",
    "tomorrow",
    "morning",
    "about",
    "budget",
    "numbers",
];

/// A publish text of exactly `pad` extra bytes of words after its stamp.
pub fn stamp_text(publisher: u32, n: u64, pad: usize) -> String {
    let mut text = format!("t:{}:{}:{}:", now_nanos(), publisher, n);
    let end = text.len() + pad;
    let mut state = (n << 20) ^ publisher as u64 ^ 0x9e37_79b9_7f4a_7c15;
    while text.len() < end {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        text.push_str(PAD_WORDS[(state % PAD_WORDS.len() as u64) as usize]);
        text.push(' ');
    }
    text.truncate(end);
    text
}

/// Reads a stamp at the start of `text`.
pub fn parse_stamp(text: &[u8]) -> Option<Stamp> {
    let rest = text.strip_prefix(b"t:")?;
    let (sent_nanos, rest) = parse_u64(rest)?;
    let rest = rest.strip_prefix(b":")?;
    let (publisher, rest) = parse_u64(rest)?;
    let rest = rest.strip_prefix(b":")?;
    let (n, rest) = parse_u64(rest)?;
    rest.first().filter(|&&b| b == b':')?;
    Some(Stamp { sent_nanos, publisher: publisher as u32, n })
}

fn parse_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let mut value: u64 = 0;
    for &b in &bytes[..digits] {
        value = value * 10 + (b - b'0') as u64;
    }
    Some((value, &bytes[digits..]))
}

// === requests ===

pub fn join(room: &str, since: Option<(u64, &str)>, op: &OpRef) -> String {
    match since {
        None => format!(r#"{{"type":"room.join","op_id":"{}","data":{{"room":"{room}"}}}}"#, op.encode()),
        Some((seq, epoch)) => format!(
            r#"{{"type":"room.join","op_id":"{}","data":{{"room":"{room}","since":{{"seq":{seq},"epoch":{}}}}}}}"#,
            op.encode(),
            serde_json::Value::String(epoch.to_string())
        ),
    }
}

pub fn leave(room: &str, op: &OpRef) -> String {
    format!(r#"{{"type":"room.leave","op_id":"{}","data":{{"room":"{room}"}}}}"#, op.encode())
}

pub fn members(room: &str, op: &OpRef) -> String {
    format!(r#"{{"type":"room.members","op_id":"{}","data":{{"room":"{room}"}}}}"#, op.encode())
}

/// `chat.send`; the text is a stamp (ASCII, no escaping needed).
pub fn send(room: &str, text: &str, op: Option<&OpRef>) -> String {
    match op {
        Some(op) => {
            format!(r#"{{"type":"chat.send","op_id":"{}","data":{{"room":"{room}","text":"{text}"}}}}"#, op.encode())
        }
        None => format!(r#"{{"type":"chat.send","data":{{"room":"{room}","text":"{text}"}}}}"#),
    }
}

pub fn ping(op: &OpRef) -> String {
    format!(r#"{{"type":"presence.ping","op_id":"{}"}}"#, op.encode())
}

pub fn typing(room: &str, op: &OpRef) -> String {
    format!(r#"{{"type":"chat.typing","op_id":"{}","data":{{"room":"{room}","typing":true}}}}"#, op.encode())
}

pub fn receipt(room: &str, seq: u64, read: bool, op: &OpRef) -> String {
    let kind = if read { "chat.read" } else { "chat.delivered" };
    format!(r#"{{"type":"{kind}","op_id":"{}","data":{{"room":"{room}","seq":{seq}}}}}"#, op.encode())
}

pub fn dm(to: &str, text: &str, op: &OpRef) -> String {
    format!(r#"{{"type":"dm.send","op_id":"{}","data":{{"to":"{to}","text":"{text}"}}}}"#, op.encode())
}

/// What a raw-mode publisher sends by default: a frame shaped and sized like the
/// `chat.message` ringcast renders for the same publish (with the publisher's counter as
/// `seq`), so that raw-broadcast moves the same bytes and the harness does the same work per
/// delivery as against ringcast.
pub fn raw_chat_frame(room: &str, user: &str, text: &str, n: u64) -> String {
    const TS: &str = "1970-01-01T00:00:00.000Z";
    let id = format!("{:011x}{:05x}{:08x}", now_micros() / 1000, n & 0xf_ffff, 0);
    format!(
        r#"{{"type":"chat.message","data":{{"room":"{room}","id":"{id}","seq":{n},"ts":"{TS}","from":{{"user_id":"{user}","name":"{user}"}},"text":"{text}","attachments":[],"reply_to":null,"thread_root":null}},"ts":"{TS}"}}"#
    )
}

// === server frames ===

/// A `chat.message`, scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage<'a> {
    pub room: &'a str,
    pub seq: u64,
    pub recovered: bool,
    pub stamp: Option<Stamp>,
}

/// A server frame, classified.
#[derive(Debug)]
pub enum ServerFrame<'a> {
    Chat(ChatMessage<'a>),
    Ack {
        op: Option<OpRef>,
        data: serde_json::Value,
    },
    /// The `ack` of a `chat.send`, scanned: the room and the seq the message took (the one
    /// frame a publisher gets per message, read without building a JSON value).
    SendAck {
        op: OpRef,
        room: &'a str,
        seq: u64,
    },
    Error {
        op: Option<OpRef>,
        code: String,
    },
    /// `presence.pong` and other replies carrying an `op_id`, and events.
    Other {
        kind: String,
        op: Option<OpRef>,
        data: serde_json::Value,
    },
    Unparsable,
}

const CHAT_PREFIX: &[u8] = br#"{"type":"chat.message""#;
const ACK_PREFIX: &[u8] = br#"{"type":"ack","op_id":""#;

/// Classifies one text frame of the ringcast protocol.
pub fn classify(frame: &[u8]) -> ServerFrame<'_> {
    if frame.starts_with(CHAT_PREFIX) {
        if let Some(chat) = scan_chat(frame) {
            return ServerFrame::Chat(chat);
        }
    }
    if frame.starts_with(ACK_PREFIX) {
        if let Some(ack) = scan_send_ack(&frame[ACK_PREFIX.len()..]) {
            return ack;
        }
    }
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(rename = "type")]
        kind: String,
        op_id: Option<String>,
        #[serde(default)]
        data: serde_json::Value,
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope>(frame) else {
        return ServerFrame::Unparsable;
    };
    let op = envelope.op_id.as_deref().and_then(OpRef::parse);
    match envelope.kind.as_str() {
        "ack" => ServerFrame::Ack { op, data: envelope.data },
        "error" => {
            let code = envelope.data.get("code").and_then(|c| c.as_str()).unwrap_or("unknown").to_string();
            ServerFrame::Error { op, code }
        }
        "chat.message" => match chat_from_value(frame) {
            Some(chat) => ServerFrame::Chat(chat),
            None => ServerFrame::Unparsable,
        },
        _ => ServerFrame::Other { kind: envelope.kind, op, data: envelope.data },
    }
}

/// The keys the fast paths look for in every delivered frame, each searcher built once.
struct Keys {
    data: Finder<'static>,
    room: Finder<'static>,
    seq: Finder<'static>,
    text: Finder<'static>,
    recovered: Finder<'static>,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    data: Finder::new(b"\"data\":{"),
    room: Finder::new(b"\"room\":\""),
    seq: Finder::new(b"\"seq\":"),
    text: Finder::new(b"\"text\":\""),
    recovered: Finder::new(b"\"recovered\":true"),
});

/// The fast path: fields found by key in the rendered frame (the server renders `room`,
/// `seq` and `text` as plain values, the harness's texts and room names need no escapes).
fn scan_chat(frame: &[u8]) -> Option<ChatMessage<'_>> {
    let (body, room, seq) = scan_room_seq(frame)?;
    let keys = &*KEYS;
    let stamp = keys.text.find(body).and_then(|at| parse_stamp(&body[at + 8..]));
    let recovered = keys.recovered.find(body).is_some();
    Some(ChatMessage { room, seq, recovered, stamp })
}

/// The fast path for the ack of a `chat.send` (`rest` follows [`ACK_PREFIX`]); `None` for
/// other acks, which need their whole data.
fn scan_send_ack(rest: &[u8]) -> Option<ServerFrame<'_>> {
    let op_len = rest.iter().position(|&b| b == b'"')?;
    let op = OpRef::parse(std::str::from_utf8(&rest[..op_len]).ok()?)?;
    if op.kind != OpKind::Send {
        return None;
    }
    let (_, room, seq) = scan_room_seq(&rest[op_len..])?;
    Some(ServerFrame::SendAck { op, room, seq })
}

/// The body of a frame's `data` object with the plain `room` and the `seq` found in it.
fn scan_room_seq(frame: &[u8]) -> Option<(&[u8], &str, u64)> {
    let keys = &*KEYS;
    let data = keys.data.find(frame)? + 8;
    let body = &frame[data..];
    let room_at = keys.room.find(body)? + 8;
    let room_len = body[room_at..].iter().position(|&b| b == b'"')?;
    let room_bytes = &body[room_at..room_at + room_len];
    if room_bytes.contains(&b'\\') {
        return None;
    }
    let room = std::str::from_utf8(room_bytes).ok()?;
    let seq_at = keys.seq.find(body)? + 6;
    let (seq, _) = parse_u64(&body[seq_at..])?;
    Some((body, room, seq))
}

/// The slow path for a `chat.message` the scanner could not read (escapes, other layout).
fn chat_from_value(frame: &[u8]) -> Option<ChatMessage<'_>> {
    // Borrow the room from the frame when it appears verbatim; else give up (the harness
    // only uses plain room names).
    let value: serde_json::Value = serde_json::from_slice(frame).ok()?;
    let data = value.get("data")?;
    let room_owned = data.get("room")?.as_str()?;
    let seq = data.get("seq")?.as_u64()?;
    let needle = format!("\"{room_owned}\"");
    let at = find(frame, needle.as_bytes())? + 1;
    let room = std::str::from_utf8(&frame[at..at + room_owned.len()]).ok()?;
    let recovered = data.get("recovered").and_then(|r| r.as_bool()).unwrap_or(false);
    let stamp = data.get("text").and_then(|t| t.as_str()).and_then(|t| parse_stamp(t.as_bytes()));
    Some(ChatMessage { room, seq, recovered, stamp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_op_ref_round_trip() {
        let op = OpRef { kind: OpKind::Send, n: 42, sent_micros: 1_700_000_000_000_000 };
        assert_eq!(op.encode(), "s42@1700000000000000");
        assert_eq!(OpRef::parse(&op.encode()), Some(op));
        assert_eq!(OpRef::parse("x1@2"), None);
        assert_eq!(OpRef::parse("s1"), None);
        assert!(op.encode().len() <= 64);
    }

    #[test]
    fn test_stamp_round_trip() {
        let text = stamp_text(7, 99, 10);
        let stamp = parse_stamp(text.as_bytes()).unwrap();
        assert_eq!((stamp.publisher, stamp.n), (7, 99));
        assert!(stamp.sent_nanos > 0);
        let prefix = format!("t:{}:7:99:", stamp.sent_nanos);
        assert_eq!(text.len(), prefix.len() + 10, "{text}");
        assert!(text[prefix.len()..].bytes().all(|b| b.is_ascii_lowercase() || b == b' ' || b == b'\''));
        assert_eq!(parse_stamp(b"hello"), None);
        assert_eq!(parse_stamp(b"t:1:2:3"), None);
    }

    #[test]
    fn test_send_ack_scanned_and_other_acks_parsed() {
        let op = OpRef { kind: OpKind::Send, n: 9, sent_micros: 77 };
        let frame = format!(
            r#"{{"type":"ack","op_id":"{}","data":{{"room":"lt-f3","id":"m9","seq":41,"ts":"2025-01-01T00:00:00.000Z"}}}}"#,
            op.encode()
        );
        let ServerFrame::SendAck { op: got, room, seq } = classify(frame.as_bytes()) else { panic!("not a send ack") };
        assert_eq!((got, room, seq), (op, "lt-f3", 41));
        // A join's ack keeps its whole data (epoch, recovered).
        let join = OpRef { kind: OpKind::Join, n: 1, sent_micros: 5 };
        let frame =
            format!(r#"{{"type":"ack","op_id":"{}","data":{{"room":"r","seq":0,"epoch":"e1"}}}}"#, join.encode());
        let ServerFrame::Ack { op: Some(got), data } = classify(frame.as_bytes()) else { panic!("not an ack") };
        assert_eq!((got.kind, data["epoch"].as_str()), (OpKind::Join, Some("e1")));
        // A send ack the scanner cannot read (escaped room) goes the slow way.
        let frame = format!(r#"{{"type":"ack","op_id":"{}","data":{{"room":"a\u0062","seq":2}}}}"#, op.encode());
        let ServerFrame::Ack { data, .. } = classify(frame.as_bytes()) else { panic!("not an ack") };
        assert_eq!(data["room"], "ab");
    }

    #[test]
    fn test_scan_chat_message() {
        let frame = br#"{"type":"chat.message","data":{"room":"lt-f0","id":"m1","seq":17,"ts":"2025-01-01T00:00:00.000Z","from":{"user_id":"u1","name":"u1"},"text":"t:123:4:5:xx","attachments":[],"reply_to":null,"thread_root":null},"ts":"2025-01-01T00:00:00.000Z"}"#;
        let ServerFrame::Chat(chat) = classify(frame) else { panic!("not chat") };
        assert_eq!(chat.room, "lt-f0");
        assert_eq!(chat.seq, 17);
        assert!(!chat.recovered);
        assert_eq!(chat.stamp, Some(Stamp { sent_nanos: 123, publisher: 4, n: 5 }));
        let recovered =
            br#"{"type":"chat.message","data":{"room":"r","id":"m","seq":3,"text":"t:1:0:1:","recovered":true}}"#;
        let ServerFrame::Chat(chat) = classify(recovered) else { panic!("not chat") };
        assert!(chat.recovered);
        // Field order changed and an escaped room: the slow path still reads it.
        let other = br#"{"data":{"seq":5,"room":"a\u0062c","text":"t:1:0:1:"},"type":"chat.message"}"#;
        assert!(matches!(classify(other), ServerFrame::Unparsable | ServerFrame::Chat(_)));
    }

    #[test]
    fn test_raw_chat_frame_scans_like_a_server_frame() {
        let text = stamp_text(3, 9, 4);
        let frame = raw_chat_frame("lt-f1", "u7", &text, 9);
        let ServerFrame::Chat(chat) = classify(frame.as_bytes()) else { panic!("not chat: {frame}") };
        assert_eq!((chat.room, chat.seq), ("lt-f1", 9));
        assert_eq!(chat.stamp.map(|s| (s.publisher, s.n)), Some((3, 9)));
    }

    #[test]
    fn test_classify_replies() {
        let ack = br#"{"type":"ack","op_id":"j3@10","data":{"room":"r","status":"joined","seq":0,"epoch":"e1"}}"#;
        match classify(ack) {
            ServerFrame::Ack { op, data } => {
                assert_eq!(op.unwrap().kind, OpKind::Join);
                assert_eq!(data["epoch"], "e1");
            }
            other => panic!("{other:?}"),
        }
        let err = br#"{"type":"error","op_id":"t1@5","data":{"code":"unsupported","message":"later"}}"#;
        match classify(err) {
            ServerFrame::Error { op, code } => {
                assert_eq!(op.unwrap().kind, OpKind::Typing);
                assert_eq!(code, "unsupported");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify(b"not json"), ServerFrame::Unparsable));
    }

    #[test]
    fn test_requests_are_json() {
        let op = OpRef::new(OpKind::Join, 1);
        for text in [
            join("r1", None, &op),
            join("r1", Some((5, "ep\"x")), &op),
            leave("r1", &op),
            members("r1", &op),
            send("r1", "t:1:2:3:x", Some(&op)),
            send("r1", "t:1:2:3:x", None),
            ping(&op),
            typing("r1", &op),
            receipt("r1", 3, true, &op),
            dm("u2", "t:1:2:3:", &op),
        ] {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(value["type"].is_string());
        }
    }
}
