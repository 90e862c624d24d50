//! Shared helpers of the integration tests: a real `ringcast` process per test, token
//! minting, a small WebSocket client, and a plain HTTP/1.1 GET.
//!
//! Every test starts its own server on an ephemeral port, so tests run in parallel. The
//! server is killed (SIGKILL) when its [`Server`] is dropped.

#![allow(dead_code)]

pub mod cluster;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

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
}

impl Server {
    /// A server with default limits, except a rate limit high enough that a test can send
    /// many requests quickly.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// A server with extra `serve` flags. Unless the flags set them, the rate limit is
    /// raised to 10000/s (burst 10000) and the node id is [`NODE_ID`].
    pub fn start_with(extra: &[&str]) -> Server {
        let mut args: Vec<String> =
            ["serve", "--listen", "127.0.0.1:0", "--jwt-secret", SECRET].iter().map(|s| s.to_string()).collect();
        let has = |flag: &str| extra.iter().any(|arg| *arg == flag || arg.starts_with(&format!("{flag}=")));
        if !has("--rate-per-second") {
            args.extend(["--rate-per-second".to_string(), "10000".to_string()]);
        }
        if !has("--rate-burst") {
            args.extend(["--rate-burst".to_string(), "10000".to_string()]);
        }
        if !has("--node-id") {
            args.extend(["--node-id".to_string(), NODE_ID.to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let stderr = if std::env::var_os("RINGCAST_TEST_LOG").is_some() { Stdio::inherit() } else { Stdio::null() };
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .args(&args)
            .env_remove("RINGCAST_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn ringcast");
        let line = match first_stdout_line(&mut child, Duration::from_secs(10)) {
            Some(line) => line,
            None => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!("ringcast did not print its listening line within 10 s (args {args:?}, exit {status:?})");
            }
        };
        let addr = line
            .strip_prefix("ringcast listening on ")
            .unwrap_or_else(|| panic!("unexpected first stdout line: {line:?}"))
            .parse()
            .unwrap_or_else(|err| panic!("bad address in {line:?}: {err}"));
        Server { child, addr, exited: None }
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
        jsonwebtoken::encode(&header, &Value::Object(self.claims.clone()), &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()))
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
        ("sub with a space", Token::new("mal lory").sign()),
    ]
}

// ---------------------------------------------------------------------------------------
// WebSocket client
// ---------------------------------------------------------------------------------------

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the next read from a socket gave.
#[derive(Debug)]
pub enum Event {
    Json(Value),
    /// A close frame with its code (`None`: a close frame without a code).
    Closed(Option<u16>),
    /// The stream ended without a close frame (EOF, reset, protocol error).
    Ended(String),
    Timeout,
}

/// Performs the upgrade; the HTTP status of a refused upgrade is in the error.
pub async fn open(request: Request) -> Result<Ws, tungstenite::Error> {
    tokio::time::timeout(RECV_TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .expect("websocket handshake timed out")
        .map(|(ws, _response)| ws)
}

/// The HTTP status of an upgrade attempt: 101 when it succeeded.
pub async fn upgrade_status(request: Request) -> u16 {
    match open(request).await {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("upgrade failed without an HTTP status: {other}"),
    }
}

/// A test client: JSON in and out, with frames skipped by `recv_type` and friends kept for
/// later reads.
pub struct Client {
    pub ws: Ws,
    /// Frames read but not yet handed to the test.
    pending: VecDeque<Value>,
    next_op: u64,
    /// The `connected` frame (Null until authenticated).
    pub connected: Value,
    /// WebSocket pings received from the server.
    pub pings_seen: usize,
}

impl Client {
    /// Connects with `Authorization: Bearer` and waits for `connected`.
    pub async fn connect(server: &Server, token: &str) -> Client {
        let ws = open(server.bearer_request(token)).await.unwrap_or_else(|err| panic!("connect failed: {err}"));
        let mut client = Client::from_ws(ws);
        client.expect_connected().await;
        client
    }

    /// Connects with any request and waits for `connected`.
    pub async fn connect_request(request: Request) -> Client {
        let ws = open(request).await.unwrap_or_else(|err| panic!("connect failed: {err}"));
        let mut client = Client::from_ws(ws);
        client.expect_connected().await;
        client
    }

    /// Connects without a token: the first frame must be `auth`.
    pub async fn connect_anonymous(server: &Server) -> Client {
        let ws = open(server.request("/v1/ws")).await.unwrap_or_else(|err| panic!("connect failed: {err}"));
        Client::from_ws(ws)
    }

    pub fn from_ws(ws: Ws) -> Client {
        Client { ws, pending: VecDeque::new(), next_op: 0, connected: Value::Null, pings_seen: 0 }
    }

    /// Reads the `connected` frame and checks its shape.
    pub async fn expect_connected(&mut self) -> Value {
        let frame = self.recv_json().await;
        assert_eq!(frame["type"], "connected", "first frame after auth must be connected, got {frame}");
        let data = &frame["data"];
        for field in ["conn_id", "node_id", "user_id", "tenant", "server_time"] {
            assert!(data[field].is_string(), "connected.{field} must be a string: {frame}");
        }
        assert!(data["ping_interval_ms"].is_u64(), "connected.ping_interval_ms must be an integer: {frame}");
        assert_ts(data["server_time"].as_str().unwrap());
        self.connected = data.clone();
        data.clone()
    }

    pub fn user_id(&self) -> &str {
        self.connected["user_id"].as_str().unwrap_or("")
    }

    pub fn next_op_id(&mut self) -> String {
        self.next_op += 1;
        format!("op-{}", self.next_op)
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap_or_else(|err| panic!("send failed: {err}"));
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.unwrap_or_else(|err| panic!("send failed: {err}"));
    }

    /// Sends a message as several frames: the first with `opcode`, the rest continuations.
    pub async fn send_fragments(&mut self, parts: &[&[u8]], binary: bool) {
        let first = if binary { Data::Binary } else { Data::Text };
        for (index, part) in parts.iter().enumerate() {
            let opcode = if index == 0 { OpCode::Data(first) } else { OpCode::Data(Data::Continue) };
            let frame = Frame::message(part.to_vec(), opcode, index + 1 == parts.len());
            self.ws.feed(Message::Frame(frame)).await.unwrap_or_else(|err| panic!("send failed: {err}"));
        }
        self.ws.flush().await.unwrap_or_else(|err| panic!("flush failed: {err}"));
    }

    /// Sends `{type, op_id, data}` with a fresh op_id; returns the op_id.
    pub async fn send_request(&mut self, kind: &str, data: Value) -> String {
        let op_id = self.next_op_id();
        self.send_json(&json!({"type": kind, "op_id": op_id, "data": data})).await;
        op_id
    }

    /// Reads the next event straight from the socket (pending frames are not looked at).
    /// Pings and pongs are skipped (tungstenite answers pings when reading).
    pub async fn next_event(&mut self, timeout: Duration) -> Event {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Event::Timeout,
                Ok(next) => next,
            };
            match next {
                None => return Event::Ended("stream ended".into()),
                Some(Err(err)) => return Event::Ended(err.to_string()),
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(text.as_str())
                        .unwrap_or_else(|err| panic!("server sent a text frame that is not JSON ({err}): {text}"));
                    return Event::Json(value);
                }
                Some(Ok(Message::Binary(bytes))) => panic!("server sent a binary frame of {} bytes", bytes.len()),
                Some(Ok(Message::Ping(_))) => self.pings_seen += 1,
                Some(Ok(Message::Pong(_))) | Some(Ok(Message::Frame(_))) => {}
                Some(Ok(Message::Close(frame))) => return Event::Closed(frame.map(|frame| u16::from(frame.code))),
            }
        }
    }

    /// The next JSON frame (pending first), within [`RECV_TIMEOUT`].
    pub async fn recv_json(&mut self) -> Value {
        if let Some(frame) = self.pending.pop_front() {
            return frame;
        }
        match self.next_event(RECV_TIMEOUT).await {
            Event::Json(value) => value,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The first frame matching `pred`, from pending frames or the socket; frames skipped
    /// on the way stay pending. Panics with the skipped frames when none comes in time.
    pub async fn recv_where(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(index) = self.pending.iter().position(&pred) {
            return self.pending.remove(index).unwrap();
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Event::Json(value) if pred(&value) => return value,
                Event::Json(value) => self.pending.push_back(value),
                other => panic!(
                    "waited for {what}, got {other:?}; frames skipped meanwhile: {}",
                    self.pending.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n  ")
                ),
            }
        }
    }

    /// The first frame of type `kind` (pings skipped, other frames kept pending).
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        self.recv_where(&format!("a {kind} frame"), RECV_TIMEOUT, |v| v["type"] == kind).await
    }

    /// The frame answering `op_id` (ack, error, or a typed reply such as presence.pong).
    pub async fn reply(&mut self, op_id: &str) -> Value {
        self.recv_where(&format!("the reply to {op_id}"), RECV_TIMEOUT, |v| v["op_id"] == op_id).await
    }

    /// Sends a request and returns the frame that answers it.
    pub async fn request(&mut self, kind: &str, data: Value) -> Value {
        let op_id = self.send_request(kind, data).await;
        self.reply(&op_id).await
    }

    /// Sends a request that must be acked; returns the ack's data.
    pub async fn ack(&mut self, kind: &str, data: Value) -> Value {
        let reply = self.request(kind, data.clone()).await;
        assert_eq!(reply["type"], "ack", "{kind} {data} should be acked, got {reply}");
        reply["data"].clone()
    }

    /// Sends a request that must fail; returns the error code.
    pub async fn error(&mut self, kind: &str, data: Value) -> String {
        let reply = self.request(kind, data.clone()).await;
        assert_eq!(reply["type"], "error", "{kind} {data} should fail, got {reply}");
        assert!(reply["data"]["message"].is_string(), "error without message: {reply}");
        reply["data"]["code"].as_str().expect("error code").to_string()
    }

    /// The next `error` frame, returning (code, op_id).
    pub async fn recv_error(&mut self) -> (String, Value) {
        let frame = self.recv_type("error").await;
        (frame["data"]["code"].as_str().unwrap_or("").to_string(), frame["op_id"].clone())
    }

    pub async fn join(&mut self, room: &str) -> Value {
        let data = self.ack("room.join", json!({"room": room})).await;
        assert_eq!(data["room"], room, "join ack names the room: {data}");
        assert_eq!(data["status"], "joined", "join ack status: {data}");
        data
    }

    pub async fn leave(&mut self, room: &str) -> Value {
        let data = self.ack("room.leave", json!({"room": room})).await;
        assert_eq!(data["status"], "left", "leave ack status: {data}");
        data
    }

    /// Sends a chat message and returns its ack data (`room, id, seq, ts`).
    pub async fn say(&mut self, room: &str, text: &str) -> Value {
        self.ack("chat.send", json!({"room": room, "text": text})).await
    }

    /// presence.ping → presence.pong with the ping's op_id: the connection still works.
    pub async fn ping(&mut self) {
        let op_id = self.send_request("presence.ping", json!({})).await;
        let pong = self.reply(&op_id).await;
        assert_eq!(pong["type"], "presence.pong", "presence.ping answered with {pong}");
        assert_ts(pong["data"]["timestamp"].as_str().unwrap_or_else(|| panic!("pong without timestamp: {pong}")));
    }

    /// The next `chat.message` of `room`.
    pub async fn recv_message(&mut self, room: &str) -> Value {
        let room = room.to_string();
        let frame =
            self.recv_where(&format!("a chat.message in {room}"), RECV_TIMEOUT, |v| v["type"] == "chat.message" && v["data"]["room"] == room).await;
        frame["data"].clone()
    }

    /// Reads until the server closes; the close code, or `None` when the stream ended
    /// without a close frame. Data frames on the way are dropped.
    pub async fn expect_close(&mut self) -> Option<u16> {
        self.expect_close_within(RECV_TIMEOUT).await
    }

    pub async fn expect_close_within(&mut self, timeout: Duration) -> Option<u16> {
        self.pending.clear();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Event::Json(_) => continue,
                Event::Closed(code) => {
                    // Let tungstenite send its close reply.
                    let _ = tokio::time::timeout(Duration::from_millis(200), self.ws.next()).await;
                    return code;
                }
                Event::Ended(_) => return None,
                Event::Timeout => panic!("connection not closed within {timeout:?}"),
            }
        }
    }

    /// Like [`expect_close`], keeping the frames that came before the close.
    pub async fn frames_until_close(&mut self, timeout: Duration) -> (Vec<Value>, Option<u16>) {
        let mut frames: Vec<Value> = self.pending.drain(..).collect();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Event::Json(value) => frames.push(value),
                Event::Closed(code) => return (frames, code),
                Event::Ended(_) => return (frames, None),
                Event::Timeout => panic!("connection not closed within {timeout:?}; frames: {frames:?}"),
            }
        }
    }

    /// Asserts that no frame is pending and none arrives within `duration`.
    pub async fn expect_no_frame(&mut self, duration: Duration) {
        assert!(self.pending.is_empty(), "unexpected frames: {:?}", self.pending);
        match self.next_event(duration).await {
            Event::Timeout => {}
            other => panic!("expected no frame within {duration:?}, got {other:?}"),
        }
    }

    /// Frames read but not consumed yet.
    pub fn take_pending(&mut self) -> Vec<Value> {
        self.pending.drain(..).collect()
    }
}

/// Asserts RFC 3339 UTC with milliseconds: `2026-11-22T02:06:29.123Z`.
pub fn assert_ts(ts: &str) {
    let bytes = ts.as_bytes();
    let ok = bytes.len() == 24
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && bytes[19] == b'.'
        && bytes[23] == b'Z'
        && bytes.iter().enumerate().all(|(i, b)| [4, 7, 10, 13, 16, 19, 23].contains(&i) || b.is_ascii_digit());
    assert!(ok, "not an RFC 3339 UTC timestamp with milliseconds: {ts:?}");
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
    let work = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
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
    let status = status_line.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("bad status line {status_line:?}"));
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
    if let Some(length) = head.lines().find_map(|line| line.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok()) {
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
