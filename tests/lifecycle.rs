//! Process lifecycle: start line, graceful shutdown (1001, exit 0 within the drain timeout),
//! configuration errors (exit 64), the token command, HTTP endpoints, keepalive and idle
//! timeout.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn test_sigterm_closes_every_connection_with_1001_and_exits_0() {
    let mut server = Server::start_with(&["--drain-timeout-secs", "3"]);
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("lobby").await;
    bob.join("lobby").await;
    // A connection that has not authenticated yet.
    let mut anonymous = Client::connect_anonymous(&server).await;
    anonymous.expect_no_frame(Duration::from_millis(100)).await;

    let started = Instant::now();
    server.terminate();
    assert_eq!(alice.expect_close().await, Some(1001));
    assert_eq!(bob.expect_close().await, Some(1001));
    assert_eq!(anonymous.expect_close().await, Some(1001));
    let status = server.wait_exit(Duration::from_secs(4));
    let status = status.expect("the process exits within the drain timeout");
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0: {status:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err(), "nothing listens after the exit");
}

#[tokio::test]
async fn test_sigterm_with_a_client_that_does_not_read() {
    let mut server = Server::start_with(&["--drain-timeout-secs", "2"]);
    // This client never reads again and never answers the close.
    let stuck = server.client("stuck").await;
    let mut reader = server.client("reader").await;
    let publisher_token = Token::new("publisher").sign();
    let mut publisher = server.client_with(&publisher_token).await;
    publisher.join("lobby").await;
    reader.join("lobby").await;
    publisher.say("lobby", "before shutdown").await;
    reader.recv_message("lobby").await;

    let started = Instant::now();
    server.terminate();
    assert_eq!(reader.expect_close().await, Some(1001));
    let status = server.wait_exit(Duration::from_secs(4));
    let status = status.expect("the process exits even with a client that does not answer");
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    drop(stuck);
}

#[test]
fn test_config_errors_exit_64_with_one_line() {
    let dir = common::tls::TempDir::new("tls-config");
    let good = common::tls::SelfSigned::new();
    let (cert, key) = good.write_to(&dir);
    let tls = |path: String| -> &'static str { Box::leak(path.into_boxed_str()) };
    let (cert, key) = (tls(cert), tls(key));
    let other = tls(dir.write("other.pem", &common::tls::SelfSigned::new().cert_pem));
    let truncated = tls(dir.write("truncated.pem", &good.cert_pem[..good.cert_pem.len() / 2]));
    let missing = tls(dir.path("missing.pem"));
    // (flags, a word the message must contain)
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--tls-cert", cert], "--tls-cert needs --tls-key"),
        (vec!["--tls-key", key], "--tls-key needs --tls-cert"),
        (vec!["--tls-cert", missing, "--tls-key", key], missing),
        (vec!["--tls-cert", cert, "--tls-key", missing], missing),
        (vec!["--tls-cert", key, "--tls-key", key], "no certificate"),
        (vec!["--tls-cert", cert, "--tls-key", cert], "no private key"),
        (vec!["--tls-cert", truncated, "--tls-key", key], "bad pem"),
        (vec!["--tls-cert", other, "--tls-key", key], "does not match"),
        (vec!["--queue-frames", "0"], "queue-frames"),
        (vec!["--listen", "nonsense"], "listen"),
        (vec!["--jwt-alg", "XX"], "jwt-alg"),
        (vec!["--no-such-flag"], "no-such-flag"),
        (vec!["--max-message-bytes", "0"], "max-message-bytes"),
        (vec!["--max-message-bytes", "lots"], "max-message-bytes"),
        (vec!["--rate-per-second", "0"], "rate-per-second"),
        (vec!["--rate-burst", "0"], "rate-burst"),
        (vec!["--idle-timeout-secs", "0"], "idle-timeout-secs"),
        (vec!["--error-limit", "0"], "error-limit"),
        (vec!["--node-id", "bad id"], "node-id"),
        (vec!["--log-format", "xml"], "log-format"),
        (vec!["--demo", "maybe"], "demo"),
        (vec!["--jwt-alg", "RS256"], "jwt"),
        (vec!["--config", "/nonexistent/ringcast.toml"], "/nonexistent/ringcast.toml"),
    ];
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(flags, word)| {
            std::thread::spawn(move || {
                let mut args = vec!["serve", "--jwt-secret", "s"];
                if !flags.contains(&"--listen") {
                    args.extend(["--listen", "127.0.0.1:0"]);
                }
                if !flags.contains(&"--node-id") {
                    args.extend(["--node-id", "n"]);
                }
                args.extend(flags.iter().copied());
                let (code, _stdout, stderr) = run_ringcast(&args);
                (flags, word, code, stderr)
            })
        })
        .collect();
    let mut more = vec![
        (
            vec![
                "serve".to_string(),
                "--jwt-secret=".to_string(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--node-id".into(),
                "n".into(),
            ],
            "jwt-secret",
        ),
        (vec!["no-such-command".to_string()], ""),
    ];
    let mut results: Vec<(Vec<String>, &str, Option<i32>, String)> = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .map(|(f, w, c, e)| (f.iter().map(|s| s.to_string()).collect(), w, c, e))
        .collect();
    for (args, word) in more.drain(..) {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, stderr) = run_ringcast(&refs);
        results.push((args, word, code, stderr));
    }
    for (args, word, code, stderr) in results {
        assert_eq!(code, Some(64), "{args:?} exits 64; stderr: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line on stderr, got {stderr:?}");
        assert!(lines[0].starts_with("ringcast: "), "{args:?}: line starts with 'ringcast: ': {stderr:?}");
        assert!(lines[0].contains(word), "{args:?}: the message names {word:?}: {stderr:?}");
    }
}

#[test]
fn test_listen_address_in_use_exits_64() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, stderr) = run_ringcast(&["serve", "--jwt-secret", "s", "--node-id", "n", "--listen", &addr]);
    assert_eq!(code, Some(64), "stderr: {stderr}");
    assert!(stderr.starts_with("ringcast: "), "{stderr}");
}

#[tokio::test]
async fn test_token_command_mints_accepted_tokens() {
    let server = Server::start();
    let (code, stdout, stderr) = run_ringcast(&[
        "token",
        "--sub",
        "cli-user",
        "--tenant",
        "acme",
        "--name",
        "CLI User",
        "--groups",
        "eng,ops",
        "--roles",
        "moderator",
        "--ttl",
        "1h",
        "--jwt-secret",
        SECRET,
    ]);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    let token = stdout.trim();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let mut client = server.client_with(token).await;
    assert_eq!(client.connected["user_id"], "cli-user");
    assert_eq!(client.connected["tenant"], "acme");
    // Groups and roles are in the token.
    client.say("group:eng", "in my group").await;
    client.say("group:ops", "in my other group").await;
    client.join("private:mods").await;

    // Signed with another secret: refused.
    let (_, stdout, _) = run_ringcast(&["token", "--sub", "x", "--jwt-secret", "other"]);
    assert_eq!(upgrade_status(server.bearer_request(stdout.trim())).await, 401);

    let (code, _, stderr) = run_ringcast(&["token", "--sub", "x"]);
    assert_eq!(code, Some(64), "no secret: {stderr}");
    assert!(stderr.starts_with("ringcast: "));
    let (code, _, _) = run_ringcast(&["token", "--sub", "bad\tsub", "--jwt-secret", "s"]);
    assert_eq!(code, Some(64));
    let (code, _, _) = run_ringcast(&["token", "--sub", "x", "--ttl", "1w", "--jwt-secret", "s"]);
    assert_eq!(code, Some(64));
}

#[tokio::test]
async fn test_token_ttl_is_honoured() {
    let server = Server::start();
    let (code, stdout, _) = run_ringcast(&["token", "--sub", "short", "--ttl", "2s", "--jwt-secret", SECRET]);
    assert_eq!(code, Some(0));
    let mut client = server.client_with(stdout.trim()).await;
    assert_eq!(client.expect_close_within(Duration::from_secs(5)).await, Some(4003));
}

#[tokio::test]
async fn test_health_endpoints() {
    let server = Server::start_with(&["--node-id", "health-node"]);
    let health = server.get("/health").await;
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(health.json()["node_id"], "health-node");
    let live = server.get("/live").await;
    assert_eq!(live.status, 200, "{live:?}");
    let ready = server.get("/ready").await;
    assert_eq!(ready.status, 200, "a single node is ready once listening: {ready:?}");
    assert_eq!(ready.json()["status"], "ready");

    let missing = server.get("/no-such-path").await;
    assert_eq!(missing.status, 404);
    // The WebSocket path without an upgrade is a client error, not a crash.
    let plain = server.get("/v1/ws").await;
    assert_eq!(plain.status, 400, "{plain:?}");
    // A request that is not HTTP does no harm.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(b"GARBAGE\x00\xff\r\n\r\n").await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut sink)).await;
    }
    assert_eq!(server.get("/health").await.status, 200);
}

#[tokio::test]
async fn test_metrics_endpoint() {
    let server = Server::start();
    let mut client = server.client("alice").await;
    client.ping().await;
    client.join("lobby").await;
    client.say("lobby", "counted").await;
    assert_eq!(upgrade_status(server.bearer_request("abc")).await, 401);
    let metrics = server.get("/metrics").await;
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert!(metrics.header("content-type").is_some_and(|ct| ct.starts_with("text/plain")), "{:?}", metrics.headers);
    for name in [
        "ringcast_connections",
        "ringcast_connections_accepted_total",
        "ringcast_messages_in_total",
        "ringcast_connections_rejected_total",
    ] {
        assert!(metrics.body.contains(name), "/metrics has {name}:\n{}", metrics.body);
    }
    assert!(metrics.body.contains("presence.ping"), "messages are counted by type:\n{}", metrics.body);
    // Label values are closed sets: no room or user names.
    assert!(!metrics.body.contains("lobby") && !metrics.body.contains("alice"), "{}", metrics.body);
}

#[tokio::test]
async fn test_server_pings_and_ping_interval() {
    let server = Server::start_with(&["--ping-interval-secs", "0.2", "--idle-timeout-secs", "1"]);
    let mut client = server.client("alice").await;
    assert_eq!(client.connected["ping_interval_ms"], 200);
    // Reading answers the server's pings with pongs, which count as activity: the
    // connection outlives the idle timeout without any application frame.
    client.expect_no_frame(Duration::from_millis(1800)).await;
    assert!(client.pings_seen >= 4, "server pings every 200 ms, saw {}", client.pings_seen);
    client.ping().await;
}

#[tokio::test]
async fn test_idle_timeout_closes_1001() {
    let server = Server::start_with(&["--idle-timeout-secs", "1", "--ping-interval-secs", "10"]);
    let mut client = server.client("alice").await;
    let started = Instant::now();
    let code = client.expect_close_within(Duration::from_secs(4)).await;
    assert_eq!(code, Some(1001));
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(800) && elapsed < Duration::from_secs(3), "idle close after {elapsed:?}");
}

#[tokio::test]
async fn test_activity_keeps_an_idle_connection_open() {
    let server = Server::start_with(&["--idle-timeout-secs", "1", "--ping-interval-secs", "10"]);
    let mut active = server.client("alice").await;
    let mut idle = server.client("bob").await;
    let started = Instant::now();
    // presence.ping counts as activity.
    while started.elapsed() < Duration::from_millis(1800) {
        active.ping().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(idle.expect_close_within(Duration::from_secs(2)).await, Some(1001), "the silent one is closed");
    active.ping().await;
    // Receiving is not activity: a client that only listens is closed too.
    let mut listener = server.client("carol").await;
    listener.join("lobby").await;
    active.join("lobby").await;
    let talk = async {
        for n in 0..8 {
            active.say("lobby", &format!("{n}")).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let listen = async { listener.expect_close_within(Duration::from_secs(4)).await };
    let ((), code) = tokio::join!(talk, listen);
    assert_eq!(code, Some(1001));
}

#[tokio::test]
async fn test_idle_anonymous_connection_is_closed() {
    // An unauthenticated connection is bounded by the auth timeout.
    let server = Server::start_with(&["--auth-timeout-secs", "0.3", "--idle-timeout-secs", "60"]);
    let mut client = Client::connect_anonymous(&server).await;
    assert_eq!(client.expect_close_within(Duration::from_secs(3)).await, Some(4001));
}

/// `/demo` serves the chat page, its script and the SDK bundle with `--demo true`; without it
/// (a configured key) it is off; development mode turns it on and prints its URL with a token.
#[tokio::test]
async fn test_demo_page_on_off_and_in_development_mode() {
    let server = Server::start_with(&["--demo", "true"]);
    let page = server.get("/demo").await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.header("content-security-policy").is_some_and(|csp| csp.contains("script-src 'self'")));
    assert!(page.body.contains("/demo/demo.js"));
    for file in ["/demo/demo.js", "/demo/ringcast-client.js"] {
        let script = server.get(file).await;
        assert_eq!((script.status, script.header("content-type")), (200, Some("text/javascript; charset=utf-8")));
    }
    let bundle = server.get("/demo/ringcast-client.js").await;
    assert_eq!(bundle.body, include_str!("../clients/js/dist/ringcast-client.min.js"));
    assert_eq!(server.get("/demo/nothing.js").await.status, 404);

    let off = Server::start().get("/demo").await;
    assert_eq!(off.status, 404);
    assert!(off.body.contains("the demo is off"), "{off:?}");

    // Development mode: no key configured.
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args(["serve", "--listen", "127.0.0.1:0", "--node-id", "dev-node"])
        .env_remove("RINGCAST_CONFIG")
        .env_remove("RINGCAST_JWT_SECRET")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut token = None;
    let mut demo = None;
    while demo.is_none() {
        let line = rx.recv_timeout(Duration::from_secs(10)).expect("development mode prints the demo URL");
        if let Some(rest) = line.strip_prefix("ringcast: token for user 'dev' (24h): ") {
            token = Some(rest.to_string());
        }
        if let Some(rest) = line.strip_prefix("ringcast: demo chat: ") {
            demo = Some(rest.to_string());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let (url, fragment_token) =
        demo.unwrap().split_once("#token=").map(|(a, b)| (a.to_string(), b.to_string())).unwrap();
    assert_eq!(Some(fragment_token), token, "the demo URL carries the printed token");
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/demo"), "{url}");
}
