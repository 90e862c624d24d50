//! wss and https: a self-signed certificate made at test time, the real binary, a real
//! WebSocket client over rustls; a cluster of TLS nodes; certificate reload on SIGHUP (good
//! and bad files); what is not TLS on a TLS port; the TOML keys.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{admin_token, free_cluster_addr, TestCluster};
use common::tls::*;
use common::*;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A node serving `cert` (files in `dir`), with `extra` flags.
fn tls_server(dir: &TempDir, cert: &SelfSigned, extra: &[&str]) -> Server {
    let (cert_path, key_path) = cert.write_to(dir);
    let mut args = tls_flags(&cert_path, &key_path);
    args.extend(extra.iter().map(|arg| arg.to_string()));
    Server::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn hangup(server: &Server) {
    let status = Command::new("kill").arg("-HUP").arg(server.pid().to_string()).status().expect("run kill");
    assert!(status.success(), "kill -HUP failed");
}

/// Alice says something in `room`; Bob (in the room too) receives it with the same text.
async fn talk(alice: &mut Client, bob: &mut Client, room: &str, text: &str) {
    let ack = alice.say(room, text).await;
    assert!(ack["seq"].is_u64(), "chat.send ack: {ack}");
    let message = bob.recv_message(room).await;
    assert_eq!(message["text"], text, "{message}");
}

async fn joined_pair(server: &Server, room: &str, trust: &Arc<ClientConfig>) -> (Client, Client) {
    let mut alice = wss_client(server.addr, "alice", trust).await;
    let mut bob = wss_client(server.addr, "bob", trust).await;
    alice.join(room).await;
    bob.join(room).await;
    (alice, bob)
}

#[tokio::test]
async fn test_wss_clients_talk_and_https_routes_answer() {
    let dir = TempDir::new("tls");
    let cert = SelfSigned::new();
    let admin = free_cluster_addr();
    let server = tls_server(&dir, &cert, &["--admin-listen", &admin.to_string()]);
    let trust = client_config(&[&cert]);
    assert_eq!(cert_served_at(server.addr, &trust).await, cert.der, "the configured certificate is served");
    let stream = tls_connect(server.addr, &trust).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]), "alpn http/1.1");
    drop(stream);

    let (mut alice, mut bob) = joined_pair(&server, "tls-room", &trust).await;
    talk(&mut alice, &mut bob, "tls-room", "over wss").await;
    talk(&mut bob, &mut alice, "tls-room", "and back").await;
    // A message larger than one TLS record (16 KiB) arrives whole.
    let long = "x".repeat(40_000);
    talk(&mut alice, &mut bob, "tls-room", &long).await;
    alice.ping().await;

    for addr in [server.addr, admin] {
        let health = https_get(addr, "/health", "", &trust).await;
        assert_eq!(health.status, 200, "https /health on {addr}: {}", health.body);
        assert_eq!(health.json()["node_id"], NODE_ID);
        assert_eq!(https_get(addr, "/ready", "", &trust).await.status, 200);
        let metrics = https_get(addr, "/metrics", "", &trust).await;
        assert_eq!(metrics.status, 200);
        assert!(metrics.body.contains("ringcast_connections"), "metrics over https: {}", metrics.body);
    }
    let bearer = format!("Authorization: Bearer {}\r\n", admin_token());
    let view = https_get(admin, "/v1/cluster", &bearer, &trust).await;
    assert_eq!(view.status, 200, "admin api over https: {}", view.body);
    assert_eq!(https_get(admin, "/v1/cluster", "", &trust).await.status, 401);
    // The admin port does not upgrade, over TLS neither.
    assert!(wss_open(admin, &Token::new("carol").sign(), &trust).await.is_err());
}

#[tokio::test]
async fn test_client_that_does_not_trust_the_certificate_is_refused() {
    let dir = TempDir::new("tls");
    let cert = SelfSigned::new();
    let server = tls_server(&dir, &cert, &[]);
    let other = SelfSigned::new();
    let err = tls_connect(server.addr, &client_config(&[&other])).await.expect_err("an untrusted certificate");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    let trust = client_config(&[&cert]);
    let (mut alice, mut bob) = joined_pair(&server, "after-untrusted", &trust).await;
    talk(&mut alice, &mut bob, "after-untrusted", "still fine").await;
}

#[tokio::test]
async fn test_tls_cluster_clients_on_two_nodes_talk() {
    let dir = TempDir::new("tls");
    let cert = SelfSigned::new();
    let (cert_path, key_path) = cert.write_to(&dir);
    let flags = tls_flags(&cert_path, &key_path);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = TestCluster::spawn_with(&["t1", "t2", "t3"], &flags);
    let trust = client_config(&[&cert]);
    let bearer = format!("Authorization: Bearer {}\r\n", admin_token());
    for server in cluster.nodes.iter().flatten() {
        let settled = eventually(Duration::from_secs(15), || async {
            let view = https_get(server.addr, "/v1/cluster", &bearer, &trust).await;
            view.status == 200 && view.json()["ring"].as_array().map(Vec::len) == Some(3)
        })
        .await;
        assert!(settled, "tls node {} did not settle on a ring of 3", server.addr);
    }
    // The room lives on the third node: both clients' messages cross the cluster links.
    let room = cluster.room_owned_by(2, "tls-cluster");
    let mut alice = wss_client(cluster.node(0).addr, "alice", &trust).await;
    let mut bob = wss_client(cluster.node(1).addr, "bob", &trust).await;
    assert_ne!(alice.connected["node_id"], bob.connected["node_id"]);
    alice.join(&room).await;
    bob.join(&room).await;
    talk(&mut alice, &mut bob, &room, "from t1").await;
    talk(&mut bob, &mut alice, &room, "from t2").await;
    alice.ack("dm.send", serde_json::json!({ "to": "bob", "text": "direct" })).await;
    let received = bob.recv_type("dm.message").await;
    assert_eq!(received["data"]["text"], "direct", "{received}");
}

#[tokio::test]
async fn test_sighup_reloads_the_certificate_for_new_connections() {
    let dir = TempDir::new("tls");
    let first = SelfSigned::new();
    let server = tls_server(&dir, &first, &[]);
    let second = SelfSigned::new();
    let trust = client_config(&[&first, &second]);
    let (mut alice, mut bob) = joined_pair(&server, "reload", &trust).await;

    second.write_to(&dir);
    hangup(&server);
    let reloaded =
        eventually(Duration::from_secs(5), || async { cert_served_at(server.addr, &trust).await == second.der }).await;
    assert!(reloaded, "a new connection is served the new certificate after SIGHUP");
    // The connections made before go on, in both directions.
    talk(&mut alice, &mut bob, "reload", "after the reload").await;
    talk(&mut bob, &mut alice, "reload", "still here").await;
    let mut carol = wss_client(server.addr, "carol", &trust).await;
    carol.join("reload").await;
    talk(&mut carol, &mut alice, "reload", "new and old").await;
}

#[tokio::test]
async fn test_sighup_with_bad_files_keeps_the_old_certificate() {
    let dir = TempDir::new("tls");
    let good = SelfSigned::new();
    let server = tls_server(&dir, &good, &[]);
    let other = SelfSigned::new();
    let last = SelfSigned::new();
    let trust = client_config(&[&good, &other, &last]);
    let (mut alice, mut bob) = joined_pair(&server, "bad-reload", &trust).await;
    let broken: [(&str, String, String); 4] = [
        ("garbage certificate", "not a pem file".into(), good.key_pem.clone()),
        ("key of another certificate", other.cert_pem.clone(), good.key_pem.clone()),
        ("no key", good.cert_pem.clone(), good.cert_pem.clone()),
        ("truncated certificate", good.cert_pem[..good.cert_pem.len() / 2].to_string(), good.key_pem.clone()),
    ];
    for (what, cert_pem, key_pem) in broken {
        dir.write("cert.pem", &cert_pem);
        dir.write("key.pem", &key_pem);
        hangup(&server);
        // Nothing observable changes: check a few new connections over a short while.
        for _ in 0..3 {
            tokio::time::sleep(QUIET / 3).await;
            assert_eq!(cert_served_at(server.addr, &trust).await, good.der, "{what}: the old certificate stays");
        }
        talk(&mut alice, &mut bob, "bad-reload", what).await;
    }
    // A missing file is refused the same way.
    std::fs::remove_file(dir.path("cert.pem")).unwrap();
    hangup(&server);
    tokio::time::sleep(QUIET).await;
    assert_eq!(cert_served_at(server.addr, &trust).await, good.der, "missing file: the old certificate stays");
    // And a good pair afterwards is taken.
    last.write_to(&dir);
    hangup(&server);
    let reloaded =
        eventually(Duration::from_secs(5), || async { cert_served_at(server.addr, &trust).await == last.der }).await;
    assert!(reloaded, "a good pair after bad ones is loaded");
    talk(&mut bob, &mut alice, "bad-reload", "alive").await;
    assert_eq!(https_get(server.addr, "/health", "", &trust).await.status, 200);
}

#[tokio::test]
async fn test_what_is_not_tls_on_a_tls_port_is_refused_alone() {
    let dir = TempDir::new("tls");
    let cert = SelfSigned::new();
    let server = tls_server(&dir, &cert, &[]);
    let trust = client_config(&[&cert]);
    let (mut alice, mut bob) = joined_pair(&server, "guarded", &trust).await;

    // A plain WebSocket client and a plain HTTP request get a 400 that says why.
    assert_eq!(upgrade_status(server.bearer_request(&Token::new("dave").sign())).await, 400);
    let plain = server.get("/health").await;
    assert_eq!(plain.status, 400);
    assert!(plain.body.contains("tls"), "{}", plain.body);
    // Garbage, and a TLS record header followed by garbage: the connection is dropped.
    let garbage: [&[u8]; 3] = [
        &[0x00, 0xff, 0x13, 0x37, 0x42, 0x99, 0x00, 0x01],
        &[
            0x16, 0x03, 0x01, 0x00, 0x10, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00,
        ],
        &[0x17, 0x03, 0x03, 0xff, 0xff, 0x01],
    ];
    for bytes in garbage {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut buf = [0u8; 256];
        let ended = tokio::time::timeout(Duration::from_secs(12), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => {} // a TLS alert
                }
            }
        })
        .await;
        assert_eq!(ended, Ok(true), "garbage {bytes:02x?}: the server closes the connection");
    }
    // Garbage inside TLS is an HTTP error like on a plain port.
    let stream = tls_connect(server.addr, &trust).await.unwrap();
    let response = http_over(stream, "NOT HTTP AT ALL\r\n\r\n").await;
    assert_eq!(response.status, 400);
    talk(&mut alice, &mut bob, "guarded", "unaffected").await;
    assert_eq!(https_get(server.addr, "/health", "", &trust).await.status, 200);
}

#[tokio::test]
async fn test_tls_files_from_the_config_file() {
    let dir = TempDir::new("tls");
    let cert = SelfSigned::new();
    let (cert_path, key_path) = cert.write_to(&dir);
    let config = dir.write("ringcast.toml", &format!("tls-cert = {cert_path:?}\ntls_key = {key_path:?}\n"));
    let server = Server::start_with(&["--config", &config]);
    let trust = client_config(&[&cert]);
    assert_eq!(cert_served_at(server.addr, &trust).await, cert.der);
    let (mut alice, mut bob) = joined_pair(&server, "from-file", &trust).await;
    talk(&mut alice, &mut bob, "from-file", "configured by file").await;
}
