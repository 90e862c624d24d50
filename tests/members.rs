//! `room.members` reports each member's real presence status (PROTOCOL.md §4, §6): the one
//! its user set with `presence.set`, kept by the owner of the user's personal room, on one
//! node and on three.

mod common;

use common::cluster::Setup;
use serde_json::{json, Value};

async fn members_show_presence(setup: &Setup) {
    let room = "team";
    let mut alice = setup.node(0).client("alice").await;
    let mut bob = setup.node(1).client("bob").await;
    let mut bob_phone = setup.node(2).client("bob").await;
    let mut carol = setup.node(2).client("auth0|carol").await;
    for client in [&mut alice, &mut bob, &mut bob_phone, &mut carol] {
        client.join(room).await;
    }
    bob.ack("presence.set", json!({"status": "busy"})).await;
    carol.ack("presence.set", json!({"status": "away", "message": "lunch"})).await;
    let ack = alice.ack("room.members", json!({"room": room})).await;
    assert_eq!(ack["room"], room);
    let members: Vec<(String, String, u64)> = ack["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member: &Value| {
            assert!(member["name"].is_string(), "{member}");
            (
                member["user_id"].as_str().unwrap().to_string(),
                member["status"].as_str().unwrap().to_string(),
                member["connections"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected = [("alice", "online", 1), ("auth0|carol", "away", 1), ("bob", "busy", 2)];
    let expected: Vec<(String, String, u64)> =
        expected.iter().map(|(user, status, conns)| (user.to_string(), status.to_string(), *conns)).collect();
    assert_eq!(members, expected);
    // Back online.
    bob.ack("presence.set", json!({"status": "online"})).await;
    let ack = carol.ack("room.members", json!({"room": room})).await;
    let bob_status =
        ack["members"].as_array().unwrap().iter().find(|m| m["user_id"] == "bob").unwrap()["status"].clone();
    assert_eq!(bob_status, "online");
    // Only members ask.
    let mut dave = setup.node(1).client("dave").await;
    assert_eq!(dave.error("room.members", json!({"room": room})).await, "forbidden");
    dave.ping().await;
}

#[tokio::test]
async fn test_members_presence_one_node() {
    members_show_presence(&Setup::new(false, &[]).await).await;
}

#[tokio::test]
async fn test_members_presence_three_nodes() {
    members_show_presence(&Setup::new(true, &[]).await).await;
}
