//! Message metadata (`meta` on `chat.send` and `dm.send`): a JSON object of at most 4 KiB,
//! relayed, stored, replayed and returned by history, on one node and on three; bad `meta`
//! is refused without disturbing anything.

mod common;

use common::admin::{admin, setup, ADMIN_KEY};
use common::cluster::Setup;
use common::*;
use serde_json::json;

async fn meta_travels_with_messages(setup: &Setup) {
    let room = "orders";
    let mut alice = setup.node(0).client("alice").await;
    let epoch = alice.join(room).await["epoch"].as_str().unwrap().to_string();
    let mut bob = setup.node(1).client("bob").await;
    bob.join(room).await;
    let meta = json!({"order_id": 42, "kind": "invoice", "nested": {"lines": [1, 2, 3]}});
    let ack = alice.ack("chat.send", json!({"room": room, "text": "paid", "meta": meta})).await;
    assert_eq!(ack["seq"], 1);
    let message = bob.recv_message(room).await;
    assert_eq!(message["meta"], meta, "relayed as sent");
    // A message without meta has none.
    alice.say(room, "plain").await;
    assert!(bob.recv_message(room).await.get("meta").is_none());
    // Stored: history, replay with since, and the server API's history.
    let history = bob.ack("room.history", json!({"room": room})).await;
    assert_eq!(history["messages"][0]["meta"], meta);
    let mut carol = setup.node(2).client("carol").await;
    let (replayed, _) = carol.join_since(room, 0, &epoch).await;
    assert_eq!(replayed[0]["data"]["meta"], meta);
    let api = admin(setup.node(2), "GET", &format!("/v1/rooms/{room}/history"), None).await;
    assert_eq!(api["messages"][0]["meta"], meta);
    // From the backend too.
    let published = admin(
        setup.node(1),
        "POST",
        &format!("/v1/rooms/{room}/publish"),
        Some(json!({"text": "x", "meta": {"a": 1}})),
    )
    .await;
    assert_eq!(published["seq"], 3);
    assert_eq!(alice.recv_message(room).await["meta"], json!({"a": 1}));

    // Direct messages: live and from the inbox.
    let dm_meta = json!({"thread": "t-1"});
    alice.ack("dm.send", json!({"to": "bob", "text": "hi", "meta": dm_meta})).await;
    assert_eq!(bob.recv_type("dm.message").await["data"]["meta"], dm_meta);
    alice.ack("dm.send", json!({"to": "dora", "text": "later", "meta": dm_meta})).await;
    let mut dora = setup.node(1).client("dora").await;
    let offline = dora.recv_type("dm.message").await;
    assert_eq!((offline["data"]["meta"].clone(), offline["data"]["offline"].clone()), (dm_meta, json!(true)));

    // Bad meta: refused, nothing stored, the connection goes on.
    let big = json!({"blob": "x".repeat(4100)});
    for (meta, code) in [(json!("text"), "invalid_message"), (json!([1]), "invalid_message"), (big, "too_large")] {
        assert_eq!(alice.error("chat.send", json!({"room": room, "text": "t", "meta": meta})).await, code);
        assert_eq!(alice.error("dm.send", json!({"to": "bob", "text": "t", "meta": meta})).await, code);
    }
    let just_under = json!({"blob": "x".repeat(4000)});
    assert_eq!(alice.ack("chat.send", json!({"room": room, "text": "t", "meta": just_under})).await["seq"], 4);
    let response = common::admin::call(
        setup.node(0),
        "POST",
        &format!("/v1/rooms/{room}/publish"),
        Some(ADMIN_KEY),
        Some(r#"{"text":"x","meta":7}"#),
    )
    .await;
    assert_eq!(response.status, 400, "{}", response.body);
    assert!(response.body.contains("data.meta"), "{}", response.body);
}

#[tokio::test]
async fn test_meta_one_node() {
    meta_travels_with_messages(&setup(false).await).await;
}

#[tokio::test]
async fn test_meta_three_nodes() {
    meta_travels_with_messages(&setup(true).await).await;
}

#[tokio::test]
async fn test_meta_counts_in_the_message_size() {
    let server = Server::start_with(&["--max-message-bytes", "2048"]);
    let mut client = server.client("erin").await;
    client.join("small").await;
    let meta = json!({"blob": "x".repeat(2100)});
    client.send_json(&json!({"type": "chat.send", "data": {"room": "small", "text": "t", "meta": meta}})).await;
    assert_eq!(client.expect_close().await, Some(1009));
}
