//! Tokens of real identity providers (PROTOCOL.md §3): HS256, RS256, ES256 and EdDSA keys
//! (and RS384, PS256, ES384), `aud`/`iss` on and off, clock skew within and past the leeway,
//! key rotation, a JWKS served by the test on loopback (a rotation on it, the endpoint
//! failing), claim paths, and `sub` values of any UTF-8, two of which never share a key.

mod common;

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------
// Keys and tokens
// ---------------------------------------------------------------------------------------

/// A key pair made for the test: what signs, and the PEM public key the server reads.
struct TestKey {
    algorithm: Algorithm,
    encoding: EncodingKey,
    public_pem: String,
}

impl TestKey {
    fn new(algorithm: Algorithm) -> TestKey {
        let rcgen_alg = match algorithm {
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 => &rcgen::PKCS_RSA_SHA256,
            Algorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Algorithm::ES384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Algorithm::EdDSA => &rcgen::PKCS_ED25519,
            other => panic!("no key pair for {other:?}"),
        };
        let pair = rcgen::KeyPair::generate_for(rcgen_alg).expect("generate key pair");
        let private_pem = pair.serialize_pem();
        let encoding = match algorithm {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(private_pem.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(private_pem.as_bytes()),
            _ => EncodingKey::from_rsa_pem(private_pem.as_bytes()),
        }
        .expect("encoding key");
        TestKey { algorithm, encoding, public_pem: pair.public_key_pem() }
    }

    fn sign(&self, token: &Token, kid: Option<&str>) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, &Value::Object(token.claims.clone()), &self.encoding).expect("sign")
    }

    /// The key as a JWK with `kid`.
    fn jwk(&self, kid: &str) -> Value {
        let mut jwk = match self.algorithm {
            Algorithm::EdDSA => {
                // The PKCS#8 of aws-lc carries the public key; the JWK is made from the PEM's
                // SubjectPublicKeyInfo (12 bytes of header, then the 32 bytes of the key).
                let der = pem_body(&self.public_pem);
                let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                json!({"kty": "OKP", "crv": "Ed25519", "x": base64::Engine::encode(&b64, &der[12..])})
            }
            algorithm => {
                serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(&self.encoding, algorithm).expect("jwk"))
                    .unwrap()
            }
        };
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        jwk
    }

    /// The public key in a temporary file, for `--jwt-public-key`.
    fn public_key_file(&self, name: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("ringcast-jwt-{}-{name}.pem", std::process::id()));
        std::fs::write(&path, &self.public_pem).expect("write key file");
        path
    }
}

fn pem_body(pem: &str) -> Vec<u8> {
    let text: String = pem.lines().filter(|line| !line.starts_with("-----")).collect();
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text).expect("pem base64")
}

/// The upgrade status of a connection with `token`: 101 or 401.
async fn status(server: &Server, token: &str) -> u16 {
    upgrade_status(server.bearer_request(token)).await
}

/// The value of `series` (name and labels) on `server`'s `/metrics`.
async fn metric(server: &Server, series: &str) -> Option<u64> {
    let body = http_get(server.addr, "/metrics").await.body;
    let prefix = format!("{series} ");
    body.lines().find_map(|line| line.strip_prefix(&prefix)).and_then(|value| value.trim().parse().ok())
}

/// The value of `ringcast_auth_failures_total{reason}` on `server`.
async fn failures(server: &Server, reason: &str) -> u64 {
    let series = format!("ringcast_auth_failures_total{{reason=\"{reason}\"}}");
    metric(server, &series).await.unwrap_or_else(|| panic!("no {series} in /metrics"))
}

// ---------------------------------------------------------------------------------------
// aud, iss, leeway
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn test_aud_is_not_checked_unless_configured() {
    let server = Server::start();
    // Almost every OIDC access token has an `aud`.
    assert_eq!(status(&server, &Token::new("alice").claim("aud", json!("https://api.example")).sign()).await, 101);
    assert_eq!(status(&server, &Token::new("alice").claim("iss", json!("https://id.example/")).sign()).await, 101);
}

#[tokio::test]
async fn test_audience_and_issuer_when_configured() {
    let server = Server::start_with(&["--jwt-audience", "api,realtime", "--jwt-issuer", "https://id.example/"]);
    let token = |aud: Value, iss: Value| {
        let mut token = Token::new("alice");
        if !aud.is_null() {
            token = token.claim("aud", aud);
        }
        if !iss.is_null() {
            token = token.claim("iss", iss);
        }
        token.sign()
    };
    let iss = json!("https://id.example/");
    assert_eq!(status(&server, &token(json!("api"), iss.clone())).await, 101);
    assert_eq!(status(&server, &token(json!(["account", "realtime"]), iss.clone())).await, 101, "one of several");
    assert_eq!(status(&server, &token(json!("account"), iss.clone())).await, 401, "another audience");
    assert_eq!(status(&server, &token(Value::Null, iss.clone())).await, 401, "no aud");
    assert_eq!(status(&server, &token(json!("api"), json!("https://evil.example/"))).await, 401, "another issuer");
    assert_eq!(status(&server, &token(json!("api"), Value::Null)).await, 401, "no iss");
    assert!(failures(&server, "audience").await >= 2);
    assert!(failures(&server, "issuer").await >= 2);

    // In band the same checks apply; the client sees only unauthorized and 4001.
    let mut client = Client::connect_anonymous(&server).await;
    client.send_json(&json!({"type": "auth", "data": {"token": token(json!("account"), iss)}})).await;
    let (code, _) = client.recv_error().await;
    assert_eq!(code, "unauthorized");
    assert_eq!(client.expect_close().await, Some(4001));
}

#[tokio::test]
async fn test_leeway_on_exp_nbf_and_iat() {
    let server = Server::start();
    let now = now_secs();
    // The default leeway is 30 s.
    assert_eq!(status(&server, &Token::new("a").expires_in(-10).sign()).await, 101, "exp 10 s ago");
    assert_eq!(status(&server, &Token::new("a").expires_in(-60).sign()).await, 401, "exp 60 s ago");
    assert_eq!(status(&server, &Token::new("a").not_before_in(10).sign()).await, 101, "nbf in 10 s");
    assert_eq!(status(&server, &Token::new("a").not_before_in(60).sign()).await, 401, "nbf in 60 s");
    assert_eq!(status(&server, &Token::new("a").claim("iat", json!(now + 10)).sign()).await, 101, "iat in 10 s");
    assert_eq!(status(&server, &Token::new("a").claim("iat", json!(now + 60)).sign()).await, 401, "iat in 60 s");
    assert!(failures(&server, "expired").await >= 1);
    assert!(failures(&server, "not_yet_valid").await >= 2);

    let strict = Server::start_with(&["--jwt-leeway-secs", "0"]);
    assert_eq!(status(&strict, &Token::new("a").expires_in(-10).sign()).await, 401);
    assert_eq!(status(&strict, &Token::new("a").not_before_in(10).sign()).await, 401);
    let lenient = Server::start_with(&["--jwt-leeway-secs", "120"]);
    assert_eq!(status(&lenient, &Token::new("a").expires_in(-60).sign()).await, 101);
}

// ---------------------------------------------------------------------------------------
// Public keys and rotation
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn test_public_key_algorithms() {
    for algorithm in
        [Algorithm::RS256, Algorithm::RS384, Algorithm::PS256, Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA]
    {
        let name = format!("{algorithm:?}");
        let key = TestKey::new(algorithm);
        let path = key.public_key_file(&name);
        let server = Server::start_with(&["--jwt-public-key", path.to_str().unwrap(), "--jwt-alg", &name]);
        let token = Token::new("alice").claim("aud", json!("anything"));
        let mut client = Client::connect(&server, &key.sign(&token, None)).await;
        assert_eq!(client.connected["user_id"], "alice", "{name}");
        assert_eq!(client.ack("presence.query", json!({"users": ["alice"]})).await["users"][0]["status"], "online");
        // Another key of the same algorithm, and the HS256 secret of the other tests: refused.
        assert_eq!(status(&server, &TestKey::new(algorithm).sign(&token, None)).await, 401, "{name}: other key");
        assert_eq!(status(&server, &token.sign()).await, 401, "{name}: HS256 refused when {name} is pinned");
        assert!(failures(&server, "bad_signature").await >= 2);
        let _ = std::fs::remove_file(path);
    }
}

#[tokio::test]
async fn test_rotation_accepts_the_previous_secret_and_key() {
    let server = Server::start_with(&["--jwt-previous-secret", "the-old-secret-0123456789"]);
    let token = Token::new("alice");
    assert_eq!(status(&server, &token.sign()).await, 101, "current secret");
    assert_eq!(status(&server, &token.sign_with("the-old-secret-0123456789", Algorithm::HS256)).await, 101);
    assert_eq!(status(&server, &token.sign_with("a-third-secret-0123456789", Algorithm::HS256)).await, 401);

    let (old, new) = (TestKey::new(Algorithm::ES256), TestKey::new(Algorithm::ES256));
    let (old_path, new_path) = (old.public_key_file("old"), new.public_key_file("new"));
    let server = Server::start_with(&[
        "--jwt-public-key",
        new_path.to_str().unwrap(),
        "--jwt-previous-public-key",
        old_path.to_str().unwrap(),
        "--jwt-alg",
        "ES256",
    ]);
    assert_eq!(status(&server, &new.sign(&token, None)).await, 101);
    assert_eq!(status(&server, &old.sign(&token, None)).await, 101);
    assert_eq!(status(&server, &TestKey::new(Algorithm::ES256).sign(&token, None)).await, 401);
    let _ = (std::fs::remove_file(old_path), std::fs::remove_file(new_path));
}

// ---------------------------------------------------------------------------------------
// JWKS
// ---------------------------------------------------------------------------------------

/// A JWKS endpoint on loopback: answers every request with the current document, or with
/// the current failure status; counts the requests.
struct JwksServer {
    url: String,
    document: Arc<Mutex<Value>>,
    failing: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(document: Value) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        let document = Arc::new(Mutex::new(document));
        let failing = Arc::new(AtomicU16::new(0));
        let hits = Arc::new(AtomicUsize::new(0));
        let (doc, fail, count) = (document.clone(), failing.clone(), hits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let (doc, fail, count) = (doc.clone(), fail.clone(), count.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = match fail.load(Ordering::SeqCst) {
                        0 => (200, doc.lock().unwrap().to_string()),
                        status => (status, "{\"error\":\"down\"}".to_string()),
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        JwksServer { url, document, failing, hits }
    }

    fn set(&self, keys: Vec<Value>) {
        *self.document.lock().unwrap() = json!({ "keys": keys });
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn test_jwks_keys_by_kid_rotation_and_failure() {
    let (rsa, ec, ed) =
        (TestKey::new(Algorithm::RS256), TestKey::new(Algorithm::ES256), TestKey::new(Algorithm::EdDSA));
    // An encryption key and a symmetric key in the set are not used for signatures.
    let enc = json!({"kty": "RSA", "use": "enc", "kid": "enc-1", "n": rsa.jwk("x")["n"], "e": "AQAB"});
    let jwks = JwksServer::start(json!({"keys": [rsa.jwk("rsa-1"), ec.jwk("ec-1"), ed.jwk("ed-1"), enc]})).await;
    let server = Server::start_with(&[
        "--jwt-jwks-url",
        &jwks.url,
        "--jwt-jwks-min-interval-secs",
        "0.3",
        "--jwt-audience",
        "realtime",
    ]);
    let token = Token::new("alice").claim("aud", json!("realtime"));
    // The first fetch happens at start; a token that comes first waits for it.
    let mut client = Client::connect(&server, &rsa.sign(&token, Some("rsa-1"))).await;
    assert_eq!(client.connected["user_id"], "alice");
    assert_eq!(client.ack("presence.query", json!({"users": ["alice"]})).await["users"][0]["status"], "online");
    assert_eq!(status(&server, &ec.sign(&token, Some("ec-1"))).await, 101, "ES256 by kid");
    assert_eq!(status(&server, &ed.sign(&token, Some("ed-1"))).await, 101, "EdDSA by kid");
    assert_eq!(status(&server, &rsa.sign(&token, Some("ec-1"))).await, 401, "kid of another key");
    assert_eq!(status(&server, &rsa.sign(&token, Some("enc-1"))).await, 401, "an encryption key");
    assert_eq!(status(&server, &rsa.sign(&Token::new("alice"), Some("rsa-1"))).await, 401, "no aud");
    assert_eq!(
        status(&server, &Token::new("alice").claim("aud", json!("realtime")).sign()).await,
        401,
        "no static key"
    );

    // Rotation on the endpoint: a token with the new kid fetches the set again.
    let rotated = TestKey::new(Algorithm::RS256);
    jwks.set(vec![rotated.jwk("rsa-2"), ec.jwk("ec-1")]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(status(&server, &rotated.sign(&token, Some("rsa-2"))).await, 101, "the new kid after a rotation");
    assert_eq!(status(&server, &rsa.sign(&token, Some("rsa-1"))).await, 401, "the kid gone from the set");
    // Unknown kids fetch at most once per interval.
    let before = jwks.hits();
    for _ in 0..5 {
        assert_eq!(status(&server, &rsa.sign(&token, Some("no-such-kid"))).await, 401);
    }
    assert!(jwks.hits() <= before + 1, "5 unknown kids fetched {} times", jwks.hits() - before);
    assert!(failures(&server, "unknown_key").await >= 5);

    // The endpoint fails: the last good set stays in use.
    jwks.failing.store(503, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = jwks.hits();
    assert_eq!(status(&server, &rsa.sign(&token, Some("another-kid"))).await, 401);
    assert_eq!(jwks.hits(), before + 1, "the unknown kid tried the endpoint");
    assert_eq!(status(&server, &rotated.sign(&token, Some("rsa-2"))).await, 101, "last good keys kept on 503");
    jwks.failing.store(0, Ordering::SeqCst);
    jwks.set(vec![]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(status(&server, &rsa.sign(&token, Some("third-kid"))).await, 401);
    assert_eq!(status(&server, &ec.sign(&token, Some("ec-1"))).await, 101, "an empty set is not taken");

    // And once it is back, a new key is found.
    let third = TestKey::new(Algorithm::ES256);
    jwks.set(vec![third.jwk("ec-3")]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(status(&server, &third.sign(&token, Some("ec-3"))).await, 101);
    // In band too: an `auth` frame with a kid the set does not know yet waits for its fetch.
    let fourth = TestKey::new(Algorithm::EdDSA);
    jwks.set(vec![fourth.jwk("ed-4")]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut in_band = Client::connect_anonymous(&server).await;
    in_band
        .send_json(&json!({"type": "auth", "op_id": "a1", "data": {"token": fourth.sign(&token, Some("ed-4"))}}))
        .await;
    assert_eq!(in_band.expect_connected().await["user_id"], "alice");
    assert_eq!(in_band.reply("a1").await["type"], "ack");
    // The live connection was never disturbed.
    assert_eq!(client.ack("presence.query", json!({"users": ["alice"]})).await["users"][0]["status"], "online");
}

#[tokio::test]
async fn test_jwks_endpoint_down_at_start_then_up() {
    let key = TestKey::new(Algorithm::ES256);
    let jwks = JwksServer::start(json!({"keys": [key.jwk("k1")]})).await;
    jwks.failing.store(500, Ordering::SeqCst);
    let server = Server::start_with(&["--jwt-jwks-url", &jwks.url, "--jwt-jwks-min-interval-secs", "0.2"]);
    let token = Token::new("bob");
    assert_eq!(status(&server, &key.sign(&token, Some("k1"))).await, 401, "no key set yet");
    jwks.failing.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&server, &key.sign(&token, Some("k1"))).await, 101, "fetched on the unknown kid");
    // The metrics tell (sampled every 5 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    loop {
        let sampled = (
            metric(&server, "ringcast_jwks_fetches_total{result=\"error\"}").await.unwrap_or(0),
            metric(&server, "ringcast_jwks_fetches_total{result=\"ok\"}").await.unwrap_or(0),
            metric(&server, "ringcast_jwks_keys").await.unwrap_or(0),
        );
        if sampled.0 >= 1 && sampled.1 >= 1 && sampled.2 == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "jwks metrics (error, ok, keys): {sampled:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Claim paths
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn test_claim_paths_for_roles_groups_and_tenant() {
    let server = Server::start_with(&[
        "--jwt-roles-claim",
        "realm_access.roles",
        "--jwt-groups-claim",
        "https://ringcast.example/groups",
        "--jwt-tenant-claim",
        "org.id",
    ]);
    let token = Token::new("kc-user")
        .claim("realm_access", json!({"roles": ["offline_access", "admin"]}))
        .claim("https://ringcast.example/groups", json!(["team-a"]))
        .claim("org", json!({"id": "acme"}))
        .sign();
    let mut client = Client::connect(&server, &token).await;
    assert_eq!(client.connected["tenant"], "acme");
    assert_eq!(client.ack("room.join", json!({"room": "group:team-a"})).await["status"], "joined");
    // The roles of the path make an admin token of it (admin API, its tenant only).
    let stats = common::admin::call(&server, "GET", "/v1/stats?tenant=acme", Some(&token), None).await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    // The plain claims are not read any more.
    let plain = Token::new("plain").roles(&["admin"]).groups(&["team-a"]).sign();
    let mut other = Client::connect(&server, &plain).await;
    assert_eq!(other.connected["tenant"], "default");
    assert_eq!(other.error("room.join", json!({"room": "group:team-a"})).await, "forbidden");
    assert_eq!(common::admin::call(&server, "GET", "/v1/stats", Some(&plain), None).await.status, 403);
    // A string is a space-separated list; a number is refused.
    let spaced = Token::new("s").claim("https://ringcast.example/groups", json!("team-a team-b")).sign();
    let mut spaced = Client::connect(&server, &spaced).await;
    assert_eq!(spaced.ack("room.join", json!({"room": "group:team-b"})).await["status"], "joined");
    let bad = Token::new("n").claim("realm_access", json!({"roles": 5})).sign();
    assert_eq!(status(&server, &bad).await, 401);
    assert!(failures(&server, "claims").await >= 1);
}

// ---------------------------------------------------------------------------------------
// User ids
// ---------------------------------------------------------------------------------------

fn odd_subs() -> Vec<String> {
    vec![
        "auth0|64f1c2".to_string(),
        "a+b@example.com".to_string(),
        "Jürgen Groß 🎉".to_string(),
        "é".repeat(128),
        "google-oauth2|1234/5678".to_string(),
    ]
}

#[tokio::test]
async fn test_any_utf8_sub_connects() {
    let server = Server::start();
    for sub in odd_subs() {
        let mut client = server.client(&sub).await;
        assert_eq!(client.connected["user_id"], sub.as_str());
        let users = client.ack("presence.query", json!({"users": [sub]})).await;
        assert_eq!(users["users"][0]["user_id"], sub.as_str());
        assert_eq!(users["users"][0]["status"], "online", "{sub}");
    }
    for (label, sub) in [
        ("257 bytes", format!("{}x", "é".repeat(128))),
        ("control", "a\u{1}b".into()),
        ("empty", String::new()),
        // The server API's messages come from `service:{name}`: reserved.
        ("service prefix", "service:billing".into()),
    ] {
        assert_eq!(status(&server, &Token::new(&sub).sign()).await, 401, "{label}");
    }
}

/// Users whose ids differ only in characters that the key escape writes out never share
/// a personal room, an inbox or presence.
async fn escaped_users_stay_apart(setup: &common::cluster::Setup) {
    // "auth0|x" escapes to "auth0%7Cx": the second user is that very text.
    let (plain, lookalike) = ("auth0|x", "auth0%7Cx");
    let mut sender = setup.node(0).client("sender@example.com").await;
    // An offline DM to the first waits in its inbox only.
    sender.ack("dm.send", json!({"to": plain, "text": "for plain"})).await;
    let mut second = setup.node(1).client(lookalike).await;
    second.expect_no_frame(Duration::from_millis(300)).await;
    let mut first = setup.node(2).client(plain).await;
    let offline = first.recv_type("dm.message").await;
    assert_eq!(offline["data"]["text"], "for plain");
    assert_eq!(offline["data"]["to"], plain);
    // Live DMs each to its own user.
    sender.ack("dm.send", json!({"to": lookalike, "text": "for lookalike"})).await;
    let got = second.recv_type("dm.message").await;
    assert_eq!(got["data"]["text"], "for lookalike");
    assert_eq!(got["data"]["to"], lookalike);
    first.expect_no_frame(Duration::from_millis(300)).await;
    // Presence of each is its own.
    second.ack("presence.set", json!({"status": "busy"})).await;
    let users = sender.ack("presence.query", json!({"users": [plain, lookalike]})).await;
    let status_of = |user: &str| {
        users["users"].as_array().unwrap().iter().find(|entry| entry["user_id"] == user).unwrap()["status"].clone()
    };
    assert_eq!(status_of(plain), "online");
    assert_eq!(status_of(lookalike), "busy");
    // Nobody joins another's personal room, escaped or not.
    for room in ["user:auth0%7Cx", "user:auth0|x"] {
        let code = sender.error("room.join", json!({"room": room})).await;
        assert!(code == "forbidden" || code == "invalid_message", "{room}: {code}");
    }
}

#[tokio::test]
async fn test_escaped_users_stay_apart_on_one_node() {
    escaped_users_stay_apart(&common::cluster::Setup::new(false, &[]).await).await;
}

#[tokio::test]
async fn test_escaped_users_stay_apart_on_three_nodes() {
    escaped_users_stay_apart(&common::cluster::Setup::new(true, &[]).await).await;
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

#[test]
fn test_bad_jwt_options_exit_64_with_one_line() {
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--jwt-audience", ","], "--jwt-audience"),
        (vec!["--jwt-issuer", " "], "--jwt-issuer"),
        (vec!["--jwt-leeway-secs=-1"], "jwt-leeway-secs"),
        (vec!["--jwt-leeway-secs", "100000"], "--jwt-leeway-secs"),
        (vec!["--jwt-jwks-url", "not a url"], "--jwt-jwks-url"),
        (vec!["--jwt-jwks-url", "ftp://example.com/jwks"], "--jwt-jwks-url"),
        (vec!["--jwt-jwks-refresh-secs", "10"], "needs --jwt-jwks-url"),
        (vec!["--jwt-jwks-url", "http://127.0.0.1:9/j", "--jwt-jwks-min-interval-secs", "0"], "min-interval"),
        (vec!["--jwt-roles-claim", "realm_access..roles"], "--jwt-roles-claim"),
        (vec!["--jwt-tenant-claim", ""], "--jwt-tenant-claim"),
        (vec!["--jwt-previous-secret", ""], "--jwt-previous-secret"),
        (vec!["--jwt-previous-public-key", "/nonexistent.pem"], "--jwt-previous-public-key"),
        (vec!["--jwt-alg", "HS384"], "--jwt-alg"),
    ];
    assert_config_errors(&cases);
}

#[tokio::test]
async fn test_jwt_options_from_the_config_file() {
    let dir = std::env::temp_dir().join(format!("ringcast-jwt-conf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ringcast.toml");
    std::fs::write(&file, "jwt-audience = \"from-file\"\njwt_leeway_secs = 0\njwt-tenant-claim = \"org\"\n").unwrap();
    let server = Server::start_with(&["--config", file.to_str().unwrap()]);
    assert_eq!(status(&server, &Token::new("a").claim("aud", json!("from-file")).sign()).await, 101);
    assert_eq!(status(&server, &Token::new("a").claim("aud", json!("other")).sign()).await, 401);
    let past = Token::new("a").claim("aud", json!("from-file")).expires_in(-5).sign();
    assert_eq!(status(&server, &past).await, 401, "leeway 0 from the file");
    let tenant = Token::new("a").claim("aud", json!("from-file")).claim("org", json!("acme")).sign();
    assert_eq!(Client::connect(&server, &tenant).await.connected["tenant"], "acme");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn test_jwt_options_have_env_twins() {
    for (name, value, word) in [
        ("RINGCAST_JWT_LEEWAY_SECS", "100000", "--jwt-leeway-secs"),
        ("RINGCAST_JWT_AUDIENCE", ",", "--jwt-audience"),
        ("RINGCAST_JWT_JWKS_URL", "ftp://x/jwks", "--jwt-jwks-url"),
        ("RINGCAST_JWT_GROUPS_CLAIM", "a..b", "--jwt-groups-claim"),
        ("RINGCAST_TRUSTED_PROXIES", "nope", "--trusted-proxies"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .args(["serve", "--jwt-secret", "s", "--listen", "127.0.0.1:0", "--node-id", "n"])
            .env_remove("RINGCAST_CONFIG")
            .env(name, value)
            .output()
            .expect("run ringcast");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{name}={value}: {stderr}");
        assert!(stderr.contains(word), "{name}={value}: {stderr}");
    }
}
