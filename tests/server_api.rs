//! The server API (PROTOCOL.md §11, wave 2) on one node and on three: a backend's publish
//! goes through the room's owner (seen live, stored in history, recovered with `since`,
//! once per `client_id`), a message to one connection, server-side subscriptions of a
//! user's connections (existing and new ones), the room's history, and bad input.

mod common;

use std::time::Duration;

use common::admin::{admin, call, conn_id, refused, room_owned_by, setup, ADMIN_KEY};
use common::cluster::Setup;
use common::*;
use serde_json::json;

const QUIET: Duration = Duration::from_millis(300);

/// No `chat.message` of `room` reached `client`: a publish acknowledged before this call is
/// in the connection's queue before the pong of a ping sent now.
async fn assert_no_message(client: &mut Client, room: &str) {
    client.ping().await;
    let frames = client.take_pending();
    let message = frames.iter().find(|frame| frame["type"] == "chat.message" && frame["data"]["room"] == room);
    assert!(message.is_none(), "unexpected message: {message:?}");
}

async fn publish_is_a_room_message(setup: &Setup) {
    // Owned by the node the request does not reach, in a cluster.
    let room = room_owned_by(setup, 1, "news");
    let mut alice = setup.node(0).client("alice").await;
    let joined = alice.join(&room).await;
    let epoch = joined["epoch"].as_str().unwrap().to_string();
    let mut bob = setup.node(1).client("bob").await;
    bob.join(&room).await;
    let asked = setup.node(2);
    let path = format!("/v1/rooms/{room}/publish");
    let body = json!({"text": "deploy done", "client_id": "k-1", "from": "ci"});
    let ack = admin(asked, "POST", &path, Some(body.clone())).await;
    assert_eq!(ack["seq"], 1, "{ack}");
    assert_eq!(ack["room"], room.as_str());
    assert_eq!(ack["epoch"], epoch.as_str());
    let id = ack["id"].as_str().unwrap().to_string();
    // Live, to every member, from the service.
    for client in [&mut alice, &mut bob] {
        let message = client.recv_message(&room).await;
        assert_eq!(message["text"], "deploy done");
        assert_eq!(message["id"], id.as_str());
        assert_eq!(message["seq"], 1);
        assert_eq!(message["from"]["user_id"], "service:ci");
    }
    // The same client_id again: the first answer, nothing stored or sent twice.
    let again = admin(asked, "POST", &path, Some(body)).await;
    assert_eq!((again["id"].clone(), again["seq"].clone()), (json!(id), json!(1)));
    assert_no_message(&mut alice, &room).await;
    // A client's message comes after it.
    assert_eq!(bob.say(&room, "thanks").await["seq"], 2);
    // In history, through the API and for a member.
    let history = admin(setup.node(0), "GET", &format!("/v1/rooms/{room}/history"), None).await;
    let texts: Vec<&str> =
        history["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["deploy done", "thanks"]);
    let older = admin(setup.node(1), "GET", &format!("/v1/rooms/{room}/history?before_seq=2&limit=5"), None).await;
    assert_eq!(older["messages"].as_array().unwrap().len(), 1);
    assert_eq!(alice.ack("room.history", json!({"room": room})).await["messages"][0]["from"]["user_id"], "service:ci");
    // Recovered by a client that comes back with `since`.
    let mut carol = setup.node(2).client("carol").await;
    let (replayed, ack) = carol.join_since(&room, 0, &epoch).await;
    assert_eq!(ack["recovered"], true);
    assert_eq!(replayed[0]["data"]["text"], "deploy done");
    assert_eq!(replayed[0]["data"]["recovered"], true);

    // A room nobody is in takes the message too, and keeps it for who comes.
    let empty = room_owned_by(setup, 0, "quiet");
    let ack = admin(setup.node(1), "POST", &format!("/v1/rooms/{empty}/publish"), Some(json!({"text": "first"}))).await;
    assert_eq!(ack["seq"], 1);
    let history = format!("/v1/rooms/{empty}/history");
    let mut dan = setup.node(0).client("dan").await;
    if over_redis() {
        // Persisted: kept for who comes.
        let history = admin(setup.node(2), "GET", &history, None).await;
        assert_eq!(history["messages"][0]["from"]["user_id"], "service:backend");
        assert_eq!(dan.join(&empty).await["seq"], 1);
    } else {
        // In memory an empty room is forgotten, as when its last member leaves.
        assert_eq!(refused(setup.node(2), "GET", &history, Some(ADMIN_KEY), None, 404).await, "not_found");
        assert_eq!(dan.join(&empty).await["seq"], 0);
    }
}

#[tokio::test]
async fn test_publish_one_node() {
    publish_is_a_room_message(&setup(false).await).await;
}

#[tokio::test]
async fn test_publish_three_nodes() {
    publish_is_a_room_message(&setup(true).await).await;
}

async fn one_connection_and_subscriptions(setup: &Setup) {
    // A message to one connection only.
    let mut first = setup.node(0).client("erin-too").await;
    let mut second = setup.node(1).client("erin").await;
    let path = format!("/v1/connections/{}/messages", conn_id(&second));
    let sent =
        admin(setup.node(2), "POST", &path, Some(json!({"type": "system.notice", "data": {"text": "hi"}}))).await;
    assert_eq!(sent["delivered"], 1);
    let notice = second.recv_type("system.notice").await;
    assert_eq!(notice["data"]["text"], "hi");
    assert_ts(notice["ts"].as_str().unwrap());
    first.expect_no_frame(QUIET).await;

    // A server-side subscription: every connection of the user joins, now and later.
    let user = "auth0|erin";
    let mut old = setup.node(0).client(user).await;
    let room = room_owned_by(setup, 2, "alerts");
    let path = format!("/v1/users/auth0%7Cerin/rooms/{room}");
    let subscribed = admin(setup.node(1), "POST", &path, None).await;
    assert_eq!(subscribed["connections"], 1, "{subscribed}");
    assert_eq!(subscribed["user_id"], user);
    let update = old.recv_type("room.update").await;
    assert_eq!(update["data"], json!({"room": room, "status": "joined", "reason": "server"}));
    let mut new = setup.node(2).client(user).await;
    let update = new.recv_type("room.update").await;
    assert_eq!(update["data"]["room"], room.as_str());
    // Joined for real: both get the room's messages, and may send to it.
    new.ping().await;
    let publish = format!("/v1/rooms/{room}/publish");
    admin(setup.node(0), "POST", &publish, Some(json!({"text": "alert 1"}))).await;
    assert_eq!(old.recv_message(&room).await["text"], "alert 1");
    assert_eq!(new.recv_message(&room).await["text"], "alert 1");
    assert_eq!(new.say(&room, "ack'd").await["seq"], 2);
    assert_eq!(old.recv_message(&room).await["text"], "ack'd");
    // Another user with the escaped look of this one is not subscribed.
    let mut lookalike = setup.node(1).client("auth0%7Cerin").await;
    lookalike.expect_no_frame(QUIET).await;

    // Ended: every connection leaves, and new ones do not join.
    let ended = admin(setup.node(2), "DELETE", &path, None).await;
    assert_eq!(ended["connections"], 2);
    for client in [&mut old, &mut new] {
        let update = client.recv_type("room.update").await;
        assert_eq!(update["data"], json!({"room": room, "status": "left", "reason": "server"}));
    }
    admin(setup.node(0), "POST", &publish, Some(json!({"text": "alert 2"}))).await;
    let mut later = setup.node(1).client(user).await;
    for client in [&mut old, &mut new, &mut later] {
        assert_no_message(client, &room).await;
    }
    // A user with no connection yet is subscribed for when it comes.
    let path = format!("/v1/users/frank/rooms/{room}");
    assert_eq!(admin(setup.node(0), "POST", &path, None).await["connections"], 0);
    let mut frank = setup.node(2).client("frank").await;
    assert_eq!(frank.recv_type("room.update").await["data"]["status"], "joined");
}

#[tokio::test]
async fn test_connections_and_subscriptions_one_node() {
    one_connection_and_subscriptions(&setup(false).await).await;
}

#[tokio::test]
async fn test_connections_and_subscriptions_three_nodes() {
    one_connection_and_subscriptions(&setup(true).await).await;
}

async fn bad_input(setup: &Setup) {
    let node = setup.node(1);
    let key = Some(ADMIN_KEY);
    let bad = |body: &'static str| Some(body);
    let field = |response: &HttpResponse| response.json()["error"]["message"].as_str().unwrap_or_default().to_string();
    for (body, word) in [
        ("{}", "data.text"),
        (r#"{"text": 5}"#, "data.text"),
        (r#"{"text": "x", "client_id": 7}"#, "client_id"),
        (r#"{"text": "x", "from": "bad from"}"#, "from"),
        (r#"{"text": "x", "attachments": "no"}"#, "attachments"),
        ("[1]", "json object"),
        ("not json", "json"),
    ] {
        let response = call(node, "POST", "/v1/rooms/lobby/publish", key, bad(body)).await;
        assert_eq!(response.status, 400, "{body}: {}", response.body);
        assert!(field(&response).contains(word), "{body}: {}", response.body);
    }
    for (method, path) in [
        ("POST", "/v1/rooms/bad%20room/publish"),
        ("POST", "/v1/rooms/user:alice/publish"),
        ("GET", "/v1/rooms/lobby/history?limit=x"),
        ("GET", "/v1/rooms/lobby/history?before_seq=-1"),
        ("POST", "/v1/users/alice/rooms/bad%20room"),
        ("POST", "/v1/users/alice/rooms/user:alice"),
        ("DELETE", "/v1/users/a%01b/rooms/lobby"),
        ("POST", "/v1/connections/nodash/messages"),
    ] {
        let body = (method == "POST").then_some(r#"{"text":"x","type":"x"}"#);
        assert_eq!(refused(node, method, path, key, body, 400).await, "bad_request", "{method} {path}");
    }
    let body = Some(r#"{"type":"system.notice"}"#);
    if over_redis() {
        // Persisted, every room has a history, empty until its first message.
        assert_eq!(admin(node, "GET", "/v1/rooms/never-used/history", None).await["messages"], json!([]));
    } else {
        assert_eq!(refused(node, "GET", "/v1/rooms/never-used/history", key, None, 404).await, "not_found");
    }
    let unknown = format!("/v1/connections/{}-999999/messages", common::admin::node_id(setup, 0));
    assert_eq!(refused(node, "POST", &unknown, key, body, 404).await, "not_found");
    assert_eq!(
        refused(node, "POST", "/v1/rooms/lobby/publish", None, bad(r#"{"text":"x"}"#), 401).await,
        "unauthorized"
    );
    // Nothing was disturbed.
    let mut client = node.client("grace").await;
    client.join("lobby").await;
    client.ping().await;
}

#[tokio::test]
async fn test_bad_input_one_node() {
    bad_input(&setup(false).await).await;
}

#[tokio::test]
async fn test_bad_input_three_nodes() {
    bad_input(&setup(true).await).await;
}

/// With Redis, a subscription outlives a restart of every node: the user's next connection
/// after it joins the room. Its meta-data messages come back too.
#[tokio::test]
async fn test_subscriptions_survive_a_restart_with_redis() {
    let redis = common::redis::RedisServer::start();
    let url = redis.url();
    let flags = ["--redis-url", url.as_str(), "--admin-key", ADMIN_KEY];
    let server = Server::start_with(&flags);
    admin(&server, "POST", "/v1/users/zed/rooms/briefing", None).await;
    admin(&server, "POST", "/v1/users/yan/rooms/briefing", None).await;
    admin(&server, "DELETE", "/v1/users/yan/rooms/briefing", None).await;
    // Acknowledged once written: the store's one writer wrote the subscriptions before it.
    admin(&server, "POST", "/v1/rooms/briefing/publish", Some(json!({"text": "kept", "meta": {"k": 1}}))).await;
    drop(server);
    let server = Server::start_with(&flags);
    let mut zed = server.client("zed").await;
    let update = zed.recv_type("room.update").await;
    assert_eq!(update["data"], json!({"room": "briefing", "status": "joined", "reason": "server"}));
    let history = zed.ack("room.history", json!({"room": "briefing"})).await;
    assert_eq!(
        (history["messages"][0]["text"].clone(), history["messages"][0]["meta"].clone()),
        (json!("kept"), json!({"k": 1}))
    );
    // The one that ended stays ended.
    let mut yan = server.client("yan").await;
    yan.ping().await;
    assert!(yan.take_pending().iter().all(|frame| frame["type"] != "room.update"));
}
