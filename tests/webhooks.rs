//! Webhooks (PROTOCOL.md §12) against a real HTTP receiver on loopback: every event type
//! arrives signed, exactly once per event on one node and on three, retries keep the event's
//! id, a 4xx is not retried, and a receiver that was down gets everything, in order per key.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use common::cluster::TestCluster;
use common::receiver::{signature_valid, Answer, Received, Receiver};
use common::*;
use serde_json::{json, Value};

/// The key bytes of [`secret_flag`].
const KEY: &[u8] = b"webhook-test-key-0123456789";

fn secret_flag() -> String {
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(KEY))
}

/// The flags of a node posting to `receiver` (signed), with `extra`.
fn webhook_args(receiver: &Receiver, extra: &[&str]) -> Vec<String> {
    let mut args =
        vec!["--webhook-url".to_string(), receiver.url("/hooks"), "--webhook-secret".to_string(), secret_flag()];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn count(received: &[Received], kind: &str) -> usize {
    received.iter().filter(|r| r.kind() == kind).count()
}

/// The events of [`scenario`], by type: how many of each it causes.
const EXPECTED: &[(&str, usize)] = &[
    ("connection.opened", 2),
    ("connection.closed", 1),
    ("room.joined", 2),
    ("room.left", 1),
    ("message.created", 1),
    ("message.edited", 1),
    ("message.deleted", 1),
    ("dm.sent", 1),
    // alice online, bob online, alice away, alice offline (after the grace)
    ("presence.changed", 4),
];

/// alice (on `a`) and bob (on `b`) meet in `room`: every event type once or more. Returns
/// the id of alice's message, and bob, still connected (his connection has no `closed` yet).
async fn scenario(a: &Server, b: &Server, room: &str) -> (String, Client) {
    let mut alice = a.client("alice").await;
    let mut bob = b.client("bob").await;
    alice.join(room).await;
    bob.join(room).await;
    let sent = alice.say(room, "hello").await;
    let id = sent["id"].as_str().unwrap().to_string();
    alice.ack("chat.edit", json!({"room": room, "id": id, "text": "hello, fixed"})).await;
    alice.ack("chat.delete", json!({"room": room, "id": id})).await;
    alice.ack("dm.send", json!({"to": "bob", "text": "psst"})).await;
    alice.ack("presence.set", json!({"status": "away"})).await;
    alice.leave(room).await;
    alice.ws.close(None).await.unwrap();
    assert_eq!(alice.expect_close().await, Some(1000));
    (id, bob)
}

/// Waits for the scenario's events, then checks each arrived exactly once, signed, with
/// the data a backend needs.
async fn check_scenario(receiver: &Receiver, room: &str, message_id: &str, owner_of_room: &str) {
    let total: usize = EXPECTED.iter().map(|(_, n)| n).sum();
    receiver
        .wait_for("every event of the scenario", Duration::from_secs(10), |received| {
            EXPECTED.iter().all(|(kind, n)| count(received, kind) >= *n)
        })
        .await;
    // A duplicate sent by a second node would come about as fast as the first.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let received = receiver.received();
    for (kind, n) in EXPECTED {
        assert_eq!(count(&received, kind), *n, "{kind}: {:#?}", received.iter().map(|r| &r.body).collect::<Vec<_>>());
    }
    assert_eq!(received.len(), total);
    let mut ids = HashMap::new();
    for r in &received {
        assert!(signature_valid(KEY, r), "bad signature on {}", r.body);
        assert_eq!(r.path, "/hooks");
        assert_eq!(r.body["id"], r.id.as_str(), "the body's id is the webhook-id header");
        assert!(r.id.starts_with("evt_"));
        assert_ts(r.body["timestamp"].as_str().unwrap());
        let now = now_secs();
        let stamped: i64 = r.timestamp.parse().unwrap();
        assert!((now - stamped).abs() < 60, "webhook-timestamp is the unix time of the attempt");
        assert_eq!(r.body["data"]["tenant"], "default");
        assert!(r.body["data"]["node"].is_string());
        assert!(ids.insert(r.id.clone(), r.kind().to_string()).is_none(), "id {} posted twice", r.id);
    }
    let one = |kind: &str| received.iter().find(|r| r.kind() == kind).unwrap().body["data"].clone();
    let created = one("message.created");
    assert_eq!(created["room"], room);
    assert_eq!(created["user"], "alice");
    assert_eq!(created["node"], owner_of_room, "a room's events come from its owner");
    assert_eq!(created["message"]["id"], message_id);
    assert_eq!(created["message"]["text"], "hello");
    assert_eq!(created["message"]["seq"], 1);
    assert_eq!(one("message.edited")["message"]["text"], "hello, fixed");
    assert_eq!(one("message.deleted")["message"]["id"], message_id);
    assert_eq!(one("message.deleted")["message"]["mode"], "soft");
    let dm = one("dm.sent");
    assert_eq!(
        (dm["user"].as_str(), dm["to"].as_str(), dm["message"]["text"].as_str()),
        (Some("alice"), Some("bob"), Some("psst"))
    );
    assert!(dm.get("room").is_none(), "a DM has no room");
    let closed = one("connection.closed");
    assert_eq!((closed["user"].as_str(), closed["code"].as_u64()), (Some("alice"), Some(1000)));
    assert!(closed["conn_id"].is_string() && closed["reason"].is_string());
    let left = one("room.left");
    assert_eq!((left["room"].as_str(), left["user"].as_str()), (Some(room), Some("alice")));
    let presence: Vec<(String, String)> = received
        .iter()
        .filter(|r| r.kind() == "presence.changed")
        .map(|r| {
            let data = &r.body["data"];
            (data["user"].as_str().unwrap().to_string(), data["presence"]["status"].as_str().unwrap().to_string())
        })
        .collect();
    for expected in [("alice", "online"), ("bob", "online"), ("alice", "away"), ("alice", "offline")] {
        assert!(presence.contains(&(expected.0.to_string(), expected.1.to_string())), "{expected:?} in {presence:?}");
    }
    // Per key in order: alice's away before her offline, her opened before her closed.
    let position = |pred: &dyn Fn(&Received) -> bool| received.iter().position(pred).unwrap();
    let away = position(&|r| r.kind() == "presence.changed" && r.body["data"]["presence"]["status"] == "away");
    let offline = position(&|r| r.kind() == "presence.changed" && r.body["data"]["presence"]["status"] == "offline");
    assert!(away < offline);
    let opened = position(&|r| r.kind() == "connection.opened" && r.body["data"]["user"] == "alice");
    assert!(opened < position(&|r| r.kind() == "connection.closed"));
}

#[tokio::test]
async fn every_event_type_arrives_signed_once_on_one_node() {
    let receiver = Receiver::start().await;
    let args = webhook_args(&receiver, &["--presence-grace-ms", "300"]);
    let server = Server::start_with(&strs(&args));
    let (id, _bob) = scenario(&server, &server, "lobby").await;
    check_scenario(&receiver, "lobby", &id, NODE_ID).await;
}

#[tokio::test]
async fn every_event_type_arrives_once_from_three_nodes() {
    let receiver = Receiver::start().await;
    let args = webhook_args(&receiver, &["--presence-grace-ms", "300"]);
    let cluster = TestCluster::start_with(&["wh-a", "wh-b", "wh-c"], &strs(&args)).await;
    // alice on a, bob on b, the room owned by c.
    let room = cluster.room_owned_by(2, "lobby");
    let (id, _bob) = scenario(cluster.node(0), cluster.node(1), &room).await;
    check_scenario(&receiver, &room, &id, "wh-c").await;
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_its_id_and_a_4xx_is_not() {
    let flaky = Receiver::start().await;
    flaky.respond_with(|r| Answer::status(if r.attempt == 0 { 500 } else { 200 }));
    let refusing = Receiver::start().await;
    refusing.respond_with(|_| Answer::status(410));
    let urls = format!("{},{}", flaky.url("/a"), refusing.url("/b"));
    let secret = secret_flag();
    let server = Server::start_with(&[
        "--webhook-url",
        &urls,
        "--webhook-secret",
        &secret,
        "--webhook-events",
        "message.created",
    ]);
    let mut alice = server.client("alice").await;
    alice.join("retry").await;
    for text in ["one", "two", "three"] {
        alice.say("retry", text).await;
    }
    let received = flaky
        .wait_for("each message twice", Duration::from_secs(10), |received| {
            received.iter().filter(|r| r.attempt == 1).count() == 3
        })
        .await;
    assert_eq!(received.len(), 6, "{received:#?}");
    for retry in received.iter().filter(|r| r.attempt == 1) {
        let first = received.iter().find(|r| r.id == retry.id && r.attempt == 0).unwrap();
        assert_eq!(first.raw, retry.raw, "a retry posts the same body");
        assert!(signature_valid(KEY, retry));
    }
    let refused = refusing.wait_for("each message once", Duration::from_secs(5), |r| r.len() == 3).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(refusing.received().len(), 3, "410 is not retried");
    let mut ids: Vec<&str> = refused.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    let mut flaky_ids: Vec<&str> = received.iter().filter(|r| r.attempt == 0).map(|r| r.id.as_str()).collect();
    flaky_ids.sort();
    assert_eq!(ids, flaky_ids, "every endpoint gets every event, under the same id");
    let metrics = server.get("/metrics").await.body;
    for line in [
        r#"ringcast_webhook_dropped_total{endpoint="1",reason="rejected"} 3"#,
        r#"ringcast_webhook_retries_total{endpoint="0"} 3"#,
        r#"ringcast_webhook_deliveries_total{endpoint="0"} 3"#,
        r#"ringcast_webhook_events_emitted_total{type="message.created"} 3"#,
        r#"ringcast_webhook_queue_depth{endpoint="0"} 0"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn a_receiver_that_was_down_gets_everything_in_order_per_key() {
    let receiver = Receiver::start().await;
    let server = Server::start_with(&strs(&webhook_args(&receiver, &["--webhook-events", "message.created"])));
    let mut alice = server.client("alice").await;
    let rooms = ["red", "green", "blue"];
    for room in rooms {
        alice.join(room).await;
    }
    receiver.stop();
    let started = std::time::Instant::now();
    for index in 0..15 {
        for room in rooms {
            alice.say(room, &format!("{room} {index}")).await;
        }
    }
    // The rooms went on meanwhile: all 45 sends were acknowledged.
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(started.elapsed())).await;
    assert!(receiver.received().is_empty());
    receiver.restart().await;
    let received = receiver
        .wait_for("all 45 messages", Duration::from_secs(20), |received| {
            received.iter().map(|r| &r.id).collect::<std::collections::HashSet<_>>().len() == 45
        })
        .await;
    for room in rooms {
        let mut seen = Vec::new();
        for r in received.iter().filter(|r| r.body["data"]["room"] == room) {
            let seq = r.body["data"]["message"]["seq"].as_u64().unwrap();
            if !seen.contains(&seq) {
                seen.push(seq);
            }
        }
        assert_eq!(seen, (1..=15).collect::<Vec<u64>>(), "room {room}: first arrivals in seq order");
    }
    let texts: Vec<Value> = received.iter().map(|r| r.body["data"]["message"]["text"].clone()).collect();
    assert!(texts.contains(&json!("blue 14")));
}

/// How the owner of the events goes away.
#[derive(Clone, Copy, PartialEq)]
enum Stop {
    Kill,
    Drain,
}

/// The owner of a room emits 10 events while the receiver is down, then goes; the receiver
/// comes back and gets all 10 from the room's new owner (over the Redis outbox).
async fn pending_events_outlive_their_node(stop: Stop, prefix: &str) {
    let redis = common::redis::RedisServer::start();
    let receiver = Receiver::start().await;
    receiver.stop();
    let redis_url = redis.url();
    let args = webhook_args(&receiver, &["--redis-url", &redis_url, "--webhook-events", "message.created"]);
    let ids: Vec<String> = ["a", "b", "c"].iter().map(|id| format!("{prefix}-{id}")).collect();
    let mut cluster = TestCluster::start_with(&strs(&ids), &strs(&args)).await;
    // The room's owner, c, emits its events and keeps retrying them: the receiver is down.
    let room = cluster.room_owned_by(2, "doomed");
    let mut alice = cluster.node(0).client("alice").await;
    alice.join(&room).await;
    let mut sent = Vec::new();
    for index in 0..10 {
        sent.push(alice.say(&room, &format!("pending {index}")).await["id"].as_str().unwrap().to_string());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    match stop {
        Stop::Kill => cluster.nodes[2] = None,
        Stop::Drain => {
            let node = cluster.nodes[2].as_mut().unwrap();
            node.terminate();
            assert!(node.wait_exit(Duration::from_secs(15)).is_some_and(|status| status.success()));
            cluster.nodes[2] = None;
        }
    }
    cluster.wait_settled(2).await;
    receiver.restart().await;
    let received = receiver
        .wait_for("the 10 events of the gone owner", Duration::from_secs(20), |received| {
            sent.iter().all(|id| received.iter().any(|r| r.body["data"]["message"]["id"] == id.as_str()))
        })
        .await;
    for r in &received {
        assert!(signature_valid(KEY, r));
        assert_eq!(r.body["data"]["node"], ids[2].as_str(), "an adopted event keeps its body (and id)");
    }
    // Once each (by id): one adopter claimed each entry.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let received = receiver.received();
    let unique: std::collections::HashSet<&str> = received.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(unique.len(), 10, "{received:#?}");
}

#[tokio::test]
async fn events_pending_on_a_killed_node_are_sent_by_the_new_owner() {
    pending_events_outlive_their_node(Stop::Kill, "ko").await;
}

#[tokio::test]
async fn events_pending_on_a_drained_node_are_handed_over() {
    pending_events_outlive_their_node(Stop::Drain, "dr").await;
}

#[test]
fn the_cli_prints_and_checks_signatures() {
    let body = std::env::temp_dir().join(format!("ringcast-webhook-body-{}.json", std::process::id()));
    std::fs::write(&body, br#"{"type":"dm.sent","id":"evt_1"}"#).unwrap();
    let path = body.to_str().unwrap();
    let secret = secret_flag();
    let (code, out, err) =
        run_ringcast(&["webhook-sign", "--secret", &secret, "--id", "evt_1", "--timestamp", "1700000000", path]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["webhook-id: evt_1", "webhook-timestamp: 1700000000"]);
    let signature = lines[2].strip_prefix("webhook-signature: ").unwrap();
    let received = Received {
        path: String::new(),
        id: "evt_1".into(),
        timestamp: "1700000000".into(),
        signature: signature.into(),
        raw: std::fs::read(&body).unwrap(),
        body: Value::Null,
        attempt: 0,
    };
    assert!(signature_valid(KEY, &received), "the CLI signs as the receiver checks");
    let verify = |timestamp: &str| {
        run_ringcast(&[
            "webhook-sign",
            "--secret",
            &secret,
            "--id",
            "evt_1",
            "--timestamp",
            timestamp,
            "--verify",
            signature,
            path,
        ])
    };
    assert_eq!(verify("1700000000").0, Some(0));
    let (code, _, err) = verify("1700000001");
    assert_eq!(code, Some(1));
    assert!(err.contains("invalid signature"), "{err}");
    let (code, _, err) = run_ringcast(&["webhook-sign", "--secret", "whsec_???", path]);
    assert_eq!(code, Some(64), "{err}");
    std::fs::remove_file(&body).unwrap();
}
