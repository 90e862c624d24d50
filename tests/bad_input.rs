//! PROTOCOL.md §2: every malformed or refused message is answered with an error, never
//! closes the connection, and never disturbs other clients.

mod common;

use common::*;
use serde_json::{json, Value};

/// A server whose error threshold does not get in the way of many bad inputs.
fn server() -> Server {
    Server::start_with(&["--error-limit", "100000"])
}

/// The client under test and an observer, both in `lobby`.
async fn setup(server: &Server) -> (Client, Client) {
    let mut bad = server.client("mallory").await;
    let mut observer = server.client("olivia").await;
    bad.join("lobby").await;
    observer.join("lobby").await;
    bad.recv_type("member.joined").await;
    (bad, observer)
}

/// The bad client still works, the observer saw nothing of it and still gets messages.
async fn finish(mut bad: Client, mut observer: Client) {
    bad.ping().await;
    observer.expect_no_frame(QUIET).await;
    bad.say("lobby", "still here").await;
    let message = observer.recv_message("lobby").await;
    assert_eq!(message["text"], "still here");
    assert_eq!(message["from"]["user_id"], "mallory");
    observer.ping().await;
    bad.expect_no_frame(QUIET).await;
}

/// Sends `raw` and expects exactly one error frame with `code`, echoing `op_id` (or
/// carrying none), then checks the connection still answers a ping.
async fn expect_error(client: &mut Client, raw: &str, code: &str, op_id: Option<&str>) {
    client.send_text(raw).await;
    let frame = client.recv_json().await;
    assert_eq!(frame["type"], "error", "input {raw:.200}: got {frame}");
    assert_eq!(frame["data"]["code"], code, "input {raw:.200}: got {frame}");
    assert!(frame["data"]["message"].is_string(), "error has a message: {frame}");
    match op_id {
        Some(op_id) => assert_eq!(frame["op_id"], op_id, "input {raw:.200}: op_id echoed: {frame}"),
        None => assert!(frame.get("op_id").is_none_or(Value::is_null), "input {raw:.200}: no op_id: {frame}"),
    }
    client.ping().await;
}

#[tokio::test]
async fn test_not_json() {
    let server = server();
    let (mut bad, observer) = setup(&server).await;
    for raw in [
        "hello",
        "{",
        "",
        " ",
        "{'type':'presence.ping'}",
        "{\"type\":\"presence.ping\",}",
        "{\"type\": presence.ping}",
    ] {
        expect_error(&mut bad, raw, "invalid_message", None).await;
    }
    finish(bad, observer).await;
}

#[tokio::test]
async fn test_trailing_garbage_is_not_json() {
    let server = server();
    let (mut bad, observer) = setup(&server).await;
    for raw in [
        r#"{"type":"presence.ping","op_id":"t"} trailing"#,
        r#"{"type":"presence.ping","op_id":"t"}{"type":"presence.ping"}"#,
    ] {
        expect_error(&mut bad, raw, "invalid_message", None).await;
    }
    finish(bad, observer).await;
}

#[tokio::test]
async fn test_json_not_an_object() {
    let server = server();
    let (mut bad, observer) = setup(&server).await;
    for raw in [
        "[1,2]",
        "[]",
        r#""presence.ping""#,
        "42",
        "-1.5e3",
        "null",
        "true",
        r#"[{"type":"presence.ping","op_id":"x"}]"#,
    ] {
        expect_error(&mut bad, raw, "invalid_message", None).await;
    }
    finish(bad, observer).await;
}

#[tokio::test]
async fn test_missing_or_non_string_type() {
    let server = server();
    let (mut bad, observer) = setup(&server).await;
    for raw in [
        r#"{"op_id":"t1"}"#,
        r#"{"op_id":"t1","data":{"room":"lobby"}}"#,
        r#"{"op_id":"t1","type":5}"#,
        r#"{"op_id":"t1","type":null}"#,
        r#"{"op_id":"t1","type":["chat.send"]}"#,
        r#"{"op_id":"t1","type":{"name":"chat.send"}}"#,
        r#"{"op_id":"t1","type":true}"#,
    ] {
        expect_error(&mut bad, raw, "invalid_message", Some("t1")).await;
    }
    expect_error(&mut bad, "{}", "invalid_message", None).await;
    finish(bad, observer).await;
}

#[tokio::test]
async fn test_unknown_type() {
    let server = server();
    let (mut bad, observer) = setup(&server).await;
    for kind in
        ["nope", "", "CHAT.SEND", "chat.send ", "connected", "ack", "error", "chat.message", "member.joined", "room"]
    {
        let raw = json!({"type": kind, "op_id": "u1", "data": {"room": "lobby", "text": "x"}}).to_string();
        expect_error(&mut bad, &raw, "unknown_type", Some("u1")).await;
    }
    // Without op_id the error still comes.
    expect_error(&mut bad, r#"{"type":"nope"}"#, "unknown_type", None).await;
    finish(bad, observer).await;
}

#[tokio::test]
async fn test_wrong_field_types() {
    let server = server();
    let (mut bad, observer) = setup(&server).await;
    let cases: Vec<Value> = vec![
        json!({"type": "room.join", "data": {"room": 7}}),
        json!({"type": "room.join", "data": {"room": ["lobby"]}}),
        json!({"type": "room.join", "data": {}}),
        json!({"type": "room.join"}),
        json!({"type": "room.join", "data": "lobby"}),
        json!({"type": "room.join", "data": ["lobby"]}),
        json!({"type": "room.join", "data": 1}),
        json!({"type": "room.leave", "data": {"room": true}}),
        json!({"type": "room.leave", "data": {}}),
        json!({"type": "room.members", "data": {"room": {"name": "lobby"}}}),
        json!({"type": "chat.send", "data": {"room": "lobby", "text": 5}}),
        json!({"type": "chat.send", "data": {"room": "lobby"}}),
        json!({"type": "chat.send", "data": {"text": "no room"}}),
        json!({"type": "chat.send", "data": {"room": 1, "text": "x"}}),
        json!({"type": "chat.send", "data": {"room": "lobby", "text": "x", "reply_to": 5}}),
        json!({"type": "chat.send", "data": {"room": "lobby", "text": "x", "client_id": 5}}),
        json!({"type": "chat.send", "data": {"room": "lobby", "text": "x", "client_id": ""}}),
        json!({"type": "chat.send", "data": {"room": "lobby", "text": "x", "client_id": "c".repeat(65)}}),
        json!({"type": "chat.send", "data": {"room": "lobby", "text": "x", "attachments": {"url": "https://x"}}}),
        json!({"type": "auth.refresh", "data": {"token": 5}}),
        json!({"type": "auth.refresh", "data": {}}),
    ];
    for mut case in cases {
        case["op_id"] = json!("w1");
        expect_error(&mut bad, &case.to_string(), "invalid_message", Some("w1")).await;
    }
    finish(bad, observer).await;
}

#[tokio::test]
async fn test_op_id_rules() {
    let server = server();
    let (mut bad, observer) = setup(&server).await;
    // Over-long op_id: refused, and not echoed.
    let long = "x".repeat(65);
    expect_error(&mut bad, &json!({"type": "presence.ping", "op_id": long}).to_string(), "invalid_message", None).await;
    let long_multibyte = "é".repeat(65);
    expect_error(
        &mut bad,
        &json!({"type": "presence.ping", "op_id": long_multibyte}).to_string(),
        "invalid_message",
        None,
    )
    .await;
    // A refused over-long op_id on chat.send: the message is not delivered.
    expect_error(
        &mut bad,
        &json!({"type": "chat.send", "op_id": long, "data": {"room": "lobby", "text": "x"}}).to_string(),
        "invalid_message",
        None,
    )
    .await;
    // Non-string op_ids.
    for op_id in [json!(5), json!(["a"]), json!({"a": 1}), json!(true)] {
        expect_error(&mut bad, &json!({"type": "presence.ping", "op_id": op_id}).to_string(), "invalid_message", None)
            .await;
    }
    // 64 chars (also 64 multi-byte chars) are fine and echoed.
    for op_id in ["y".repeat(64), "é".repeat(64)] {
        bad.send_json(&json!({"type": "presence.ping", "op_id": op_id})).await;
        let pong = bad.recv_json().await;
        assert_eq!(pong["type"], "presence.pong", "{pong}");
        assert_eq!(pong["op_id"], op_id.as_str());
    }
    finish(bad, observer).await;
}

#[tokio::test]
async fn test_invalid_room_names() {
    let server = server();
    let (mut bad, observer) = setup(&server).await;
    let too_long = "r".repeat(129);
    let names = [
        "",
        "has space",
        "slash/no",
        too_long.as_str(),
        "user:",
        "group:",
        "private:",
        "émoji",
        "tab\there",
        "new\nline",
        "nul\u{0}byte",
        "semi;colon",
        "quote\"",
        "#hash",
        "star*",
        "a,b",
    ];
    for name in names {
        for kind in ["room.join", "room.leave", "room.members"] {
            let raw = json!({"type": kind, "op_id": "r1", "data": {"room": name}}).to_string();
            expect_error(&mut bad, &raw, "invalid_message", Some("r1")).await;
        }
        let raw = json!({"type": "chat.send", "op_id": "r1", "data": {"room": name, "text": "x"}}).to_string();
        expect_error(&mut bad, &raw, "invalid_message", Some("r1")).await;
    }
    // The boundary: 128 chars of every allowed character class.
    let longest = format!("{}{}", "aZ09_.:@-", "x".repeat(128 - 9));
    bad.join(&longest).await;
    bad.say(&longest, "edge").await;
    bad.leave(&longest).await;
    finish(bad, observer).await;
}

#[tokio::test]
async fn test_binary_frames_are_unsupported() {
    let server = server();
    let (mut bad, observer) = setup(&server).await;
    for payload in [vec![0u8, 1, 2, 3], br#"{"type":"presence.ping","op_id":"b"}"#.to_vec(), vec![]] {
        bad.send_binary(payload).await;
        let frame = bad.recv_json().await;
        assert_eq!(frame["type"], "error", "{frame}");
        assert_eq!(frame["data"]["code"], "unsupported", "{frame}");
        bad.ping().await;
    }
    // A fragmented binary message is reassembled, then refused once.
    bad.send_fragments(&[b"ab", b"cd", b"ef"], true).await;
    let frame = bad.recv_json().await;
    assert_eq!(frame["data"]["code"], "unsupported", "{frame}");
    bad.ping().await;
    finish(bad, observer).await;
}

#[tokio::test]
async fn test_fragmented_text_is_reassembled() {
    let server = server();
    let (mut bad, mut observer) = setup(&server).await;
    let text = json!({"type": "presence.ping", "op_id": "frag"}).to_string();
    let bytes = text.as_bytes();
    let parts: Vec<&[u8]> = bytes.chunks(5).collect();
    bad.send_fragments(&parts, false).await;
    let pong = bad.recv_json().await;
    assert_eq!(pong["type"], "presence.pong", "{pong}");
    assert_eq!(pong["op_id"], "frag");
    // A control frame (ping) between the fragments of a message is allowed (RFC 6455 §5.4).
    {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        use tokio_tungstenite::tungstenite::Message;
        let text = json!({"type": "presence.ping", "op_id": "frag-ping"}).to_string();
        let (head, tail) = text.as_bytes().split_at(10);
        bad.ws.feed(Message::Frame(Frame::message(head.to_vec(), OpCode::Data(Data::Text), false))).await.unwrap();
        bad.ws.feed(Message::Ping(b"between".to_vec().into())).await.unwrap();
        bad.ws.feed(Message::Frame(Frame::message(tail.to_vec(), OpCode::Data(Data::Continue), true))).await.unwrap();
        bad.ws.flush().await.unwrap();
        assert_eq!(bad.reply("frag-ping").await["type"], "presence.pong");
    }
    // A multi-byte character split across fragments.
    let message =
        json!({"type": "chat.send", "op_id": "frag2", "data": {"room": "lobby", "text": "ünïcødé ✓"}}).to_string();
    let bytes = message.as_bytes();
    let split = message.find('ü').unwrap() + 1; // inside the two bytes of 'ü'
    bad.send_fragments(&[&bytes[..split], &bytes[split..]], false).await;
    assert_eq!(bad.reply("frag2").await["type"], "ack");
    assert_eq!(observer.recv_message("lobby").await["text"], "ünïcødé ✓");
    finish(bad, observer).await;
}

#[tokio::test]
async fn test_refused_requests_keep_the_connection() {
    let server = server();
    let (mut bad, observer) = setup(&server).await;
    // Refusals from the owner and from the access rules.
    assert_eq!(bad.error("chat.send", json!({"room": "elsewhere", "text": "x"})).await, "forbidden");
    assert_eq!(bad.error("room.members", json!({"room": "elsewhere"})).await, "forbidden");
    assert_eq!(bad.error("room.join", json!({"room": "user:olivia"})).await, "forbidden");
    assert_eq!(bad.error("room.join", json!({"room": "group:staff"})).await, "forbidden");
    assert_eq!(bad.error("room.join", json!({"room": "private:staff"})).await, "forbidden");
    assert_eq!(bad.error("auth.refresh", json!({"token": "abc"})).await, "unauthorized");
    assert_eq!(bad.error("auth.refresh", json!({"token": Token::new("olivia").sign()})).await, "forbidden");
    bad.ping().await;
    finish(bad, observer).await;
}

#[tokio::test]
async fn test_hostile_json() {
    let server = server();
    let (mut bad, observer) = setup(&server).await;
    // Deep nesting inside an otherwise valid request: answered (pong or invalid_message),
    // never a crash.
    let depth = 100_000;
    let deep = format!(
        r#"{{"type":"presence.ping","op_id":"deep","data":{{"x":{}{}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    bad.send_text(&deep).await;
    let reply = bad.recv_json().await;
    assert!(
        reply["type"] == "presence.pong" || (reply["type"] == "error" && reply["data"]["code"] == "invalid_message"),
        "deeply nested JSON: {reply}"
    );
    bad.ping().await;
    // A lone surrogate escape: not a valid room name in any reading.
    bad.send_text(r#"{"type":"room.join","op_id":"s","data":{"room":"\ud800"}}"#).await;
    let reply = bad.recv_json().await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["data"]["code"], "invalid_message", "{reply}");
    bad.ping().await;
    // Huge numbers and odd values in ignored places.
    bad.send_text(
        r#"{"type":"presence.ping","op_id":"n","data":{"x":1e999999,"y":-0,"z":123456789012345678901234567890}}"#,
    )
    .await;
    let reply = bad.recv_json().await;
    assert!(reply["type"] == "presence.pong" || reply["type"] == "error", "{reply}");
    bad.ping().await;
    // Many keys.
    let many: String = (0..20_000).map(|n| format!(r#""k{n}":{n},"#)).collect();
    bad.send_text(&format!(r#"{{{many}"type":"presence.ping","op_id":"many"}}"#)).await;
    let reply = bad.recv_json().await;
    assert_eq!(reply["type"], "presence.pong", "{reply}");
    finish(bad, observer).await;
}

#[tokio::test]
async fn test_bad_input_does_not_reach_other_clients() {
    let server = server();
    let (mut bad, mut observer) = setup(&server).await;
    let mut bystander = server.client("bystander").await;
    // A burst of assorted garbage without waiting for the answers.
    let garbage = [
        "nope".to_string(),
        "[]".to_string(),
        r#"{"type":5}"#.to_string(),
        r#"{"type":"nope"}"#.to_string(),
        r#"{"type":"room.join","data":{"room":"a b"}}"#.to_string(),
        r#"{"type":"chat.send","data":{"room":"lobby","text":5}}"#.to_string(),
        r#"{"type":"chat.send","data":{"room":"elsewhere","text":"x"}}"#.to_string(),
    ];
    for _ in 0..10 {
        for raw in &garbage {
            bad.send_text(raw).await;
        }
    }
    for _ in 0..10 * garbage.len() {
        let frame = bad.recv_json().await;
        assert_eq!(frame["type"], "error", "{frame}");
    }
    bystander.ping().await;
    bystander.expect_no_frame(QUIET).await;
    observer.ping().await;
    finish(bad, observer).await;
}
