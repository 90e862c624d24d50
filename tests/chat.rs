//! chat.send (PROTOCOL.md §5, the implemented part) and presence.ping (§6).

mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn test_chat_send_ack_and_message_shape() {
    let server = Server::start();
    let mut alice = server.client_with(&Token::new("alice").name("Alice").sign()).await;
    let mut bob = server.client("bob").await;
    alice.join("lobby").await;
    bob.join("lobby").await;
    alice.recv_type("member.joined").await;

    let op_id = alice.send_request("chat.send", json!({"room": "lobby", "text": "hello, wörld ✓"})).await;
    let ack = alice.reply(&op_id).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let ack = &ack["data"];
    assert_eq!(ack["room"], "lobby");
    assert_eq!(ack["seq"], 1);
    assert!(ack["id"].as_str().is_some_and(|id| !id.is_empty()), "{ack}");
    assert_ts(ack["ts"].as_str().unwrap());

    let frame = bob.recv_type("chat.message").await;
    assert!(frame.get("op_id").is_none(), "events carry no op_id: {frame}");
    assert_ts(frame["ts"].as_str().expect("chat.message has ts"));
    let message = &frame["data"];
    assert_eq!(message["room"], "lobby");
    assert_eq!(message["id"], ack["id"]);
    assert_eq!(message["seq"], 1);
    assert_eq!(message["ts"], ack["ts"]);
    assert_eq!(message["from"], json!({"user_id": "alice", "name": "Alice"}));
    assert_eq!(message["text"], "hello, wörld ✓");
    assert_eq!(message["attachments"], json!([]));
    assert_eq!(message["reply_to"], Value::Null);
    assert_eq!(message["thread_root"], Value::Null);
    // The sender gets only the ack.
    alice.expect_no_frame(QUIET).await;
}

#[tokio::test]
async fn test_chat_send_without_op_id_is_delivered_without_ack() {
    let server = Server::start();
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("lobby").await;
    bob.join("lobby").await;
    alice.recv_type("member.joined").await;
    alice.send_json(&json!({"type": "chat.send", "data": {"room": "lobby", "text": "no op id"}})).await;
    assert_eq!(bob.recv_message("lobby").await["text"], "no op id");
    alice.expect_no_frame(QUIET).await;
    // An error is still sent without op_id.
    alice.send_json(&json!({"type": "chat.send", "data": {"room": "elsewhere", "text": "x"}})).await;
    let error = alice.recv_json().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["data"]["code"], "forbidden");
    assert!(error.get("op_id").is_none() || error["op_id"].is_null(), "{error}");
}

#[tokio::test]
async fn test_chat_send_requires_membership() {
    let server = Server::start();
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    bob.join("lobby").await;
    assert_eq!(alice.error("chat.send", json!({"room": "lobby", "text": "gatecrash"})).await, "forbidden");
    assert_eq!(alice.error("chat.send", json!({"room": "never-created", "text": "x"})).await, "forbidden");
    bob.expect_no_frame(QUIET).await;
    // Nothing was stored: the next message is seq 1.
    assert_eq!(bob.say("lobby", "first").await["seq"], 1);
}

#[tokio::test]
async fn test_seq_order_and_exactly_once_delivery() {
    let server = Server::start();
    const PER_SENDER: usize = 25;
    let mut clients = Vec::new();
    for name in ["alice", "bob", "carol", "dave"] {
        let mut client = server.client(name).await;
        client.join("busy").await;
        clients.push(client);
    }
    let count = clients.len();
    for (index, client) in clients.iter_mut().enumerate() {
        for _ in index + 1..count {
            client.recv_type("member.joined").await;
        }
    }
    // Interleave the senders; do not wait between sends.
    let mut op_ids: Vec<Vec<String>> = vec![Vec::new(); clients.len()];
    for n in 0..PER_SENDER {
        for (index, client) in clients.iter_mut().enumerate() {
            let op_id = client.send_request("chat.send", json!({"room": "busy", "text": format!("{index}:{n}")})).await;
            op_ids[index].push(op_id);
        }
    }
    let total = PER_SENDER * clients.len();
    let mut text_of_id: HashMap<String, String> = HashMap::new();
    let mut own_seqs: Vec<HashSet<u64>> = Vec::new();
    for (index, client) in clients.iter_mut().enumerate() {
        let mut seqs = HashSet::new();
        let mut last = 0;
        for (n, op_id) in op_ids[index].iter().enumerate() {
            let ack = client.reply(op_id).await;
            assert_eq!(ack["type"], "ack", "{ack}");
            let seq = ack["data"]["seq"].as_u64().unwrap();
            assert!(seq > last, "one sender's messages get increasing seqs: {seq} after {last}");
            last = seq;
            seqs.insert(seq);
            text_of_id.insert(ack["data"]["id"].as_str().unwrap().to_string(), format!("{index}:{n}"));
        }
        own_seqs.push(seqs);
    }
    let all_seqs: HashSet<u64> = own_seqs.iter().flatten().copied().collect();
    assert_eq!(all_seqs, (1..=total as u64).collect::<HashSet<_>>(), "seq is 1..=N, +1 per message, none reused");
    assert_eq!(text_of_id.len(), total, "message ids are unique");

    for (index, client) in clients.iter_mut().enumerate() {
        let expected = total - PER_SENDER;
        let mut received = Vec::new();
        while received.len() < expected {
            received.push(client.recv_message("busy").await);
        }
        let seqs: Vec<u64> = received.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        let mut want: Vec<u64> = (1..=total as u64).filter(|seq| !own_seqs[index].contains(seq)).collect();
        want.sort();
        assert_eq!(seqs, want, "client {index} sees every other message once, in seq order");
        for message in &received {
            let id = message["id"].as_str().unwrap();
            assert_eq!(message["text"].as_str(), text_of_id.get(id).map(String::as_str), "text matches the id");
        }
        client.expect_no_frame(QUIET).await;
    }
}

#[tokio::test]
async fn test_attachments_and_threads() {
    let server = Server::start();
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("lobby").await;
    bob.join("lobby").await;
    alice.recv_type("member.joined").await;

    let attachment =
        json!({"url": "https://files.example/cat.png", "name": "cat.png", "size": 1234, "mime": "image/png"});
    // An attachment without text is a message.
    let root = alice.ack("chat.send", json!({"room": "lobby", "attachments": [attachment]})).await;
    let message = bob.recv_message("lobby").await;
    assert_eq!(message["attachments"], json!([attachment]));
    assert_eq!(message["text"], "");

    let reply = bob.ack("chat.send", json!({"room": "lobby", "text": "nice", "reply_to": root["id"]})).await;
    let message = alice.recv_message("lobby").await;
    assert_eq!(message["reply_to"], root["id"]);
    assert_eq!(message["thread_root"], root["id"]);
    // A reply to a reply stays in the root's thread.
    alice.ack("chat.send", json!({"room": "lobby", "text": "thanks", "reply_to": reply["id"]})).await;
    let message = bob.recv_message("lobby").await;
    assert_eq!(message["reply_to"], reply["id"]);
    assert_eq!(message["thread_root"], root["id"]);

    let bad_attachments = [
        json!("not an array"),
        json!([{"url": "ftp://x/y", "name": "n", "size": 1, "mime": "a/b"}]),
        json!([{"url": "https://x/y", "name": "n", "size": "big", "mime": "a/b"}]),
        json!([{"url": "https://x/y", "name": "n", "size": 1}]),
        json!([{"url": "https://x/y", "name": "n", "size": 1, "mime": "nomime"}]),
        json!(vec![attachment.clone(); 11]),
    ];
    for bad in bad_attachments {
        assert_eq!(
            alice.error("chat.send", json!({"room": "lobby", "text": "t", "attachments": bad})).await,
            "invalid_message",
            "attachments {bad}"
        );
    }
    bob.expect_no_frame(QUIET).await;
}

/// PROTOCOL.md §5: `client_id` makes a send idempotent.
#[tokio::test]
async fn test_chat_send_client_id_is_idempotent() {
    let server = Server::start();
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("lobby").await;
    bob.join("lobby").await;
    alice.recv_type("member.joined").await;
    let first = alice.ack("chat.send", json!({"room": "lobby", "text": "once", "client_id": "c-42"})).await;
    let retry = alice.ack("chat.send", json!({"room": "lobby", "text": "once", "client_id": "c-42"})).await;
    assert_eq!(retry, first, "a retry with the same client_id gets the first ack again");
    assert_eq!(bob.recv_message("lobby").await["id"], first["id"]);
    bob.expect_no_frame(QUIET).await;
    assert_eq!(alice.say("lobby", "next").await["seq"], 2, "the retry was not stored");
}

#[tokio::test]
async fn test_presence_ping() {
    let server = Server::start();
    let mut alice = server.client("alice").await;
    let reply = alice.request("presence.ping", json!({})).await;
    assert_eq!(reply["type"], "presence.pong");
    assert_ts(reply["data"]["timestamp"].as_str().unwrap());
    // Without data, and without op_id.
    alice.send_json(&json!({"type": "presence.ping", "op_id": "p"})).await;
    assert_eq!(alice.recv_json().await["op_id"], "p");
    alice.send_json(&json!({"type": "presence.ping"})).await;
    let pong = alice.recv_json().await;
    assert_eq!(pong["type"], "presence.pong", "a ping without op_id still gets its pong: {pong}");
    alice.expect_no_frame(QUIET).await;
}

#[tokio::test]
async fn test_large_messages_within_the_limit() {
    let server = Server::start();
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("lobby").await;
    bob.join("lobby").await;
    alice.recv_type("member.joined").await;
    let text = "x".repeat(400 * 1024);
    alice.say("lobby", &text).await;
    assert_eq!(bob.recv_message("lobby").await["text"].as_str().unwrap().len(), text.len());
}
