//! PROTOCOL.md §1 limits: message size (1009), rate (rate_limited, 4008), error threshold
//! (1008), slow consumers (4009), connection cap.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// A JSON request of exactly `len` bytes (a presence.ping padded in `data`).
fn ping_of_len(op_id: &str, len: usize) -> String {
    let empty = json!({"type": "presence.ping", "op_id": op_id, "data": {"pad": ""}}).to_string();
    assert!(len >= empty.len());
    json!({"type": "presence.ping", "op_id": op_id, "data": {"pad": "p".repeat(len - empty.len())}}).to_string()
}

#[tokio::test]
async fn test_message_at_the_size_limit_is_accepted() {
    let server = Server::start_with(&["--max-message-bytes", "1024"]);
    let (mut client, _observer) = pair(&server).await;
    let text = ping_of_len("edge", 1024);
    assert_eq!(text.len(), 1024);
    client.send_text(&text).await;
    assert_eq!(client.reply("edge").await["type"], "presence.pong");
    // Also when it arrives in fragments.
    let parts: Vec<&[u8]> = text.as_bytes().chunks(300).collect();
    client.send_fragments(&parts, false).await;
    assert_eq!(client.reply("edge").await["type"], "presence.pong");
}

#[tokio::test]
async fn test_oversize_message_closes_1009() {
    let server = Server::start_with(&["--max-message-bytes", "1024"]);
    let (mut client, mut observer) = pair(&server).await;
    client.send_text(&ping_of_len("big", 1025)).await;
    assert_eq!(client.expect_close().await, Some(1009));
    let left = observer.recv_type("member.left").await;
    assert_eq!(left["data"]["user_id"], "alice");
    observer_unaffected(&server, &mut observer).await;
}

#[tokio::test]
async fn test_oversize_binary_message_closes_1009() {
    let server = Server::start_with(&["--max-message-bytes", "1024"]);
    let (mut client, mut observer) = pair(&server).await;
    client.send_binary(vec![7u8; 4096]).await;
    assert_eq!(client.expect_close().await, Some(1009));
    observer_unaffected(&server, &mut observer).await;
}

#[tokio::test]
async fn test_oversize_fragmented_message_closes_1009() {
    let server = Server::start_with(&["--max-message-bytes", "1024"]);
    let (mut client, mut observer) = pair(&server).await;
    // Every fragment is small; together they pass the limit by one byte.
    let text = ping_of_len("frag", 1025);
    let parts: Vec<&[u8]> = text.as_bytes().chunks(256).collect();
    assert!(parts.iter().all(|p| p.len() <= 256));
    client.send_fragments(&parts, false).await;
    assert_eq!(client.expect_close().await, Some(1009));
    observer_unaffected(&server, &mut observer).await;
}

#[tokio::test]
async fn test_invalid_utf8_text_closes_1007_and_others_are_unaffected() {
    let server = Server::start();
    let (mut client, mut observer) = pair(&server).await;
    // RFC 6455 §8.1: a text message that is not UTF-8 fails the connection with 1007.
    let frame = Frame::message(vec![b'"', 0xff, 0xfe, b'"'], OpCode::Data(Data::Text), true);
    futures_util::SinkExt::send(&mut client.ws, Message::Frame(frame)).await.unwrap();
    assert_eq!(client.expect_close().await, Some(1007));
    observer_unaffected(&server, &mut observer).await;
}

#[tokio::test]
async fn test_websocket_protocol_violations_close_1002_and_others_are_unaffected() {
    let server = Server::start();
    let (mut client, mut observer) = pair(&server).await;
    // A continuation frame with no message to continue.
    let frame = Frame::message(b"{}".to_vec(), OpCode::Data(Data::Continue), true);
    futures_util::SinkExt::send(&mut client.ws, Message::Frame(frame)).await.unwrap();
    assert_eq!(client.expect_close().await, Some(1002));
    assert_eq!(observer.recv_type("member.left").await["data"]["user_id"], "alice");

    // A new text frame while a fragmented message is still open.
    let mut client = server.client("alice").await;
    let first = Frame::message(b"{\"type\":".to_vec(), OpCode::Data(Data::Text), false);
    let second = Frame::message(b"{}".to_vec(), OpCode::Data(Data::Text), true);
    futures_util::SinkExt::feed(&mut client.ws, Message::Frame(first)).await.unwrap();
    futures_util::SinkExt::send(&mut client.ws, Message::Frame(second)).await.unwrap();
    assert_eq!(client.expect_close().await, Some(1002));
    observer_unaffected(&server, &mut observer).await;
}

#[tokio::test]
async fn test_client_close_is_answered() {
    let server = Server::start();
    let (mut client, mut observer) = pair(&server).await;
    client.ws.close(None).await.unwrap();
    assert_eq!(client.expect_close().await, Some(1000), "the server answers a close with a close");
    assert_eq!(observer.recv_type("member.left").await["data"]["user_id"], "alice");
    observer_unaffected(&server, &mut observer).await;
}

#[tokio::test]
async fn test_rate_limit_drops_excess_messages() {
    let server = Server::start_with(&["--rate-per-second", "2", "--rate-burst", "5", "--rate-limit-close-secs", "30"]);
    let (mut client, mut observer) = pair(&server).await;
    // The joins above used 1 token; wait for the bucket to refill.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for n in 0..12 {
        client.send_json(&json!({"type": "chat.send", "op_id": format!("s{n}"), "data": {"room": "lobby", "text": format!("m{n}")}})).await;
    }
    let mut acked = Vec::new();
    let mut limited = 0;
    for _ in 0..12 {
        let frame = client.recv_json().await;
        match frame["type"].as_str() {
            Some("ack") => acked.push(frame["op_id"].as_str().unwrap().to_string()),
            Some("error") => {
                assert_eq!(frame["data"]["code"], "rate_limited", "{frame}");
                limited += 1;
            }
            _ => panic!("unexpected {frame}"),
        }
    }
    assert_eq!(acked.len(), 5, "the burst passes: {acked:?}");
    assert_eq!(limited, 7, "the excess is refused");
    // Dropped messages are not delivered.
    let mut texts = Vec::new();
    for _ in 0..5 {
        texts.push(observer.recv_message("lobby").await["text"].as_str().unwrap().to_string());
    }
    assert_eq!(texts, vec!["m0", "m1", "m2", "m3", "m4"]);
    observer.expect_no_frame(QUIET).await;
    // The bucket refills at the configured rate.
    tokio::time::sleep(Duration::from_millis(600)).await;
    client.ping().await;
}

/// PROTOCOL.md §2: the error that answers a request echoes its `op_id`, `rate_limited`
/// included (the client needs it to know which request was dropped).
#[tokio::test]
async fn test_rate_limited_error_echoes_op_id() {
    let server = Server::start_with(&["--rate-per-second", "1", "--rate-burst", "2", "--rate-limit-close-secs", "30"]);
    let mut client = server.client("alice").await;
    for n in 0..4 {
        client.send_json(&json!({"type": "presence.ping", "op_id": format!("p{n}")})).await;
    }
    let frames: Vec<Value> =
        vec![client.recv_json().await, client.recv_json().await, client.recv_json().await, client.recv_json().await];
    let limited: Vec<&Value> = frames.iter().filter(|f| f["type"] == "error").collect();
    assert!(!limited.is_empty(), "{frames:?}");
    for frame in limited {
        assert_eq!(frame["data"]["code"], "rate_limited");
        assert!(
            frame["op_id"] == "p2" || frame["op_id"] == "p3",
            "rate_limited error carries the request's op_id: {frame}"
        );
    }
}

#[tokio::test]
async fn test_sustained_flood_closes_4008() {
    let server = Server::start_with(&["--rate-per-second", "5", "--rate-burst", "5", "--rate-limit-close-secs", "1"]);
    let (mut client, mut observer) = pair(&server).await;
    let started = Instant::now();
    let mut saw_rate_limited = false;
    let mut code = None;
    // Flood for up to 4 s: 40 messages/s against 5/s allowed.
    'flood: while started.elapsed() < Duration::from_secs(4) {
        for _ in 0..4 {
            if futures_util::SinkExt::send(&mut client.ws, Message::text(r#"{"type":"presence.ping"}"#)).await.is_err()
            {
                break 'flood;
            }
        }
        loop {
            match client.next_event(Duration::from_millis(25)).await {
                Event::Json(frame) => {
                    if frame["type"] == "error" {
                        assert_eq!(frame["data"]["code"], "rate_limited", "{frame}");
                        saw_rate_limited = true;
                    }
                }
                Event::Closed(close) => {
                    code = close;
                    break 'flood;
                }
                Event::Ended(_) => break 'flood,
                Event::Timeout => break,
            }
        }
    }
    if code.is_none() {
        code = client.expect_close_within(Duration::from_secs(2)).await;
    }
    assert!(saw_rate_limited, "rate_limited errors come before the close");
    assert_eq!(code, Some(4008));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed before the flood lasted --rate-limit-close-secs: {elapsed:?}"
    );
    observer_unaffected(&server, &mut observer).await;
}

#[tokio::test]
async fn test_short_bursts_of_excess_do_not_close() {
    let server =
        Server::start_with(&["--rate-per-second", "20", "--rate-burst", "3", "--rate-limit-close-secs", "0.5"]);
    let mut client = server.client("alice").await;
    // Exceed briefly, then behave (gap > the server's run gap of 2 s would reset; we only
    // need to stay under the rate for a while), then check the connection is still open.
    for _ in 0..6 {
        client.send_json(&json!({"type": "presence.ping"})).await;
    }
    for _ in 0..6 {
        client.recv_json().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        client.ping().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn test_rate_limited_errors_do_not_count_towards_1008() {
    let server = Server::start_with(&[
        "--rate-per-second",
        "1",
        "--rate-burst",
        "2",
        "--rate-limit-close-secs",
        "30",
        "--error-limit",
        "3",
    ]);
    let mut client = server.client("alice").await;
    for _ in 0..10 {
        client.send_json(&json!({"type": "presence.ping"})).await;
    }
    let mut limited = 0;
    for _ in 0..10 {
        let frame = client.recv_json().await;
        if frame["type"] == "error" {
            assert_eq!(frame["data"]["code"], "rate_limited");
            limited += 1;
        }
    }
    assert_eq!(limited, 8);
    client.expect_no_frame(QUIET).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.ping().await;
}

#[tokio::test]
async fn test_error_threshold_closes_1008() {
    let server = Server::start_with(&["--error-limit", "5"]);
    let (mut client, mut observer) = pair(&server).await;
    // Four failures of different kinds: still open.
    client.send_text("not json").await;
    assert_eq!(client.recv_error().await.0, "invalid_message");
    assert_eq!(client.error("nope", json!({})).await, "unknown_type");
    assert_eq!(client.error("chat.send", json!({"room": "elsewhere", "text": "x"})).await, "forbidden");
    assert_eq!(client.error("room.join", json!({"room": "user:olivia"})).await, "forbidden");
    client.ping().await;
    // The fifth failure within the window closes with 1008, after its error frame.
    client.send_json(&json!({"type": "room.members", "op_id": "fifth", "data": {"room": "elsewhere"}})).await;
    let (frames, code) = client.frames_until_close(Duration::from_secs(5)).await;
    assert!(
        frames.iter().any(|f| f["op_id"] == "fifth" && f["type"] == "error"),
        "the fifth error is sent: {frames:?}"
    );
    assert_eq!(code, Some(1008));
    observer_unaffected(&server, &mut observer).await;
}

#[tokio::test]
async fn test_errors_outside_the_window_do_not_count() {
    let server = Server::start_with(&["--error-limit", "3", "--error-window-secs", "0.4"]);
    let mut client = server.client("alice").await;
    for _ in 0..2 {
        assert_eq!(client.error("nope", json!({})).await, "unknown_type");
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..2 {
        assert_eq!(client.error("nope", json!({})).await, "unknown_type");
    }
    client.ping().await;
    client.expect_no_frame(QUIET).await;
}

#[tokio::test]
async fn test_slow_consumer_is_dropped_and_others_keep_receiving() {
    let server = Server::start_with(&["--queue-frames", "16"]);
    let mut slow = server.client("slow").await;
    slow.join("firehose").await;
    let mut fast: Vec<Client> = Vec::new();
    for name in ["fast1", "fast2"] {
        let mut client = server.client(name).await;
        client.join("firehose").await;
        fast.push(client);
    }
    let mut publisher = server.client("publisher").await;
    publisher.join("firehose").await;
    fast[0].recv_type("member.joined").await; // fast2
    fast[0].recv_type("member.joined").await; // publisher
    fast[1].recv_type("member.joined").await; // publisher

    // The slow client reads nothing from here on. The publisher sends ~8 KiB messages in
    // small batches and waits until both fast readers have them all, so a fast reader never
    // has more than a batch queued.
    let text = "z".repeat(8 * 1024);
    const BATCH: usize = 8;
    const MAX_MESSAGES: usize = 4000;
    let mut sent = 0;
    let mut received: Vec<Vec<u64>> = vec![Vec::new(), Vec::new()];
    let mut slow_left = false;
    let mut after_left = 0;
    while sent < MAX_MESSAGES && after_left < 3 {
        for _ in 0..BATCH {
            publisher.send_json(&json!({"type": "chat.send", "data": {"room": "firehose", "text": text}})).await;
        }
        sent += BATCH;
        for (index, client) in fast.iter_mut().enumerate() {
            while received[index].len() < sent {
                let frame = client.recv_where("chat.message or member.left", Duration::from_secs(10), |_| true).await;
                match frame["type"].as_str() {
                    Some("chat.message") => received[index].push(frame["data"]["seq"].as_u64().unwrap()),
                    Some("member.left") => {
                        assert_eq!(frame["data"]["user_id"], "slow", "{frame}");
                        slow_left = true;
                    }
                    _ => panic!("fast reader {index} got {frame}"),
                }
            }
        }
        if slow_left {
            after_left += 1;
        }
    }
    assert!(slow_left, "the slow consumer was not dropped after {sent} messages of 8 KiB with a 16-frame queue");
    let want: Vec<u64> = (1..=sent as u64).collect();
    for (index, seqs) in received.iter().enumerate() {
        assert!(seqs == &want, "fast reader {index} got every message once, in seq order ({} of {sent})", seqs.len());
    }

    // The slow consumer's connection has ended: it may get what was buffered, then a 4009
    // close or just the end of the stream.
    let mut last_seq = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    let end = loop {
        assert!(Instant::now() < deadline, "the slow consumer's connection did not end");
        match slow.next_event(Duration::from_secs(5)).await {
            Event::Json(frame) => {
                if frame["type"] == "chat.message" {
                    let seq = frame["data"]["seq"].as_u64().unwrap();
                    assert_eq!(seq, last_seq + 1, "what the slow consumer did get is in order");
                    last_seq = seq;
                }
            }
            Event::Closed(code) => break Some(code),
            Event::Ended(_) => break None,
            Event::Timeout => panic!("the slow consumer's connection is still open after {last_seq} messages"),
        }
    };
    eprintln!("slow consumer dropped after {sent} messages; it got {last_seq} of them; close frame: {end:?}");
    if let Some(code) = end {
        assert_eq!(code, Some(4009), "a slow consumer that gets a close frame gets 4009");
    }
    assert!((last_seq as usize) < sent, "the slow consumer did not get everything ({last_seq} of {sent})");
}

#[tokio::test]
async fn test_max_connections() {
    let server = Server::start_with(&["--max-connections", "2"]);
    let token = Token::new("alice").sign();
    let first = server.client_with(&token).await;
    let _second = server.client_with(&token).await;
    let status = upgrade_status(server.bearer_request(&token)).await;
    assert!(status == 503 || status == 429, "a connection over the cap is refused, got {status}");
    drop(first);
    let ok =
        eventually(Duration::from_secs(3), || async { upgrade_status(server.bearer_request(&token)).await == 101 })
            .await;
    assert!(ok, "a slot frees up when a connection closes");
}
