//! Presence (PROTOCOL.md §6): online while connected, offline after a grace (shortened here
//! by flag, not slept through at its default), manual status, subscriptions, queries and device
//! events — on one node and across a 3-node cluster (a user's presence lives with the owner
//! of its personal room).

mod common;

use std::time::Duration;

use common::cluster::Setup;
use common::*;
use serde_json::{json, Value};

async fn update_of(client: &mut Client, user: &str, timeout: Duration) -> Value {
    let user = user.to_string();
    client
        .recv_where(&format!("presence.update of {user}"), timeout, move |f| {
            f["type"] == "presence.update" && f["data"]["user_id"] == user
        })
        .await["data"]
        .clone()
}

async fn online_offline_devices(clustered: bool) {
    let setup = Setup::new(clustered, &["--presence-grace-ms", "600"]).await;
    let mut watcher = setup.node(0).client("watcher").await;
    let ack = watcher.ack("presence.subscribe", json!({"users": ["alice"]})).await;
    assert_eq!(ack["users"], json!(["alice"]));
    let now = update_of(&mut watcher, "alice", RECV_TIMEOUT).await;
    assert_eq!((now["status"].as_str(), now["devices"].as_u64()), (Some("offline"), Some(0)));

    let mut laptop = setup.node(1).client("alice").await;
    let online = update_of(&mut watcher, "alice", RECV_TIMEOUT).await;
    assert_eq!((online["status"].as_str(), online["devices"].as_u64()), (Some("online"), Some(1)));
    let phone = setup.node(2).client("alice").await;
    let device = laptop.recv_type("device.online").await["data"].clone();
    assert_eq!(device["user_id"], "alice");
    assert_eq!(device["conn_id"], phone.connected["conn_id"]);
    assert_eq!(update_of(&mut watcher, "alice", RECV_TIMEOUT).await["devices"], 2);
    let phone_conn = phone.connected["conn_id"].clone();
    drop(phone);
    let gone = laptop.recv_type("device.offline").await["data"].clone();
    assert_eq!(gone["conn_id"], phone_conn);
    assert_eq!(update_of(&mut watcher, "alice", RECV_TIMEOUT).await["devices"], 1);

    drop(laptop);
}

/// A reconnect within the grace must not produce an offline update; a longer absence must.
async fn grace_both_ways(clustered: bool) {
    let setup = Setup::new(clustered, &["--presence-grace-ms", "600"]).await;
    let mut watcher = setup.node(0).client("watcher").await;
    watcher.ack("presence.subscribe", json!({"users": ["carol"]})).await;
    update_of(&mut watcher, "carol", RECV_TIMEOUT).await;
    let carol = setup.node(1).client("carol").await;
    assert_eq!(update_of(&mut watcher, "carol", RECV_TIMEOUT).await["status"], "online");
    drop(carol);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let carol = setup.node(2).client("carol").await;
    // Within the grace: no offline in the next second.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let seen: Vec<Value> = watcher.take_pending();
    let mut offline = seen.iter().any(|f| f["type"] == "presence.update" && f["data"]["status"] == "offline");
    while let Event::Json(frame) = watcher.next_event(Duration::from_millis(50)).await {
        offline |= frame["type"] == "presence.update" && frame["data"]["status"] == "offline";
    }
    assert!(!offline, "a reconnect within the grace flapped to offline");
    // Gone for longer than the grace: offline.
    drop(carol);
    let update = update_of(&mut watcher, "carol", Duration::from_secs(3)).await;
    assert_eq!((update["status"].as_str(), update["devices"].as_u64()), (Some("offline"), Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_devices_and_online_on_one_node() {
    online_offline_devices(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_devices_and_online_across_nodes() {
    online_offline_devices(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_presence_grace_on_one_node() {
    grace_both_ways(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_presence_grace_across_nodes() {
    grace_both_ways(true).await;
}

async fn status_and_queries(clustered: bool) {
    let setup = Setup::new(clustered, &[]).await;
    let mut alice = setup.node(1).client("alice").await;
    let mut watcher = setup.node(0).client("watcher").await;
    watcher.ack("presence.subscribe", json!({"users": ["alice", "bob"]})).await;
    update_of(&mut watcher, "alice", RECV_TIMEOUT).await;
    update_of(&mut watcher, "bob", RECV_TIMEOUT).await;

    let set = alice.ack("presence.set", json!({"status": "away", "message": "lunch"})).await;
    assert_eq!(set["status"], "away");
    let update = update_of(&mut watcher, "alice", RECV_TIMEOUT).await;
    assert_eq!(
        (update["status"].as_str(), update["message"].as_str(), update["devices"].as_u64()),
        (Some("away"), Some("lunch"), Some(1))
    );
    assert_ts(update["ts"].as_str().unwrap());

    let users = watcher.ack("presence.query", json!({"users": ["alice", "bob", "watcher"]})).await["users"].clone();
    let summary: Vec<(String, String)> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["user_id"].as_str().unwrap().to_string(), u["status"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        summary,
        [("alice".into(), "away".into()), ("bob".into(), "offline".into()), ("watcher".into(), "online".into())]
    );
    assert_eq!(users[0]["message"], "lunch");

    // Back to online clears the manual status.
    alice.ack("presence.set", json!({"status": "online"})).await;
    assert_eq!(update_of(&mut watcher, "alice", RECV_TIMEOUT).await["status"], "online");
    // Unsubscribed: no more updates.
    watcher.ack("presence.unsubscribe", json!({"users": ["alice"]})).await;
    // The ack comes from the watcher's node; a query answered by alice's owner after it
    // (same path, in order) proves the owner has applied the unsubscription.
    watcher.ack("presence.query", json!({"users": ["alice"]})).await;
    alice.ack("presence.set", json!({"status": "busy"})).await;
    watcher.expect_no_frame(QUIET).await;

    // Bad inputs.
    assert_eq!(alice.error("presence.set", json!({"status": "invisible"})).await, "invalid_message");
    assert_eq!(
        alice.error("presence.set", json!({"status": "away", "message": "x".repeat(300)})).await,
        "invalid_message"
    );
    assert_eq!(watcher.error("presence.query", json!({"users": []})).await, "invalid_message");
    let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    assert_eq!(watcher.error("presence.query", json!({"users": many})).await, "invalid_message");
    assert_eq!(watcher.error("presence.subscribe", json!({"users": ["bad\u{7}id"]})).await, "invalid_message");
    watcher.ping().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_status_and_queries_on_one_node() {
    status_and_queries(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_status_and_queries_across_nodes() {
    status_and_queries(true).await;
}
