//! Direct messages (with the offline inbox) and call signaling (PROTOCOL.md §5, §8), with
//! their bad inputs, run twice: all clients on one node, and spread over a 3-node cluster
//! (the recipient's personal room, and so its inbox, is owned wherever the ring says).

mod common;

use std::time::Duration;

use common::cluster::Setup;
use common::*;
use serde_json::json;

async fn dms_reach_every_connection_or_wait_in_the_inbox(clustered: bool) {
    let setup = Setup::new(clustered, &["--inbox-size", "3"]).await;
    let mut alice = setup.node(0).client("alice").await;
    let mut alice_phone = setup.node(2).client("alice").await;
    let mut bob = setup.node(1).client("bob").await;
    let mut bob_tablet = setup.node(2).client("bob").await;
    // Each user's first connection hears of its second one.
    alice.recv_type("device.online").await;
    bob.recv_type("device.online").await;

    // Online: every connection of the recipient and the sender's other connections.
    let ack = alice.ack("dm.send", json!({"to": "bob", "text": "hi bob"})).await;
    let id = ack["id"].as_str().unwrap().to_string();
    assert_ts(ack["ts"].as_str().unwrap());
    for client in [&mut bob, &mut bob_tablet, &mut alice_phone] {
        let message = client.recv_type("dm.message").await["data"].clone();
        assert_eq!(
            (message["id"].as_str(), message["from"].as_str(), message["to"].as_str(), message["text"].as_str()),
            (Some(id.as_str()), Some("alice"), Some("bob"), Some("hi bob"))
        );
        assert!(message.get("offline").is_none(), "{message}");
    }
    alice.expect_no_frame(QUIET).await;

    // A retry with the same client_id gets the first ack again and delivers nothing twice.
    let first = alice.ack("dm.send", json!({"to": "bob", "text": "once", "client_id": "c-1"})).await;
    let retry = alice.ack("dm.send", json!({"to": "bob", "text": "once", "client_id": "c-1"})).await;
    assert_eq!(first["id"], retry["id"]);
    bob.recv_type("dm.message").await;
    bob.expect_no_frame(QUIET).await;

    // Offline: kept (at most --inbox-size, oldest dropped) until the next connection.
    for index in 0..5 {
        alice.ack("dm.send", json!({"to": "carol", "text": format!("while away {index}")})).await;
    }
    let mut carol = setup.node(1).client("carol").await;
    let mut texts = Vec::new();
    for _ in 0..3 {
        let message = carol.recv_type("dm.message").await["data"].clone();
        assert_eq!(message["offline"], true, "{message}");
        texts.push(message["text"].as_str().unwrap().to_string());
    }
    assert_eq!(texts, ["while away 2", "while away 3", "while away 4"]);
    carol.expect_no_frame(QUIET).await;
    // Delivered once: a second connection finds the inbox empty.
    let mut carol_again = setup.node(2).client("carol").await;
    carol_again.expect_no_frame(QUIET).await;

    // Bad inputs, each answered, the connection unharmed.
    assert_eq!(alice.error("dm.send", json!({"to": "alice", "text": "me"})).await, "invalid_message");
    assert_eq!(alice.error("dm.send", json!({"to": "no\ncontrol characters", "text": "x"})).await, "invalid_message");
    assert_eq!(alice.error("dm.send", json!({"to": "bob"})).await, "invalid_message");
    assert_eq!(alice.error("dm.send", json!({"to": 5, "text": "x"})).await, "invalid_message");
    alice.ping().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_dms_on_one_node() {
    dms_reach_every_connection_or_wait_in_the_inbox(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_dms_across_nodes() {
    dms_reach_every_connection_or_wait_in_the_inbox(true).await;
}

async fn dms_never_cross_tenants(clustered: bool) {
    let setup = Setup::new(clustered, &[]).await;
    let mut alice = setup.node(0).client_with(&Token::new("alice").tenant("acme").sign()).await;
    let mut other_bob = setup.node(1).client_with(&Token::new("bob").tenant("globex").sign()).await;
    alice.ack("dm.send", json!({"to": "bob", "text": "for acme's bob"})).await;
    other_bob.expect_no_frame(QUIET).await;
    // acme's bob gets it when he connects.
    let mut acme_bob = setup.node(2).client_with(&Token::new("bob").tenant("acme").sign()).await;
    assert_eq!(acme_bob.recv_type("dm.message").await["data"]["text"], "for acme's bob");
    other_bob.expect_no_frame(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_dms_never_cross_tenants_on_one_node() {
    dms_never_cross_tenants(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_dms_never_cross_tenants_across_nodes() {
    dms_never_cross_tenants(true).await;
}

#[tokio::test]
async fn test_inbox_messages_expire() {
    let server = Server::start_with(&["--inbox-ttl-secs", "0.3"]);
    let mut alice = server.client("alice").await;
    alice.ack("dm.send", json!({"to": "late", "text": "too old by then"})).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut late = server.client("late").await;
    late.expect_no_frame(QUIET).await;
}

async fn calls_are_relayed_to_every_connection(clustered: bool) {
    let setup = Setup::new(clustered, &[]).await;
    let mut caller = setup.node(0).client("caller").await;
    let mut callee = setup.node(1).client("callee").await;
    let mut callee_phone = setup.node(2).client("callee").await;

    let ack =
        caller.ack("call.offer", json!({"to": "callee", "call_id": "k1", "sdp": "v=0 offer", "kind": "video"})).await;
    assert_eq!((ack["to"].as_str(), ack["call_id"].as_str()), (Some("callee"), Some("k1")));
    for client in [&mut callee, &mut callee_phone] {
        let incoming = client.recv_type("call.incoming").await["data"].clone();
        assert_eq!(incoming, json!({"from": "caller", "call_id": "k1", "sdp": "v=0 offer", "kind": "video"}));
    }
    callee.ack("call.answer", json!({"to": "caller", "call_id": "k1", "sdp": "v=0 answer"})).await;
    assert_eq!(
        caller.recv_type("call.answer").await["data"],
        json!({"from": "callee", "call_id": "k1", "sdp": "v=0 answer"})
    );
    let candidate =
        json!({"candidate": "candidate:1 1 UDP 2122252543 10.0.0.1 54321 typ host", "sdpMid": "0", "sdpMLineIndex": 0});
    caller.ack("call.ice", json!({"to": "callee", "call_id": "k1", "candidate": candidate})).await;
    assert_eq!(callee.recv_type("call.ice").await["data"]["candidate"], candidate);
    caller.ack("call.hangup", json!({"to": "callee", "call_id": "k1"})).await;
    for client in [&mut callee, &mut callee_phone] {
        assert_eq!(client.recv_type("call.ended").await["data"], json!({"call_id": "k1", "by": "caller"}));
    }
    // The default kind is audio.
    caller.ack("call.offer", json!({"to": "callee", "call_id": "k2", "sdp": "v=0"})).await;
    assert_eq!(callee.recv_type("call.incoming").await["data"]["kind"], "audio");

    // Bad inputs.
    assert_eq!(
        caller.error("call.offer", json!({"to": "nobody-online", "call_id": "k3", "sdp": "v=0"})).await,
        "not_found"
    );
    assert_eq!(
        caller.error("call.offer", json!({"to": "callee", "call_id": "k4", "sdp": "v=0", "kind": "hologram"})).await,
        "invalid_message"
    );
    assert_eq!(
        caller.error("call.offer", json!({"to": "caller", "call_id": "k5", "sdp": "v=0"})).await,
        "invalid_message"
    );
    assert_eq!(caller.error("call.answer", json!({"to": "callee", "call_id": "k1"})).await, "invalid_message");
    assert_eq!(
        caller.error("call.ice", json!({"to": "callee", "call_id": "k1", "candidate": 7})).await,
        "invalid_message"
    );
    assert_eq!(caller.error("call.hangup", json!({"to": "callee"})).await, "invalid_message");
    caller.ping().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_calls_on_one_node() {
    calls_are_relayed_to_every_connection(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_calls_across_nodes() {
    calls_are_relayed_to_every_connection(true).await;
}
