//! Moderation (PROTOCOL.md §7): private rooms with join requests, approval and denial; kicks;
//! bans that end (a short ban, not a sleep through a long one). Each with its permission rules
//! and bad inputs, on one node and across a 3-node cluster.

mod common;

use std::time::Duration;

use common::cluster::Setup;
use common::*;
use serde_json::json;

fn moderator_token(sub: &str) -> String {
    Token::new(sub).roles(&["moderator"]).sign()
}

async fn private_rooms(clustered: bool) {
    let setup = Setup::new(clustered, &[]).await;
    let room = "private:club";
    let mut moderator = setup.node(0).client_with(&moderator_token("mod")).await;
    let mut alice = setup.node(1).client("alice").await;
    let mut bob = setup.node(2).client("bob").await;
    moderator.join(room).await;
    assert_eq!(alice.error("room.join", json!({"room": room})).await, "forbidden");

    let pending = alice.ack("room.request_join", json!({"room": room})).await;
    assert_eq!(pending["status"], "pending");
    let request = moderator.recv_type("request.join.pending").await["data"].clone();
    assert_eq!((request["room"].as_str(), request["user_id"].as_str()), (Some(room), Some("alice")));
    assert_eq!(bob.error("room.approve", json!({"room": room, "user_id": "alice"})).await, "forbidden");
    let decision = moderator.ack("room.approve", json!({"room": room, "user_id": "alice"})).await;
    assert_eq!(decision["status"], "approved");
    let approved = alice.recv_type("request.join.approved").await["data"].clone();
    assert_eq!((approved["room"].as_str(), approved["by"].as_str()), (Some(room), Some("mod")));
    assert_eq!(moderator.recv_type("member.joined").await["data"]["user_id"], "alice");
    // Approved means joined: alice chats in the room.
    alice.say(room, "thanks").await;
    assert_eq!(moderator.recv_message(room).await["text"], "thanks");

    bob.ack("room.request_join", json!({"room": room})).await;
    moderator.recv_type("request.join.pending").await;
    moderator.ack("room.deny", json!({"room": room, "user_id": "bob"})).await;
    assert_eq!(bob.recv_type("request.join.denied").await["data"]["room"], room);
    assert_eq!(bob.error("chat.send", json!({"room": room, "text": "let me in"})).await, "forbidden");

    // Bad inputs.
    assert_eq!(moderator.error("room.approve", json!({"room": room, "user_id": "nobody"})).await, "not_found");
    assert_eq!(moderator.error("room.deny", json!({"room": room, "user_id": "bob"})).await, "not_found");
    assert_eq!(alice.error("room.request_join", json!({"room": "lobby"})).await, "invalid_message");
    assert_eq!(alice.error("room.approve", json!({"room": room})).await, "invalid_message");
    moderator.ping().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_private_rooms_on_one_node() {
    private_rooms(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_private_rooms_across_nodes() {
    private_rooms(true).await;
}

async fn kicks_and_bans(clustered: bool) {
    let setup = Setup::new(clustered, &[]).await;
    let room = "hall";
    let mut moderator = setup.node(0).client_with(&moderator_token("mod")).await;
    let mut eve = setup.node(1).client("eve").await;
    let mut eve_phone = setup.node(2).client("eve").await;
    let mut bob = setup.node(2).client("bob").await;
    for client in [&mut moderator, &mut eve, &mut eve_phone, &mut bob] {
        client.join(room).await;
    }

    assert_eq!(bob.error("room.kick", json!({"room": room, "user_id": "eve"})).await, "forbidden");
    moderator.ack("room.kick", json!({"room": room, "user_id": "eve"})).await;
    for client in [&mut eve, &mut eve_phone] {
        let kick = client.recv_type("admin.kick").await["data"].clone();
        assert_eq!((kick["room"].as_str(), kick["by"].as_str()), (Some(room), Some("mod")));
    }
    let left = bob
        .recv_where("member.left of eve", RECV_TIMEOUT, |f| f["type"] == "member.left" && f["data"]["user_id"] == "eve")
        .await;
    assert_eq!(left["data"]["room"], room);
    assert_eq!(eve.error("chat.send", json!({"room": room, "text": "still here?"})).await, "forbidden");
    // A kick is not a ban.
    eve.join(room).await;

    let ban = moderator.ack("room.ban", json!({"room": room, "user_id": "eve", "seconds": 1})).await;
    assert_ts(ban["until"].as_str().unwrap());
    let banned = eve.recv_type("admin.ban").await["data"].clone();
    assert_eq!((banned["room"].as_str(), banned["by"].as_str()), (Some(room), Some("mod")));
    assert_ts(banned["until"].as_str().unwrap());
    assert_eq!(eve_phone.error("room.join", json!({"room": room})).await, "forbidden");
    // The ban ends by itself.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    eve_phone.join(room).await;

    // Bad inputs.
    assert_eq!(moderator.error("room.kick", json!({"room": room, "user_id": "nobody"})).await, "not_found");
    assert_eq!(
        moderator.error("room.ban", json!({"room": room, "user_id": "eve", "seconds": 0})).await,
        "invalid_message"
    );
    assert_eq!(moderator.error("room.ban", json!({"room": room})).await, "invalid_message");
    // A ban of someone not in the room holds when they come.
    moderator.ack("room.ban", json!({"room": room, "user_id": "mallory"})).await;
    let mut mallory = setup.node(1).client("mallory").await;
    assert_eq!(mallory.error("room.join", json!({"room": room})).await, "forbidden");
    moderator.ping().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_kicks_and_bans_on_one_node() {
    kicks_and_bans(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_kicks_and_bans_across_nodes() {
    kicks_and_bans(true).await;
}
