//! The WebSocket client of the tests: send requests, wait for typed frames, closes.

#![allow(unused_imports)]

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::*;

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
        self.reply_within(op_id, RECV_TIMEOUT).await
    }

    /// Like [`Client::reply`], waiting up to `timeout`.
    pub async fn reply_within(&mut self, op_id: &str, timeout: Duration) -> Value {
        self.recv_where(&format!("the reply to {op_id}"), timeout, |v| v["op_id"] == op_id).await
    }

    /// Sends a request and returns the frame that answers it.
    pub async fn request(&mut self, kind: &str, data: Value) -> Value {
        self.request_within(kind, data, RECV_TIMEOUT).await
    }

    /// Like [`Client::request`], waiting up to `timeout` for the answer.
    pub async fn request_within(&mut self, kind: &str, data: Value, timeout: Duration) -> Value {
        let op_id = self.send_request(kind, data).await;
        self.reply_within(&op_id, timeout).await
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

    /// `room.join{room, since}`: the frames that came before its ack, and the ack's data.
    pub async fn join_since(&mut self, room: &str, seq: u64, epoch: &str) -> (Vec<Value>, Value) {
        let op_id = self.send_request("room.join", json!({"room": room, "since": {"seq": seq, "epoch": epoch}})).await;
        let mut before = Vec::new();
        loop {
            let frame = self.recv_json().await;
            if frame["op_id"] == op_id.as_str() {
                assert_eq!(frame["type"], "ack", "join with since: {frame}");
                return (before, frame["data"].clone());
            }
            before.push(frame);
        }
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
        let frame = self
            .recv_where(&format!("a chat.message in {room}"), RECV_TIMEOUT, |v| {
                v["type"] == "chat.message" && v["data"]["room"] == room
            })
            .await;
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
