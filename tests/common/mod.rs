//! Shared helpers of the integration tests: a real `ringcast` process per test, token
//! minting, a small WebSocket client, and a plain HTTP/1.1 GET.
//!
//! Every test starts its own server on an ephemeral port, so tests run in parallel. The
//! server is killed (SIGKILL) when its [`Server`] is dropped.

#![allow(dead_code)]

pub mod admin;
pub mod client;
pub mod cluster;
pub mod receiver;
pub mod redis;
pub mod tls;

pub use client::*;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// The HS256 secret every test server is started with.
pub const SECRET: &str = "integration-test-secret-0123456789";
/// The node id every test server is started with (unless a test passes its own).
pub const NODE_ID: &str = "test-node";
/// How long a `recv_*` waits by default.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------

/// A `ringcast serve` child process.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    exited: Option<ExitStatus>,
    /// Its own Redis, when the suite runs over Redis (see [`over_redis`]).
    _redis: Option<redis::RedisServer>,
}

/// `RINGCAST_TEST_REDIS=1`: every server of the suite persists to a Redis of its own (a
/// cluster shares one), so the feature tests run over the durable path too.
pub fn over_redis() -> bool {
    std::env::var_os("RINGCAST_TEST_REDIS").is_some_and(|value| value != "0")
}

impl Server {
    /// A server with default limits, except a rate limit high enough that a test can send
    /// many requests quickly.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// A server with extra `serve` flags. Unless the flags set them, the rate limit is
    /// raised to 10000/s (burst 10000), the node id is [`NODE_ID`] and tokens are checked
    /// with [`SECRET`].
    pub fn start_with(extra: &[&str]) -> Server {
        let mut args: Vec<String> = ["serve", "--listen", "127.0.0.1:0"].iter().map(|s| s.to_string()).collect();
        let has = |flag: &str| extra.iter().any(|arg| *arg == flag || arg.starts_with(&format!("{flag}=")));
        if !has("--jwt-secret") && !has("--jwt-public-key") && !has("--jwt-jwks-url") {
            args.extend(["--jwt-secret".to_string(), SECRET.to_string()]);
        }
        if !has("--rate-per-second") {
            args.extend(["--rate-per-second".to_string(), "10000".to_string()]);
        }
        if !has("--rate-burst") {
            args.extend(["--rate-burst".to_string(), "10000".to_string()]);
        }
        let redis = (over_redis() && !has("--redis-url")).then(redis::RedisServer::start);
        if let Some(redis) = &redis {
            args.extend(["--redis-url".to_string(), redis.url()]);
        }
        if !has("--node-id") {
            args.extend(["--node-id".to_string(), NODE_ID.to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .args(&args)
            .env_remove("RINGCAST_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringcast");
        let stderr_tail = drain_stderr(&mut child);
        let line = match first_stdout_line(&mut child, Duration::from_secs(10)) {
            Some(line) => line,
            None => {
                let _ = child.kill();
                let status = child.wait().ok();
                std::thread::sleep(Duration::from_millis(100));
                let tail = stderr_tail.lock().unwrap().iter().cloned().collect::<Vec<_>>().join("\n");
                panic!(
                    "ringcast did not print its listening line within 10 s (args {args:?}, exit {status:?}); stderr:\n{tail}"
                );
            }
        };
        let addr = line
            .strip_prefix("ringcast listening on ")
            .unwrap_or_else(|| panic!("unexpected first stdout line: {line:?}"))
            .parse()
            .unwrap_or_else(|err| panic!("bad address in {line:?}: {err}"));
        Server { child, addr, exited: None, _redis: redis }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `ws://addr/v1/ws`
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// A WebSocket upgrade request for `path` (e.g. `/v1/ws?token=..`).
    pub fn request(&self, path: &str) -> Request {
        format!("ws://{}{}", self.addr, path).into_client_request().expect("request")
    }

    /// A request carrying `Authorization: Bearer {token}`.
    pub fn bearer_request(&self, token: &str) -> Request {
        let mut request = self.request("/v1/ws");
        request.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        request
    }

    /// A connected, authenticated client of user `sub` in the default tenant.
    pub async fn client(&self, sub: &str) -> Client {
        Client::connect(self, &Token::new(sub).sign()).await
    }

    /// A connected client with the given token.
    pub async fn client_with(&self, token: &str) -> Client {
        Client::connect(self, token).await
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        let status = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(status);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A plain HTTP/1.1 GET against the server.
    pub async fn get(&self, path: &str) -> HttpResponse {
        http_get(self.addr, path).await
    }
}

/// Drains the child's stderr on a thread: echoed when `RINGCAST_TEST_LOG` is set, and its
/// last 40 lines kept, so a node that fails to start says why in the test's panic.
fn drain_stderr(child: &mut Child) -> std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>> {
    let stderr = child.stderr.take().expect("piped stderr");
    let tail = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
    let kept = tail.clone();
    let echo = std::env::var_os("RINGCAST_TEST_LOG").is_some();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if echo {
                eprintln!("{line}");
            }
            let mut kept = kept.lock().unwrap();
            if kept.len() == 40 {
                kept.pop_front();
            }
            kept.push_back(line);
        }
    });
    tail
}

/// The first line the child prints on stdout, within `timeout`. Stdout keeps being drained
/// afterwards so a late println never hits a closed pipe.
pub fn first_stdout_line(child: &mut Child, timeout: Duration) -> Option<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut first = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = first.take() {
                let _ = tx.send(line);
            }
        }
    });
    rx.recv_timeout(timeout).ok()
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `ringcast serve` with each set of bad `flags` exits 64 with one line that names `word`.
pub fn assert_config_errors(cases: &[(Vec<&str>, &str)]) {
    for (flags, word) in cases {
        let mut args = vec!["serve", "--jwt-secret", "s", "--listen", "127.0.0.1:0", "--node-id", "n"];
        args.extend(flags.iter().copied());
        let (code, _, stderr) = run_ringcast(&args);
        assert_eq!(code, Some(64), "{flags:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{flags:?}: one line: {stderr:?}");
        assert!(stderr.starts_with("ringcast: "), "{flags:?}: {stderr:?}");
        assert!(stderr.contains(word), "{flags:?} names {word:?}: {stderr:?}");
    }
}

/// Runs `ringcast` with `args` to completion (killed after 10 s): exit code, stdout, stderr.
pub fn run_ringcast(args: &[&str]) -> (Option<i32>, String, String) {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args(args)
        .env_remove("RINGCAST_CONFIG")
        .env_remove("RINGCAST_JWT_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ringcast");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringcast {args:?} did not exit within 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (status.code(), stdout, stderr)
}

// ---------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------

pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A JWT under construction. Defaults: expires in one hour, no other optional claim.
#[derive(Clone, Debug)]
pub struct Token {
    pub claims: serde_json::Map<String, Value>,
}

impl Token {
    pub fn new(sub: &str) -> Token {
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), json!(sub));
        claims.insert("exp".into(), json!(now_secs() + 3600));
        Token { claims }
    }

    pub fn claim(mut self, name: &str, value: Value) -> Token {
        self.claims.insert(name.into(), value);
        self
    }

    pub fn without(mut self, name: &str) -> Token {
        self.claims.remove(name);
        self
    }

    pub fn tenant(self, tenant: &str) -> Token {
        self.claim("tenant", json!(tenant))
    }

    pub fn name(self, name: &str) -> Token {
        self.claim("name", json!(name))
    }

    pub fn roles(self, roles: &[&str]) -> Token {
        self.claim("roles", json!(roles))
    }

    pub fn groups(self, groups: &[&str]) -> Token {
        self.claim("groups", json!(groups))
    }

    /// `exp` = now + `secs` (negative: in the past).
    pub fn expires_in(self, secs: i64) -> Token {
        self.claim("exp", json!(now_secs() + secs))
    }

    /// `nbf` = now + `secs`.
    pub fn not_before_in(self, secs: i64) -> Token {
        self.claim("nbf", json!(now_secs() + secs))
    }

    /// HS256 with the test servers' secret.
    pub fn sign(&self) -> String {
        self.sign_with(SECRET, jsonwebtoken::Algorithm::HS256)
    }

    pub fn sign_with(&self, secret: &str, algorithm: jsonwebtoken::Algorithm) -> String {
        let header = jsonwebtoken::Header::new(algorithm);
        jsonwebtoken::encode(
            &header,
            &Value::Object(self.claims.clone()),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("sign token")
    }

    /// An unsigned token: header `{"alg":"none","typ":"JWT"}`, empty signature.
    pub fn unsigned(&self) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = b64.encode(serde_json::to_vec(&Value::Object(self.claims.clone())).unwrap());
        format!("{header}.{claims}.")
    }
}

/// Every kind of bad token the server must refuse, with a label for messages.
pub fn bad_tokens() -> Vec<(&'static str, String)> {
    vec![
        ("expired", Token::new("mallory").expires_in(-3600).sign()),
        ("nbf in the future", Token::new("mallory").not_before_in(600).sign()),
        ("wrong secret", Token::new("mallory").sign_with("another-secret", jsonwebtoken::Algorithm::HS256)),
        ("malformed", "abc".to_string()),
        ("three garbage parts", "abc.def.ghi".to_string()),
        ("alg none", Token::new("mallory").unsigned()),
        ("HS512 with the right secret", Token::new("mallory").sign_with(SECRET, jsonwebtoken::Algorithm::HS512)),
        ("no exp", Token::new("mallory").without("exp").sign()),
        ("no sub", Token::new("mallory").without("sub").sign()),
        ("sub with a control character", Token::new("mal\nlory").sign()),
        ("sub over 256 bytes", Token::new(&"x".repeat(257)).sign()),
    ]
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|err| panic!("body is not JSON ({err}): {}", self.body))
    }
}

/// `GET path HTTP/1.1` with `Connection: close`; reads the whole response.
pub async fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    http_raw(addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")).await
}

/// Sends a raw HTTP/1.1 request and reads one response: up to `Content-Length`, the end of
/// a chunked body, or the end of the stream.
pub async fn http_raw(addr: SocketAddr, request: &str) -> HttpResponse {
    let stream = tokio::time::timeout(RECV_TIMEOUT, TcpStream::connect(addr)).await.expect("connect timed out");
    http_over(stream.expect("connect"), request).await
}

/// Like [`http_raw`], over a connected stream (plain or TLS).
pub async fn http_over<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, request: &str) -> HttpResponse {
    let work = async {
        stream.write_all(request.as_bytes()).await.expect("write request");
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            if response_complete(&raw) {
                break;
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
        raw
    };
    let raw = tokio::time::timeout(RECV_TIMEOUT, work).await.expect("HTTP request timed out");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no end of headers in {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    HttpResponse { status, headers, body }
}

/// True once `raw` holds a whole response (headers plus the body they announce).
fn response_complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = &raw[end + 4..];
    if head.starts_with("http/1.1 101") {
        return true;
    }
    if let Some(length) =
        head.lines().find_map(|line| line.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok())
    {
        return body.len() >= length;
    }
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    false
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size, rest)) = body.split_once("\r\n") else { break };
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `check` every 20 ms until it is true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A short wait used to prove that something does *not* arrive.
pub const QUIET: Duration = Duration::from_millis(300);

/// Two clients in `lobby`: the one under test and an observer.
pub async fn pair(server: &Server) -> (Client, Client) {
    let mut client = server.client("alice").await;
    let mut observer = server.client("olivia").await;
    client.join("lobby").await;
    observer.join("lobby").await;
    client.recv_type("member.joined").await;
    (client, observer)
}

/// The observer is unaffected by what happened to the other client.
pub async fn observer_unaffected(server: &Server, observer: &mut Client) {
    observer.ping().await;
    let mut other = server.client("bystander").await;
    other.join("lobby").await;
    other.say("lobby", "life goes on").await;
    let message = observer.recv_message("lobby").await;
    assert_eq!(message["text"], "life goes on");
}

/// Sends `signal` ("-STOP", "-CONT", ...) to process `pid` with `kill`; after `-STOP`,
/// returns once the process is stopped.
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill {signal} {pid}");
    if signal == "-STOP" {
        wait_stopped(pid);
    }
}

/// Waits until every thread of `pid` is stopped: `kill -STOP` returns once the signal is
/// sent, and the threads of a busy process stop one by one after it (one of them may still
/// read a socket meanwhile, which made a frozen node receive a message now and then).
fn wait_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process's threads");
        let all_stopped = tasks.flatten().all(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // The state follows the command name in parentheses: T (stopped) or t (traced).
            let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
            matches!(state, Some('T' | 't'))
        });
        if all_stopped {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} did not stop");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The value of counter or gauge `name` on `server`'s /metrics, summed over its label sets.
pub async fn metric(server: &Server, name: &str) -> u64 {
    let body = server.get("/metrics").await.body;
    body.lines()
        .filter(|line| line.split([' ', '{']).next() == Some(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
