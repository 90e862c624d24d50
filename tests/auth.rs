//! PROTOCOL.md §3: token sources, bad tokens at upgrade and in band, auth timeout, origins,
//! auth.refresh and token expiry.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::http::HeaderValue;

#[tokio::test]
async fn test_bearer_header_connects_with_connected_frame() {
    let server = Server::start();
    let token = Token::new("alice").name("Alice Liddell").sign();
    let client = Client::connect(&server, &token).await;
    let connected = &client.connected;
    assert_eq!(connected["user_id"], "alice");
    assert_eq!(connected["tenant"], "default", "tenant defaults to \"default\"");
    assert_eq!(connected["node_id"], NODE_ID);
    assert_eq!(connected["ping_interval_ms"], 25_000, "default ping interval is 25 s");
    assert!(!connected["conn_id"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn test_cookie_and_query_tokens_connect() {
    let server = Server::start();
    let token = Token::new("bob").tenant("acme").sign();

    let mut request = server.request("/v1/ws");
    request
        .headers_mut()
        .insert("cookie", HeaderValue::from_str(&format!("theme=dark; ringcast_token={token}")).unwrap());
    let by_cookie = Client::connect_request(request).await;
    assert_eq!(by_cookie.connected["user_id"], "bob");
    assert_eq!(by_cookie.connected["tenant"], "acme");

    let by_query = Client::connect_request(server.request(&format!("/v1/ws?x=1&token={token}"))).await;
    assert_eq!(by_query.connected["user_id"], "bob");

    // The /ws alias.
    let alias = Client::connect_request(server.request(&format!("/ws?token={token}"))).await;
    assert_eq!(alias.connected["user_id"], "bob");

    assert_ne!(by_cookie.connected["conn_id"], by_query.connected["conn_id"], "every connection has its own id");
}

#[tokio::test]
async fn test_token_sources_are_taken_in_order() {
    let server = Server::start();
    let good = Token::new("carol").sign();
    let bad = "abc";

    // Authorization wins over a bad query token.
    let mut request = server.request(&format!("/v1/ws?token={bad}"));
    request.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {good}")).unwrap());
    assert_eq!(upgrade_status(request).await, 101);

    // A bad Authorization token is used (and refused) even with a good cookie.
    let mut request = server.request("/v1/ws");
    request.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {bad}")).unwrap());
    request.headers_mut().insert("cookie", HeaderValue::from_str(&format!("ringcast_token={good}")).unwrap());
    assert_eq!(upgrade_status(request).await, 401);

    // The cookie wins over the query.
    let mut request = server.request(&format!("/v1/ws?token={good}"));
    request.headers_mut().insert("cookie", HeaderValue::from_str(&format!("ringcast_token={bad}")).unwrap());
    assert_eq!(upgrade_status(request).await, 401);
}

#[tokio::test]
async fn test_bad_tokens_at_upgrade_get_401() {
    let server = Server::start();
    for (label, token) in bad_tokens() {
        assert_eq!(upgrade_status(server.bearer_request(&token)).await, 401, "bearer token: {label}");
        let query = server.request(&format!("/v1/ws?token={token}"));
        assert_eq!(upgrade_status(query).await, 401, "query token: {label}");
        let mut cookie = server.request("/v1/ws");
        cookie.headers_mut().insert("cookie", HeaderValue::from_str(&format!("ringcast_token={token}")).unwrap());
        assert_eq!(upgrade_status(cookie).await, 401, "cookie token: {label}");
    }
    // The server still serves good tokens afterwards.
    let mut client = server.client("alice").await;
    client.ping().await;
}

#[tokio::test]
async fn test_in_band_auth() {
    let server = Server::start();
    let mut client = Client::connect_anonymous(&server).await;
    let token = Token::new("dave").name("Dave").sign();
    client.send_json(&json!({"type": "auth", "op_id": "a-1", "data": {"token": token}})).await;
    let connected = client.expect_connected().await;
    assert_eq!(connected["user_id"], "dave");
    let ack = client.reply("a-1").await;
    assert_eq!(ack["type"], "ack", "auth with op_id is acked: {ack}");
    client.ping().await;

    // A second auth on an authenticated connection is refused without closing it.
    let reply = client.request("auth", json!({"token": token})).await;
    assert_eq!(reply["type"], "error", "second auth: {reply}");
    client.ping().await;
}

#[tokio::test]
async fn test_in_band_bad_tokens_close_4001() {
    let server = Server::start();
    for (label, token) in bad_tokens() {
        let mut client = Client::connect_anonymous(&server).await;
        client.send_json(&json!({"type": "auth", "op_id": "a-1", "data": {"token": token}})).await;
        let error = client.recv_json().await;
        assert_eq!(error["type"], "error", "{label}: {error}");
        assert_eq!(error["data"]["code"], "unauthorized", "{label}: {error}");
        assert_eq!(error["op_id"], "a-1", "{label}: the error echoes the op_id: {error}");
        assert_eq!(client.expect_close().await, Some(4001), "{label}");
    }
}

#[tokio::test]
async fn test_first_frame_must_be_auth() {
    let server = Server::start();
    let first_frames: Vec<(&str, Option<String>)> = vec![
        ("presence.ping", Some(json!({"type": "presence.ping", "op_id": "p-1"}).to_string())),
        ("room.join", Some(json!({"type": "room.join", "data": {"room": "lobby"}}).to_string())),
        ("not json", Some("hello".to_string())),
        ("auth without token", Some(json!({"type": "auth", "data": {}}).to_string())),
        ("auth with a numeric token", Some(json!({"type": "auth", "data": {"token": 5}}).to_string())),
        ("binary", None),
    ];
    for (label, frame) in first_frames {
        let mut client = Client::connect_anonymous(&server).await;
        match frame {
            Some(text) => client.send_text(&text).await,
            None => client.send_binary(vec![1, 2, 3]).await,
        }
        let error = client.recv_json().await;
        assert_eq!(error["type"], "error", "{label}: {error}");
        assert_eq!(error["data"]["code"], "unauthorized", "{label}: {error}");
        assert_eq!(client.expect_close().await, Some(4001), "{label}");
    }
}

#[tokio::test]
async fn test_auth_timeout_closes_4001() {
    let server = Server::start_with(&["--auth-timeout-secs", "0.5"]);
    let mut client = Client::connect_anonymous(&server).await;
    let started = std::time::Instant::now();
    let (frames, code) = client.frames_until_close(Duration::from_secs(3)).await;
    assert_eq!(code, Some(4001));
    assert!(started.elapsed() >= Duration::from_millis(400), "closed before the auth timeout: {:?}", started.elapsed());
    assert!(
        frames.iter().any(|f| f["type"] == "error" && f["data"]["code"] == "unauthorized"),
        "an unauthorized error precedes the close: {frames:?}"
    );

    // Authenticating in time works with the same setting.
    let mut client = Client::connect_anonymous(&server).await;
    client.send_json(&json!({"type": "auth", "data": {"token": Token::new("erin").sign()}})).await;
    client.expect_connected().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    client.ping().await;
}

#[tokio::test]
async fn test_allowed_origins() {
    let server = Server::start_with(&["--allowed-origins", "https://good.example,https://also.example"]);
    let token = Token::new("alice").sign();
    for (origin, expected) in [
        ("https://good.example", 101),
        ("https://also.example", 101),
        ("https://evil.example", 403),
        ("https://good.example.evil", 403),
    ] {
        let mut request = server.bearer_request(&token);
        request.headers_mut().insert("origin", HeaderValue::from_static(origin));
        assert_eq!(upgrade_status(request).await, expected, "origin {origin}");
    }
    // A refused origin does not even get to the token check: 403 with a bad token too.
    let mut request = server.bearer_request("abc");
    request.headers_mut().insert("origin", HeaderValue::from_static("https://evil.example"));
    assert_eq!(upgrade_status(request).await, 403);
}

#[tokio::test]
async fn test_auth_refresh_with_good_token_is_acked_and_extends_expiry() {
    let server = Server::start();
    let mut client = Client::connect(&server, &Token::new("alice").expires_in(2).sign()).await;
    let fresh = Token::new("alice").expires_in(3600).sign();
    let ack = client.ack("auth.refresh", json!({"token": fresh})).await;
    assert!(ack.is_object(), "ack data: {ack}");
    // The first token has expired by now; the refreshed one keeps the connection open.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    client.ping().await;
}

#[tokio::test]
async fn test_auth_refresh_refusals_keep_the_connection() {
    let server = Server::start();
    let mut client = Client::connect(&server, &Token::new("alice").tenant("acme").sign()).await;
    let other_sub = Token::new("bob").tenant("acme").sign();
    assert_eq!(client.error("auth.refresh", json!({"token": other_sub})).await, "forbidden");
    client.ping().await;
    let other_tenant = Token::new("alice").tenant("globex").sign();
    assert_eq!(client.error("auth.refresh", json!({"token": other_tenant})).await, "forbidden");
    client.ping().await;
    let default_tenant = Token::new("alice").sign();
    assert_eq!(
        client.error("auth.refresh", json!({"token": default_tenant})).await,
        "forbidden",
        "no tenant claim = tenant default"
    );
    client.ping().await;
    for (label, token) in bad_tokens() {
        let reply = client.request("auth.refresh", json!({"token": token})).await;
        assert_eq!(reply["type"], "error", "{label}: {reply}");
        assert_eq!(reply["data"]["code"], "unauthorized", "{label}: {reply}");
        client.ping().await;
    }
    assert_eq!(client.error("auth.refresh", json!({})).await, "invalid_message", "missing token");
    assert_eq!(client.error("auth.refresh", json!({"token": 42})).await, "invalid_message", "numeric token");
    client.ping().await;
    // Still the same identity: the user room is alice's.
    client.join("user:alice").await;
}

#[tokio::test]
async fn test_auth_refresh_with_new_groups_joins_and_leaves_group_rooms() {
    let server = Server::start();
    let mut alice = Client::connect(&server, &Token::new("alice").groups(&["eng"]).sign()).await;
    let mut bob = Client::connect(&server, &Token::new("bob").groups(&["eng", "ops"]).sign()).await;
    let joined = alice.recv_type("member.joined").await;
    assert_eq!(joined["data"]["room"], "group:eng", "bob's automatic join is announced: {joined}");

    let token = Token::new("alice").groups(&["ops"]).sign();
    alice.ack("auth.refresh", json!({"token": token})).await;
    let mut updates = vec![alice.recv_type("room.update").await, alice.recv_type("room.update").await];
    updates.sort_by_key(|u| u["data"]["room"].as_str().unwrap().to_string());
    assert_eq!(updates[0]["data"], json!({"room": "group:eng", "status": "left", "reason": "groups"}));
    assert_eq!(updates[1]["data"], json!({"room": "group:ops", "status": "joined", "reason": "groups"}));

    // alice now hears group:ops and no longer group:eng.
    bob.say("group:ops", "ops news").await;
    assert_eq!(alice.recv_message("group:ops").await["text"], "ops news");
    bob.say("group:eng", "eng news").await;
    alice.expect_no_frame(QUIET).await;
    assert_eq!(alice.error("chat.send", json!({"room": "group:eng", "text": "x"})).await, "forbidden");
    assert_eq!(alice.error("room.join", json!({"room": "group:eng"})).await, "forbidden");
}

/// PROTOCOL.md §4: a group change by auth.refresh applies to *every* connection of the user.
#[tokio::test]
async fn test_auth_refresh_group_change_reaches_every_connection_of_the_user() {
    let server = Server::start();
    let mut phone = Client::connect(&server, &Token::new("alice").sign()).await;
    let mut laptop = Client::connect(&server, &Token::new("alice").sign()).await;
    let mut bob = Client::connect(&server, &Token::new("bob").groups(&["eng"]).sign()).await;

    phone.ack("auth.refresh", json!({"token": Token::new("alice").groups(&["eng"]).sign()})).await;
    let update = phone.recv_type("room.update").await;
    assert_eq!(update["data"]["room"], "group:eng");

    let update = laptop.recv_type("room.update").await;
    assert_eq!(
        update["data"],
        json!({"room": "group:eng", "status": "joined", "reason": "groups"}),
        "the user's other connection"
    );
    bob.say("group:eng", "hello eng").await;
    assert_eq!(laptop.recv_message("group:eng").await["text"], "hello eng");
}

#[tokio::test]
async fn test_token_expiry_closes_4003() {
    let server = Server::start();
    let mut client = Client::connect(&server, &Token::new("alice").expires_in(2).sign()).await;
    client.ping().await;
    let started = std::time::Instant::now();
    assert_eq!(client.expect_close_within(Duration::from_secs(5)).await, Some(4003));
    assert!(started.elapsed() >= Duration::from_millis(500), "closed too early: {:?}", started.elapsed());
}

#[tokio::test]
async fn test_token_expiry_applies_to_in_band_auth() {
    let server = Server::start();
    let mut client = Client::connect_anonymous(&server).await;
    client.send_json(&json!({"type": "auth", "data": {"token": Token::new("alice").expires_in(2).sign()}})).await;
    client.expect_connected().await;
    assert_eq!(client.expect_close_within(Duration::from_secs(5)).await, Some(4003));
}

#[tokio::test]
async fn test_auth_refresh_to_a_shorter_token_closes_4003_at_its_expiry() {
    let server = Server::start();
    let mut client = Client::connect(&server, &Token::new("alice").sign()).await;
    client.ack("auth.refresh", json!({"token": Token::new("alice").expires_in(2).sign()})).await;
    assert_eq!(client.expect_close_within(Duration::from_secs(5)).await, Some(4003), "the new token's expiry applies");
}

#[tokio::test]
async fn test_auth_refresh_updates_the_display_name() {
    let server = Server::start();
    let mut alice = Client::connect(&server, &Token::new("alice").name("Alice").sign()).await;
    let mut bob = server.client("bob").await;
    alice.join("lobby").await;
    bob.join("lobby").await;
    alice.recv_type("member.joined").await;
    alice.ack("auth.refresh", json!({"token": Token::new("alice").name("Alice Cooper").sign()})).await;
    alice.say("lobby", "renamed").await;
    let message = bob.recv_message("lobby").await;
    assert_eq!(message["from"], json!({"user_id": "alice", "name": "Alice Cooper"}));
}

#[tokio::test]
async fn test_refused_upgrades_are_plain_http_answers() {
    let server = Server::start_with(&["--allowed-origins", "https://good.example"]);
    let upgrade = |extra: &str| {
        format!(
            "GET /v1/ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n",
            server.addr
        )
    };
    let response = http_raw(server.addr, &upgrade("Authorization: Bearer abc\r\n")).await;
    assert_eq!(response.status, 401, "{response:?}");
    assert!(response.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{response:?}");
    assert_eq!(response.json()["error"], "unauthorized", "{response:?}");

    let response = http_raw(server.addr, &upgrade("Origin: https://evil.example\r\n")).await;
    assert_eq!(response.status, 403, "{response:?}");

    // Without a token the upgrade itself succeeds (the token comes in band).
    let response = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(upgrade("").as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
}
