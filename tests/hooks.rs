//! The authorization hooks against a real HTTP receiver on loopback: the connect hook allows
//! (adding rooms and meta), denies with the application's reason, and fails (timeout) under
//! each `--hook-failure` policy; the join hook allows, denies, caches, and is asked only for
//! the rooms it names.

mod common;

use std::time::Duration;

use common::receiver::{signature_valid, Answer, Receiver};
use common::*;
use serde_json::json;

const KEY: &str = "hook-test-secret-0123456789";

fn start(receiver: &Receiver, extra: &[&str]) -> Server {
    let url = receiver.url("/connect");
    let mut args = vec!["--connect-hook-url", &url, "--webhook-secret", KEY];
    args.extend(extra);
    Server::start_with(&args)
}

/// Opens a connection and reads frames until the server closes it.
async fn refused(server: &Server, sub: &str) -> (Vec<serde_json::Value>, Option<u16>) {
    let ws = open(server.bearer_request(&Token::new(sub).sign())).await.unwrap();
    Client::from_ws(ws).frames_until_close(Duration::from_secs(5)).await
}

#[tokio::test]
async fn the_connect_hook_adds_rooms_and_meta() {
    let receiver = Receiver::start().await;
    receiver.respond_with(|_| Answer::json(json!({"allow": true, "rooms": ["vip"], "meta": {"plan": "gold"}})));
    let server = start(&receiver, &["--admin-key", common::admin::ADMIN_KEY]);
    let mut alice = server.client("alice").await;
    assert_eq!(alice.connected["meta"], json!({"plan": "gold"}));
    let conn_id = alice.connected["conn_id"].as_str().unwrap().to_string();
    let listed = common::admin::admin(&server, "GET", &format!("/v1/connections/{conn_id}"), None).await;
    assert_eq!(listed["meta"], json!({"plan": "gold"}), "{listed}");
    assert!(listed["rooms"].as_array().unwrap().contains(&json!("vip")), "{listed}");
    let asked = receiver.received();
    assert_eq!(asked.len(), 1);
    let data = &asked[0].body["data"];
    assert_eq!(asked[0].body["type"], "connection.connect");
    assert_eq!((data["user"].as_str(), data["tenant"].as_str()), (Some("alice"), Some("default")));
    assert_eq!(data["claims"]["sub"], "alice");
    assert!(data["connection"]["remote_addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(data["conn_id"], alice.connected["conn_id"]);
    assert!(signature_valid(KEY.as_bytes(), &asked[0]), "the hook's request is signed");
    // alice is in `vip` without asking: bob's message there reaches her.
    let mut bob = server.client("bob").await;
    bob.join("vip").await;
    bob.say("vip", "welcome").await;
    assert_eq!(alice.recv_message("vip").await["text"], "welcome");
}

#[tokio::test]
async fn the_connect_hook_refuses_with_the_applications_reason() {
    let receiver = Receiver::start().await;
    receiver.respond_with(|r| {
        if r.body["data"]["user"] == "mallory" {
            Answer::json(json!({"allow": false, "reason": "account suspended"}))
        } else {
            Answer::status(204)
        }
    });
    let server = start(&receiver, &[]);
    let (frames, code) = refused(&server, "mallory").await;
    assert_eq!(code, Some(4403));
    assert_eq!(frames.len(), 1, "an error, never connected: {frames:?}");
    assert_eq!(frames[0]["type"], "error");
    assert_eq!(frames[0]["data"]["code"], "forbidden");
    assert_eq!(frames[0]["data"]["message"], "account suspended");
    // An empty 2xx answer allows; the node goes on serving.
    let mut alice = server.client("alice").await;
    alice.ping().await;
}

#[tokio::test]
async fn a_connect_hook_that_times_out_denies_or_allows_as_configured() {
    let receiver = Receiver::start().await;
    receiver.respond_with(|_| Answer { status: 200, body: "{}".into(), delay: Duration::from_millis(1500) });
    let denying = start(&receiver, &["--hook-timeout-ms", "200"]);
    let (frames, code) = refused(&denying, "alice").await;
    assert_eq!(code, Some(4403));
    assert_eq!(frames[0]["data"]["message"], "connect hook unavailable");
    let allowing = start(&receiver, &["--hook-timeout-ms", "200", "--hook-failure", "allow"]);
    let mut alice = allowing.client("alice").await;
    alice.join("lobby").await;
}

#[tokio::test]
async fn requests_before_the_connect_hook_answered_are_unavailable() {
    let receiver = Receiver::start().await;
    receiver.respond_with(|_| Answer { status: 204, body: String::new(), delay: Duration::from_millis(400) });
    let server = start(&receiver, &[]);
    let ws = open(server.bearer_request(&Token::new("alice").sign())).await.unwrap();
    let mut alice = Client::from_ws(ws);
    alice.send_json(&json!({"type": "room.join", "op_id": "early", "data": {"room": "lobby"}})).await;
    let error = alice.recv_json().await;
    assert_eq!((error["type"].as_str(), error["op_id"].as_str()), (Some("error"), Some("early")));
    assert_eq!(error["data"]["code"], "unavailable");
    alice.expect_connected().await;
    alice.join("lobby").await;
}

#[tokio::test]
async fn the_join_hook_allows_denies_and_caches() {
    let receiver = Receiver::start().await;
    receiver.respond_with(|r| match r.body["data"]["room"].as_str() {
        Some("paid-ok") => Answer::json(json!({"allow": true, "cache_secs": 60})),
        Some("paid-slow") => Answer { status: 200, body: "{}".into(), delay: Duration::from_millis(1500) },
        _ => Answer::json(json!({"allow": false, "reason": "buy a ticket"})),
    });
    let url = receiver.url("/join");
    let server = Server::start_with(&[
        "--join-hook-url",
        &url,
        "--join-hook-rooms",
        "paid-",
        "--hook-timeout-ms",
        "300",
        "--webhook-secret",
        KEY,
    ]);
    let mut alice = server.client("alice").await;
    alice.join("paid-ok").await;
    let op_id = alice.send_request("room.join", json!({"room": "paid-no"})).await;
    let denied = alice.reply(&op_id).await;
    assert_eq!((denied["type"].as_str(), denied["data"]["code"].as_str()), (Some("error"), Some("forbidden")));
    assert_eq!(denied["data"]["message"], "buy a ticket");
    // Not in the room it was refused.
    assert_eq!(alice.error("chat.send", json!({"room": "paid-no", "text": "x"})).await, "forbidden");
    // Not asked about rooms it does not name.
    alice.join("free").await;
    // A timeout denies (the default policy).
    let op_id = alice.send_request("room.join", json!({"room": "paid-slow"})).await;
    assert_eq!(alice.reply(&op_id).await["data"]["message"], "join hook unavailable");
    // The allow was cached for 60 s: leaving and joining again asks no more.
    alice.leave("paid-ok").await;
    alice.join("paid-ok").await;
    let asked: Vec<String> =
        receiver.received().iter().map(|r| r.body["data"]["room"].as_str().unwrap().to_string()).collect();
    assert_eq!(asked, ["paid-ok", "paid-no", "paid-slow"]);
    for r in receiver.received() {
        assert_eq!(r.body["type"], "room.join");
        assert_eq!(
            (r.body["data"]["user"].as_str(), r.body["data"]["tenant"].as_str()),
            (Some("alice"), Some("default"))
        );
        assert!(signature_valid(KEY.as_bytes(), &r));
    }
}

#[test]
fn bad_hook_settings_exit_64() {
    for (args, expected) in [
        (vec!["--join-hook-url", "http://127.0.0.1:9/"], "--join-hook-url needs --join-hook-rooms"),
        (vec!["--join-hook-rooms", "paid-"], "--join-hook-rooms needs --join-hook-url"),
        (vec!["--connect-hook-url", "https://example.com/"], "https is not supported"),
        (vec!["--connect-hook-url", "http://x/", "--hook-failure", "maybe"], "must be deny or allow"),
        (vec!["--connect-hook-url", "http://x/", "--hook-timeout-ms", "10000"], "must be below --auth-timeout-secs"),
        (vec!["--webhook-url", "http://x/", "--webhook-events", "message.sent"], "unknown event"),
        (vec!["--webhook-url", "http://x/", "--webhook-secret", "whsec_%%"], "whsec_ must be followed by base64"),
    ] {
        let mut all = vec!["serve", "--jwt-secret", SECRET];
        all.extend(args.iter());
        let (code, _, stderr) = run_ringcast(&all);
        assert_eq!(code, Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
}
