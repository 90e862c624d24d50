//! Per-user and per-IP limits: `--max-connections-per-user` (cluster-wide, counted by the
//! owner of the user's personal room; the connection over it closes with 4029) and
//! `--connect-rate-per-ip` (429), with the client IP taken from `X-Forwarded-For` only
//! behind `--trusted-proxies`.

mod common;

use std::time::Duration;

use common::admin::{admin, conn_id, ADMIN_KEY};
use common::cluster::Setup;
use common::*;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// A connection of `sub` on `server`: `Ok(client)` when welcomed, `Err(code)` when closed
/// before its `connected`.
async fn try_connect(server: &Server, sub: &str) -> Result<Client, Option<u16>> {
    let ws = open(server.bearer_request(&Token::new(sub).sign())).await.expect("upgrade");
    let mut client = Client::from_ws(ws);
    match client.next_event(RECV_TIMEOUT).await {
        Event::Json(frame) if frame["type"] == "connected" => {
            client.connected = frame["data"].clone();
            Ok(client)
        }
        Event::Closed(code) => Err(code),
        other => panic!("neither connected nor closed: {other:?}"),
    }
}

async fn connections_per_user(setup: &Setup) {
    let first = try_connect(setup.node(0), "alice").await.expect("first");
    let second = try_connect(setup.node(1), "alice").await.expect("second");
    // The third, on any node, is refused: the owner of alice's personal room counts them all.
    for index in 0..3 {
        assert_eq!(try_connect(setup.node(index), "alice").await.err(), Some(Some(4029)), "on node {index}");
    }
    // Other users are not concerned, and alice's connections keep working.
    let mut bob = try_connect(setup.node(2), "bob").await.expect("bob");
    bob.ping().await;
    let mut second = second;
    second.ping().await;
    // One closed, one may come.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let third = loop {
        match try_connect(setup.node(2), "alice").await {
            Ok(client) => break client,
            Err(code) => {
                assert_eq!(code, Some(4029));
                assert!(tokio::time::Instant::now() < deadline, "a connection of alice closed, no room for another");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(third.connected["user_id"], "alice");
    let connections = admin(setup.node(0), "GET", "/v1/connections?user_id=alice", None).await;
    assert_eq!(connections["connections"].as_array().unwrap().len(), 2, "{connections}");
}

#[tokio::test]
async fn test_connections_per_user_one_node() {
    connections_per_user(&Setup::new(false, &["--max-connections-per-user", "2", "--admin-key", ADMIN_KEY]).await)
        .await;
}

#[tokio::test]
async fn test_connections_per_user_three_nodes() {
    connections_per_user(&Setup::new(true, &["--max-connections-per-user", "2", "--admin-key", ADMIN_KEY]).await).await;
}

fn forwarded(server: &Server, sub: &str, forwarded_for: Option<&str>) -> Request {
    let mut request = server.bearer_request(&Token::new(sub).sign());
    if let Some(value) = forwarded_for {
        request.headers_mut().insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
    }
    request
}

#[tokio::test]
async fn test_connect_rate_per_ip() {
    // Without trusted proxies the header is ignored: every connection is from 127.0.0.1.
    let server = Server::start_with(&["--connect-rate-per-ip", "2"]);
    assert_eq!(upgrade_status(forwarded(&server, "a", Some("198.51.100.1"))).await, 101);
    assert_eq!(upgrade_status(forwarded(&server, "a", Some("198.51.100.2"))).await, 101);
    assert_eq!(upgrade_status(forwarded(&server, "a", Some("198.51.100.3"))).await, 429);
    let metrics = http_get(server.addr, "/metrics").await.body;
    assert!(metrics.contains("ringcast_connections_rejected_total{reason=\"connect_rate\"} 1"), "{metrics}");
}

#[tokio::test]
async fn test_connect_rate_per_forwarded_ip_behind_trusted_proxies() {
    let server = Server::start_with(&[
        "--connect-rate-per-ip",
        "2",
        "--trusted-proxies",
        "10.0.0.0/8,127.0.0.1",
        "--admin-key",
        ADMIN_KEY,
    ]);
    // The client is the last address before the trusted proxies.
    let chain = "203.0.113.50, 198.51.100.7, 10.1.1.1";
    let client = Client::connect_request(forwarded(&server, "carol", Some(chain))).await;
    assert_eq!(upgrade_status(forwarded(&server, "carol", Some(chain))).await, 101);
    assert_eq!(upgrade_status(forwarded(&server, "carol", Some(chain))).await, 429, "198.51.100.7's third");
    assert_eq!(upgrade_status(forwarded(&server, "dave", Some("198.51.100.8"))).await, 101, "another client");
    assert_eq!(upgrade_status(forwarded(&server, "dave", None)).await, 101, "the proxy itself");
    let info = admin(&server, "GET", &format!("/v1/connections/{}", conn_id(&client)), None).await;
    assert_eq!(info["remote_addr"], "198.51.100.7");
}

#[test]
fn test_bad_limit_options_exit_64() {
    assert_config_errors(&[
        (vec!["--max-connections-per-user", "0"], "--max-connections-per-user"),
        (vec!["--connect-rate-per-ip", "0"], "--connect-rate-per-ip"),
        (vec!["--connect-rate-per-ip", "fast"], "connect-rate-per-ip"),
        (vec!["--trusted-proxies", "10.0.0.0/99"], "--trusted-proxies"),
        (vec!["--trusted-proxies", "proxy.local"], "--trusted-proxies"),
    ]);
}
