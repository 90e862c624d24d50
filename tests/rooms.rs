//! PROTOCOL.md §4: join, leave, members, member events, prefixes, recovery with `since`,
//! and tenant isolation.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn test_join_ack_and_member_joined() {
    let server = Server::start();
    let mut alice = server.client_with(&Token::new("alice").name("Alice").sign()).await;
    let mut bob = server.client_with(&Token::new("bob").name("Bob").sign()).await;

    let ack = alice.join("lobby").await;
    assert_eq!(ack["seq"], 0, "a new room starts at seq 0: {ack}");
    assert!(ack["epoch"].as_str().is_some_and(|e| !e.is_empty()), "epoch is a non-empty string: {ack}");

    let ack_bob = bob.join("lobby").await;
    assert_eq!(ack_bob["epoch"], ack["epoch"], "same room, same epoch");
    let joined = alice.recv_type("member.joined").await;
    assert_eq!(joined["data"], json!({"room": "lobby", "user_id": "bob", "name": "Bob"}));
    assert_ts(joined["ts"].as_str().expect("member.joined has ts"));
    // The joiner does not hear about itself.
    bob.expect_no_frame(QUIET).await;
    alice.expect_no_frame(QUIET).await;
}

#[tokio::test]
async fn test_join_is_idempotent() {
    let server = Server::start();
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("lobby").await;
    let first = bob.join("lobby").await;
    alice.recv_type("member.joined").await;
    let second = bob.join("lobby").await;
    assert_eq!(first, second, "a second join is answered like the first");
    alice.expect_no_frame(QUIET).await;
    let members = bob.ack("room.members", json!({"room": "lobby"})).await;
    let bob_entry = members["members"].as_array().unwrap().iter().find(|m| m["user_id"] == "bob").cloned().unwrap();
    assert_eq!(bob_entry["connections"], 1, "joining twice does not count the connection twice: {members}");
    // One leave is enough to be out.
    bob.leave("lobby").await;
    assert_eq!(alice.recv_type("member.left").await["data"]["user_id"], "bob");
    assert_eq!(bob.error("chat.send", json!({"room": "lobby", "text": "x"})).await, "forbidden");
}

#[tokio::test]
async fn test_leave_and_member_left() {
    let server = Server::start();
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("lobby").await;
    bob.join("lobby").await;
    alice.recv_type("member.joined").await;

    let ack = bob.leave("lobby").await;
    assert_eq!(ack, json!({"room": "lobby", "status": "left"}));
    let left = alice.recv_type("member.left").await;
    assert_eq!(left["data"], json!({"room": "lobby", "user_id": "bob"}));
    assert_ts(left["ts"].as_str().expect("member.left has ts"));

    // bob hears nothing more from the room and may not post in it.
    alice.say("lobby", "after bob left").await;
    bob.expect_no_frame(QUIET).await;
    assert_eq!(bob.error("chat.send", json!({"room": "lobby", "text": "x"})).await, "forbidden");
    assert_eq!(bob.error("room.members", json!({"room": "lobby"})).await, "forbidden");
}

#[tokio::test]
async fn test_leaving_a_room_not_joined_is_acked() {
    let server = Server::start();
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    assert_eq!(alice.leave("nowhere").await, json!({"room": "nowhere", "status": "left"}));
    // A room others are in, but this connection is not.
    bob.join("lobby").await;
    alice.leave("lobby").await;
    bob.expect_no_frame(QUIET).await;
    // Leaving twice.
    alice.join("lobby").await;
    bob.recv_type("member.joined").await;
    alice.leave("lobby").await;
    bob.recv_type("member.left").await;
    alice.leave("lobby").await;
    bob.expect_no_frame(QUIET).await;
}

#[tokio::test]
async fn test_disconnect_sends_member_left() {
    let server = Server::start();
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("lobby").await;
    bob.join("lobby").await;
    alice.recv_type("member.joined").await;
    drop(bob);
    let left = alice.recv_type("member.left").await;
    assert_eq!(left["data"], json!({"room": "lobby", "user_id": "bob"}));
}

#[tokio::test]
async fn test_members() {
    let server = Server::start();
    let mut alice = server.client_with(&Token::new("alice").name("Alice").sign()).await;
    let mut bob1 = server.client_with(&Token::new("bob").name("Bob").sign()).await;
    let mut bob2 = server.client_with(&Token::new("bob").name("Bob").sign()).await;
    let mut carol = server.client("carol").await;
    alice.join("lobby").await;
    bob1.join("lobby").await;
    bob2.join("lobby").await;

    let ack = alice.ack("room.members", json!({"room": "lobby"})).await;
    assert_eq!(ack["room"], "lobby");
    let mut members: Vec<Value> = ack["members"].as_array().expect("members array").clone();
    members.sort_by_key(|m| m["user_id"].as_str().unwrap().to_string());
    assert_eq!(
        members,
        vec![
            json!({"user_id": "alice", "name": "Alice", "status": "online", "connections": 1}),
            json!({"user_id": "bob", "name": "Bob", "status": "online", "connections": 2}),
        ]
    );
    // Only members may list a room.
    assert_eq!(carol.error("room.members", json!({"room": "lobby"})).await, "forbidden");
    assert_eq!(carol.error("room.members", json!({"room": "empty-room"})).await, "forbidden");
    carol.ping().await;
}

#[tokio::test]
async fn test_two_devices_of_one_user() {
    let server = Server::start();
    let mut phone = server.client_with(&Token::new("alice").name("Alice").sign()).await;
    let mut laptop = server.client_with(&Token::new("alice").name("Alice").sign()).await;
    // The phone hears of the laptop (PROTOCOL.md §6 device.online).
    assert_eq!(phone.recv_type("device.online").await["data"]["conn_id"], laptop.connected["conn_id"]);
    let mut bob = server.client("bob").await;
    bob.join("lobby").await;

    // member.joined only for the user's first connection.
    phone.join("lobby").await;
    let joined = bob.recv_type("member.joined").await;
    assert_eq!(joined["data"]["user_id"], "alice");
    laptop.join("lobby").await;
    bob.expect_no_frame(QUIET).await;

    // The sender's connection gets only the ack; its other connection gets the message.
    let ack = phone.say("lobby", "from my phone").await;
    let on_laptop = laptop.recv_message("lobby").await;
    assert_eq!(on_laptop["text"], "from my phone");
    assert_eq!(on_laptop["id"], ack["id"]);
    assert_eq!(on_laptop["from"]["user_id"], "alice");
    let on_bob = bob.recv_message("lobby").await;
    assert_eq!(on_bob["id"], ack["id"]);
    phone.expect_no_frame(QUIET).await;

    // member.left only when the last connection leaves (by leave or by disconnect).
    phone.leave("lobby").await;
    bob.expect_no_frame(QUIET).await;
    let members = bob.ack("room.members", json!({"room": "lobby"})).await;
    let alice_entry = members["members"].as_array().unwrap().iter().find(|m| m["user_id"] == "alice").cloned();
    assert_eq!(alice_entry.expect("alice still a member")["connections"], 1);
    drop(laptop);
    let left = bob.recv_type("member.left").await;
    assert_eq!(left["data"], json!({"room": "lobby", "user_id": "alice"}));
}

#[tokio::test]
async fn test_two_devices_disconnect_order() {
    let server = Server::start();
    let mut phone = server.client("alice").await;
    let mut laptop = server.client("alice").await;
    let mut bob = server.client("bob").await;
    bob.join("lobby").await;
    phone.join("lobby").await;
    laptop.join("lobby").await;
    bob.recv_type("member.joined").await;
    drop(phone);
    bob.expect_no_frame(QUIET).await;
    laptop.leave("lobby").await;
    assert_eq!(bob.recv_type("member.left").await["data"]["user_id"], "alice");
    bob.expect_no_frame(QUIET).await;
}

#[tokio::test]
async fn test_user_rooms() {
    let server = Server::start();
    let mut phone = server.client("alice").await;
    let mut laptop = server.client("alice").await;
    let mut bob = server.client("bob").await;

    assert_eq!(bob.error("room.join", json!({"room": "user:alice"})).await, "forbidden");
    assert_eq!(bob.error("chat.send", json!({"room": "user:alice", "text": "hi"})).await, "forbidden");
    assert_eq!(bob.error("room.members", json!({"room": "user:alice"})).await, "forbidden");

    // Every connection is in its own user room already: a message there reaches the user's
    // other connections.
    phone.say("user:alice", "note to self").await;
    assert_eq!(laptop.recv_message("user:alice").await["text"], "note to self");
    bob.expect_no_frame(QUIET).await;
    let members = phone.ack("room.members", json!({"room": "user:alice"})).await;
    assert_eq!(
        members["members"],
        json!([{"user_id": "alice", "name": "alice", "status": "online", "connections": 2}])
    );
    // Joining one's own user room is allowed (already in it).
    phone.join("user:alice").await;
}

#[tokio::test]
async fn test_group_rooms() {
    let server = Server::start();
    let mut alice = server.client_with(&Token::new("alice").groups(&["eng", "ops"]).sign()).await;
    let mut bob = server.client_with(&Token::new("bob").groups(&["eng"]).sign()).await;
    let mut carol = server.client("carol").await;

    // Automatically joined, without acks or room.update.
    alice.say("group:eng", "standup").await;
    assert_eq!(bob.recv_message("group:eng").await["text"], "standup");
    alice.say("group:ops", "pager").await;
    bob.expect_no_frame(QUIET).await;
    carol.expect_no_frame(QUIET).await;

    assert_eq!(carol.error("room.join", json!({"room": "group:eng"})).await, "forbidden");
    assert_eq!(carol.error("chat.send", json!({"room": "group:eng", "text": "let me in"})).await, "forbidden");
    assert_eq!(bob.error("room.join", json!({"room": "group:ops"})).await, "forbidden");
    // A member may join explicitly (already in).
    bob.join("group:eng").await;
    let members = bob.ack("room.members", json!({"room": "group:eng"})).await;
    assert_eq!(members["members"].as_array().unwrap().len(), 2, "{members}");
}

#[tokio::test]
async fn test_private_rooms_need_moderator_or_admin() {
    let server = Server::start();
    let mut user = server.client("alice").await;
    let mut moderator = server.client_with(&Token::new("mod").roles(&["moderator"]).sign()).await;
    let mut admin = server.client_with(&Token::new("root").roles(&["admin"]).sign()).await;
    let mut other_role = server.client_with(&Token::new("eve").roles(&["editor"]).sign()).await;

    assert_eq!(user.error("room.join", json!({"room": "private:staff"})).await, "forbidden");
    assert_eq!(other_role.error("room.join", json!({"room": "private:staff"})).await, "forbidden");
    moderator.join("private:staff").await;
    admin.join("private:staff").await;
    moderator.recv_type("member.joined").await;
    assert_eq!(user.error("chat.send", json!({"room": "private:staff", "text": "hi"})).await, "forbidden");
    admin.say("private:staff", "staff only").await;
    assert_eq!(moderator.recv_message("private:staff").await["text"], "staff only");
    user.expect_no_frame(QUIET).await;
}

#[tokio::test]
async fn test_tenant_isolation() {
    let server = Server::start();
    let mut alice_a = server.client_with(&Token::new("alice").tenant("acme").sign()).await;
    let mut bob_a = server.client_with(&Token::new("bob").tenant("acme").sign()).await;
    let mut alice_g = server.client_with(&Token::new("alice").tenant("globex").sign()).await;
    let mut carol_g = server.client_with(&Token::new("carol").tenant("globex").sign()).await;
    assert_eq!(alice_g.connected["tenant"], "globex");

    alice_a.join("lobby").await;
    carol_g.join("lobby").await;
    // Different tenants: nobody hears the other's join.
    alice_a.expect_no_frame(QUIET).await;
    bob_a.join("lobby").await;
    alice_a.recv_type("member.joined").await;
    carol_g.expect_no_frame(QUIET).await;

    alice_a.say("lobby", "acme only").await;
    assert_eq!(bob_a.recv_message("lobby").await["text"], "acme only");
    let ack = carol_g.say("lobby", "globex only").await;
    assert_eq!(ack["seq"], 1, "globex/lobby has its own seq: {ack}");
    carol_g.expect_no_frame(QUIET).await;
    alice_a.expect_no_frame(QUIET).await;
    bob_a.expect_no_frame(QUIET).await;
    alice_g.expect_no_frame(QUIET).await;

    let members = carol_g.ack("room.members", json!({"room": "lobby"})).await;
    assert_eq!(members["members"].as_array().unwrap().len(), 1, "only globex members: {members}");
    assert_eq!(members["members"][0]["user_id"], "carol");

    // The same user id in two tenants is two users: user rooms do not cross.
    alice_a.say("user:alice", "acme self note").await;
    alice_g.expect_no_frame(QUIET).await;
    // A globex member leaving is not seen in acme.
    carol_g.leave("lobby").await;
    alice_a.expect_no_frame(QUIET).await;
    bob_a.expect_no_frame(QUIET).await;
}

#[tokio::test]
async fn test_group_rooms_do_not_cross_tenants() {
    let server = Server::start();
    let mut acme = server.client_with(&Token::new("alice").tenant("acme").groups(&["eng"]).sign()).await;
    let mut globex = server.client_with(&Token::new("bob").tenant("globex").groups(&["eng"]).sign()).await;
    acme.say("group:eng", "acme eng").await;
    globex.expect_no_frame(QUIET).await;
    let members = globex.ack("room.members", json!({"room": "group:eng"})).await;
    assert_eq!(members["members"], json!([{"user_id": "bob", "name": "bob", "status": "online", "connections": 1}]));
}

#[tokio::test]
async fn test_join_since_recovers_missed_messages() {
    let server = Server::start();
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("news").await;
    let first = bob.join("news").await;
    let epoch = first["epoch"].as_str().unwrap().to_string();
    alice.recv_type("member.joined").await;
    for n in 1..=3 {
        alice.say("news", &format!("m{n}")).await;
        assert_eq!(bob.recv_message("news").await["seq"], n);
    }
    bob.leave("news").await;
    alice.recv_type("member.left").await;
    let missed: Vec<Value> = vec![alice.say("news", "m4").await, alice.say("news", "m5").await];

    let (replayed, ack) = bob.join_since("news", 3, &epoch).await;
    assert_eq!(ack["recovered"], true, "{ack}");
    assert_eq!(ack["seq"], 5);
    assert_eq!(ack["epoch"], epoch.as_str());
    let replayed: Vec<&Value> = replayed.iter().filter(|f| f["type"] == "chat.message").collect();
    assert_eq!(replayed.len(), 2, "messages after seq 3 come before the ack: {replayed:?}");
    for (frame, sent) in replayed.iter().zip(&missed) {
        assert_eq!(frame["data"]["recovered"], true, "{frame}");
        assert_eq!(frame["data"]["id"], sent["id"]);
        assert_eq!(frame["data"]["seq"], sent["seq"]);
    }
    assert_eq!(replayed[0]["data"]["text"], "m4");
    assert_eq!(replayed[1]["data"]["text"], "m5");

    // Live messages after the recovery are not marked recovered.
    alice.say("news", "m6").await;
    let live = bob.recv_message("news").await;
    assert_eq!(live["seq"], 6);
    assert!(live.get("recovered").is_none() || live["recovered"] == false, "{live}");
}

#[tokio::test]
async fn test_join_since_current_seq_recovers_nothing_missing() {
    let server = Server::start();
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("news").await;
    alice.say("news", "one").await;
    let join = bob.join("news").await;
    let epoch = join["epoch"].as_str().unwrap().to_string();
    bob.leave("news").await;
    let (replayed, ack) = bob.join_since("news", 1, &epoch).await;
    assert_eq!(ack["recovered"], true, "{ack}");
    assert!(replayed.iter().all(|f| f["type"] != "chat.message"), "nothing to replay: {replayed:?}");
}

#[tokio::test]
async fn test_join_since_unrecoverable() {
    let server = Server::start_with(&["--history-size", "3"]);
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("news").await;
    let epoch = bob.join("news").await["epoch"].as_str().unwrap().to_string();
    bob.leave("news").await;
    for n in 1..=6 {
        alice.say("news", &format!("m{n}")).await;
    }

    // Wrong epoch: nothing replayed, recovered false.
    let (replayed, ack) = bob.join_since("news", 2, "not-the-epoch").await;
    assert_eq!(ack["recovered"], false, "{ack}");
    assert_eq!(ack["seq"], 6);
    assert!(replayed.iter().all(|f| f["type"] != "chat.message"), "{replayed:?}");
    bob.leave("news").await;

    // A seq the room never reached.
    let (_, ack) = bob.join_since("news", 99, &epoch).await;
    assert_eq!(ack["recovered"], false, "{ack}");
    bob.leave("news").await;

    // Older than the history holds (3 messages kept: 4, 5, 6).
    let (_, ack) = bob.join_since("news", 1, &epoch).await;
    assert_eq!(ack["recovered"], false, "{ack}");
    bob.take_pending();
    bob.leave("news").await;

    // Exactly reachable: 4, 5, 6.
    let (replayed, ack) = bob.join_since("news", 3, &epoch).await;
    assert_eq!(ack["recovered"], true, "{ack}");
    let seqs: Vec<u64> =
        replayed.iter().filter(|f| f["type"] == "chat.message").map(|f| f["data"]["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![4, 5, 6]);
}

#[tokio::test]
async fn test_history_is_lost_when_the_room_empties_unless_persisted() {
    let server = Server::start();
    let mut alice = server.client("alice").await;
    let first = alice.join("ephemeral").await;
    let epoch = first["epoch"].as_str().unwrap().to_string();
    alice.say("ephemeral", "one").await;
    alice.say("ephemeral", "two").await;
    alice.leave("ephemeral").await;

    let (replayed, ack) = alice.join_since("ephemeral", 0, &epoch).await;
    let replayed: Vec<&Value> = replayed.iter().filter(|f| f["type"] == "chat.message").collect();
    if over_redis() {
        // Persisted: the empty room is forgotten by its owner, not by the store.
        assert_eq!(ack["recovered"], true, "the room came back from the store: {ack}");
        assert_eq!(ack["epoch"], epoch.as_str());
        assert_eq!(replayed.len(), 2, "{replayed:?}");
        assert_eq!(alice.say("ephemeral", "three").await["seq"], 3);
    } else {
        assert_eq!(ack["recovered"], false, "the room was forgotten: {ack}");
        assert_ne!(ack["epoch"], epoch.as_str(), "a new epoch after the history was lost");
        assert_eq!(ack["seq"], 0, "seq starts again in the new epoch");
        assert!(replayed.is_empty(), "{replayed:?}");
        assert_eq!(alice.say("ephemeral", "three").await["seq"], 1);
    }
}

#[tokio::test]
async fn test_since_is_validated() {
    let server = Server::start();
    let mut alice = server.client("alice").await;
    for since in [
        json!({"seq": "1", "epoch": "e"}),
        json!({"seq": -1, "epoch": "e"}),
        json!({"seq": 1}),
        json!({"epoch": "e"}),
        json!(5),
    ] {
        let code = alice.error("room.join", json!({"room": "lobby", "since": since})).await;
        assert_eq!(code, "invalid_message", "since {since}");
    }
    alice.ping().await;
}
