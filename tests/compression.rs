//! permessage-deflate (RFC 7692) against a real server, with a hand-rolled client that offers
//! the extension, compresses what it sends (keeping its context, as browsers do) and inflates
//! what it receives: negotiation (Autobahn 12.x/13.x shapes of offers), sizes around
//! `--compression-min-bytes`, fragmented compressed messages, a deflate bomb, RSV1 where it is
//! not allowed, corrupt deflate data, and a room message deflated once for all its recipients.

mod common;

use std::time::Duration;

use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OPCODE_CONTINUATION: u8 = 0x0;
const OPCODE_TEXT: u8 = 0x1;
const OPCODE_CLOSE: u8 = 0x8;
const OPCODE_PING: u8 = 0x9;
const RSV1: u8 = 0x40;

/// One frame from the server.
#[derive(Debug)]
struct Frame {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    payload: Vec<u8>,
}

/// A WebSocket client over a plain socket, frames written and read by hand.
struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The `Sec-WebSocket-Extensions` the server answered.
    extensions: Option<String>,
    compressor: Compress,
    /// Frames read but not yet looked at, as whole messages: (compressed, text).
    pending: Vec<(bool, Value)>,
}

impl RawClient {
    /// Upgrades with `offer` as `Sec-WebSocket-Extensions` (none when `None`), authenticated
    /// as `sub`, and waits for `connected`.
    async fn connect(server: &Server, sub: &str, offer: Option<&str>) -> RawClient {
        let mut client = RawClient::upgrade(server, sub, offer).await;
        let connected = client.recv_json().await;
        assert_eq!(connected["type"], "connected", "{connected}");
        client
    }

    async fn upgrade(server: &Server, sub: &str, offer: Option<&str>) -> RawClient {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let token = Token::new(sub).sign();
        let extensions = offer.map(|offer| format!("Sec-WebSocket-Extensions: {offer}\r\n")).unwrap_or_default();
        let request = format!(
            "GET /v1/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Authorization: Bearer {token}\r\n{extensions}\r\n",
            server.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(end) = buf.windows(4).position(|window| window == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(RECV_TIMEOUT, stream.read(&mut chunk)).await.unwrap().unwrap();
            assert!(read > 0, "connection closed during the upgrade");
            buf.extend_from_slice(&chunk[..read]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let extensions = head
            .lines()
            .find_map(|line| {
                line.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-extensions"))
            })
            .map(|(_, value)| value.trim().to_string());
        buf.drain(..head_end);
        RawClient {
            stream,
            buf,
            extensions,
            compressor: Compress::new(Compression::default(), false),
            pending: Vec::new(),
        }
    }

    /// Writes one masked frame; `first` is the first header byte (FIN, RSV bits, opcode).
    async fn send_frame(&mut self, first: u8, payload: &[u8]) {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut frame = vec![first];
        match payload.len() {
            len if len < 126 => frame.push(0x80 | len as u8),
            len if len <= 0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(index, byte)| byte ^ mask[index % 4]));
        // The peer may have closed already: a failed write shows in the next read.
        let _ = self.stream.write_all(&frame).await;
    }

    async fn send_text(&mut self, text: &str) {
        self.send_frame(0x80 | OPCODE_TEXT, text.as_bytes()).await;
    }

    /// Deflates `text` with this client's context (kept across messages), as RFC 7692 says.
    fn deflate(&mut self, text: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() + 64);
        let start = self.compressor.total_in();
        loop {
            let consumed = (self.compressor.total_in() - start) as usize;
            self.compressor.compress_vec(&text[consumed..], &mut out, FlushCompress::Sync).unwrap();
            if (self.compressor.total_in() - start) as usize == text.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity());
        }
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }

    /// Sends `text` compressed, in `fragments` frames (RSV1 on the first only).
    async fn send_compressed(&mut self, text: &str, fragments: usize) {
        let compressed = self.deflate(text.as_bytes());
        let size = compressed.len().div_ceil(fragments).max(1);
        let chunks: Vec<&[u8]> = compressed.chunks(size).collect();
        for (index, chunk) in chunks.iter().enumerate() {
            let mut first = if index == 0 { OPCODE_TEXT | RSV1 } else { OPCODE_CONTINUATION };
            if index + 1 == chunks.len() {
                first |= 0x80;
            }
            self.send_frame(first, chunk).await;
        }
    }

    async fn send_request(&mut self, kind: &str, data: Value, compressed: bool) {
        let text = json!({"type": kind, "op_id": kind, "data": data}).to_string();
        if compressed {
            self.send_compressed(&text, 1).await;
        } else {
            self.send_text(&text).await;
        }
    }

    /// The next frame; `None` when the connection ended.
    async fn recv_frame(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.buf.len() >= 2 {
                let (first, second) = (self.buf[0], self.buf[1]);
                assert_eq!(second & 0x80, 0, "server frames are not masked");
                let (header, len) = match second & 0x7F {
                    126 if self.buf.len() >= 4 => (4, u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize),
                    127 if self.buf.len() >= 10 => {
                        (10, u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize)
                    }
                    126 | 127 => (usize::MAX, 0),
                    len => (2, len as usize),
                };
                if header != usize::MAX && self.buf.len() >= header + len {
                    let payload = self.buf[header..header + len].to_vec();
                    self.buf.drain(..header + len);
                    return Some(Frame {
                        fin: first & 0x80 != 0,
                        rsv1: first & RSV1 != 0,
                        opcode: first & 0x0F,
                        payload,
                    });
                }
            }
            let mut chunk = vec![0u8; 64 * 1024];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => panic!("no frame within {timeout:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(read)) => self.buf.extend_from_slice(&chunk[..read]),
            }
        }
    }

    /// The next whole text message (inflated when it came compressed) and whether it was
    /// compressed; pings are skipped. Panics on a close.
    async fn recv_message(&mut self) -> (bool, Value) {
        if !self.pending.is_empty() {
            return self.pending.remove(0);
        }
        self.read_message().await.unwrap_or_else(|code| panic!("closed with {code:?} instead of a message"))
    }

    async fn read_message(&mut self) -> Result<(bool, Value), Option<u16>> {
        loop {
            let Some(frame) = self.recv_frame(RECV_TIMEOUT).await else { return Err(None) };
            match frame.opcode {
                OPCODE_PING => continue,
                OPCODE_CLOSE => return Err(frame.payload.get(..2).map(|code| u16::from_be_bytes([code[0], code[1]]))),
                OPCODE_TEXT => {
                    assert!(frame.fin, "the server does not fragment");
                    let text = if frame.rsv1 { inflate(&frame.payload) } else { frame.payload };
                    return Ok((frame.rsv1, serde_json::from_slice(&text).unwrap()));
                }
                other => panic!("unexpected opcode {other}"),
            }
        }
    }

    async fn recv_json(&mut self) -> Value {
        self.recv_message().await.1
    }

    /// The next message of type `kind` (others are kept for later).
    async fn recv_type(&mut self, kind: &str) -> (bool, Value) {
        if let Some(index) = self.pending.iter().position(|(_, frame)| frame["type"] == kind) {
            return self.pending.remove(index);
        }
        loop {
            let message =
                self.read_message().await.unwrap_or_else(|code| panic!("closed with {code:?} waiting for {kind}"));
            if message.1["type"] == kind {
                return message;
            }
            self.pending.push(message);
        }
    }

    async fn join(&mut self, room: &str) {
        self.send_request("room.join", json!({"room": room}), false).await;
        let (_, ack) = self.recv_type("ack").await;
        assert_eq!(ack["data"]["status"], "joined", "{ack}");
    }

    /// The close code the server ends the connection with (frames before it are skipped).
    async fn expect_close(&mut self) -> Option<u16> {
        loop {
            match self.read_message().await {
                Ok(_) => continue,
                Err(code) => return code,
            }
        }
    }
}

/// A server message: each stands alone (`server_no_context_takeover`).
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut decompress = Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(input.len() * 8 + 1024);
    loop {
        let consumed = decompress.total_in() as usize;
        decompress.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync).expect("valid deflate data");
        if decompress.total_in() as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity());
    }
}

fn compression_server(extra: &[&str]) -> Server {
    let mut args = vec!["--compression", "on"];
    args.extend_from_slice(extra);
    Server::start_with(&args)
}

/// Text that deflates well, `len` bytes.
fn compressible(len: usize) -> String {
    "the quick brown fox jumps over the lazy dog ".repeat(len / 44 + 1)[..len].to_string()
}

/// A client and an observer (tungstenite, no extension) in `lobby`.
async fn with_observer(server: &Server) -> Client {
    let mut observer = server.client("olivia").await;
    observer.join("lobby").await;
    observer
}

#[tokio::test]
async fn test_negotiation_of_offers() {
    let server = compression_server(&[]);
    let plain = "permessage-deflate; server_no_context_takeover";
    let cases: Vec<(String, Option<String>)> = vec![
        ("permessage-deflate".into(), Some(plain.into())),
        ("permessage-deflate; client_max_window_bits".into(), Some(plain.into())),
        ("permessage-deflate; client_max_window_bits=10".into(), Some(plain.into())),
        ("permessage-deflate; client_max_window_bits=\"12\"".into(), Some(plain.into())),
        ("permessage-deflate; server_no_context_takeover".into(), Some(plain.into())),
        ("permessage-deflate; client_no_context_takeover".into(), Some(format!("{plain}; client_no_context_takeover"))),
        ("permessage-deflate; server_max_window_bits=15".into(), Some(plain.into())),
        ("permessage-deflate; unknown_param".into(), None),
        ("permessage-deflate; server_max_window_bits".into(), None),
        ("permessage-deflate; server_max_window_bits=16".into(), None),
        ("permessage-deflate; client_max_window_bits=7".into(), None),
        ("x-webkit-deflate-frame".into(), None),
        (
            "permessage-deflate; x=1, permessage-deflate; server_max_window_bits=10, permessage-deflate".into(),
            Some(format!("{plain}; server_max_window_bits=10")),
        ),
    ];
    let mut cases = cases;
    for bits in 8..15 {
        cases.push((
            format!("permessage-deflate; server_max_window_bits={bits}; client_max_window_bits"),
            Some(format!("{plain}; server_max_window_bits={bits}")),
        ));
    }
    for (offer, expected) in cases {
        let mut client = RawClient::connect(&server, "alice", Some(&offer)).await;
        assert_eq!(client.extensions, expected, "offer {offer:?}");
        // Negotiated or not, the connection works.
        client.join("lobby").await;
        client.send_request("presence.ping", json!({}), expected.is_some()).await;
        client.recv_type("presence.pong").await;
    }
    let off = Server::start();
    let client = RawClient::connect(&off, "alice", Some("permessage-deflate")).await;
    assert_eq!(client.extensions, None, "--compression off accepts no offer");
}

#[tokio::test]
async fn test_sizes_around_min_bytes_and_window_bits() {
    let server = compression_server(&["--compression-min-bytes", "300"]);
    let mut sender = RawClient::connect(&server, "alice", Some("permessage-deflate")).await;
    let mut receiver = RawClient::connect(&server, "bob", Some("permessage-deflate; client_max_window_bits")).await;
    let mut small_window =
        RawClient::connect(&server, "carol", Some("permessage-deflate; server_max_window_bits=9")).await;
    let mut plain = RawClient::connect(&server, "dave", None).await;
    for client in [&mut sender, &mut receiver, &mut small_window, &mut plain] {
        client.join("lobby").await;
    }
    for len in [0, 1, 100, 150, 170, 200, 250, 299, 300, 301, 512, 1000, 4096, 65_535, 65_536, 200_000] {
        let text = compressible(len);
        sender.send_request("chat.send", json!({"room": "lobby", "text": text}), len % 2 == 0).await;
        let (_, ack) = sender.recv_type("ack").await;
        assert!(ack["data"]["seq"].is_u64(), "{ack}");
        let frame_len = |message: &Value| message.to_string().len();
        let (compressed, message) = receiver.recv_type("chat.message").await;
        assert_eq!(message["data"]["text"], text.as_str());
        // The rendered frame's length decides (a few bytes either side of the JSON text
        // serde_json gives back are fine: the server's frame is compact JSON too).
        let rendered = frame_len(&message);
        if rendered < 290 {
            assert!(!compressed, "{rendered} bytes under the minimum went compressed");
        } else if rendered > 310 {
            assert!(compressed, "{rendered} bytes over the minimum went uncompressed");
        }
        let (compressed, message) = small_window.recv_type("chat.message").await;
        assert_eq!(message["data"]["text"], text.as_str());
        if rendered > 520 {
            assert!(!compressed, "{rendered} bytes compressed for a 512-byte window");
        } else if rendered > 310 {
            assert!(compressed, "{rendered} bytes fit a 512-byte window");
        }
        let (compressed, message) = plain.recv_type("chat.message").await;
        assert!(!compressed);
        assert_eq!(message["data"]["text"], text.as_str());
    }
}

#[tokio::test]
async fn test_fragmented_and_context_sharing_client_messages() {
    let server = compression_server(&[]);
    let mut observer = with_observer(&server).await;
    let mut sender = RawClient::connect(&server, "alice", Some("permessage-deflate")).await;
    sender.join("lobby").await;
    for (index, fragments) in [1, 2, 3, 7, 1, 1].into_iter().enumerate() {
        // The same text again and again: later messages refer back into earlier ones.
        let text = format!("{} #{index}", compressible(600));
        sender.send_request("chat.send", json!({"room": "lobby", "text": text}), false).await;
        sender.recv_type("ack").await;
        let request = json!({"type": "chat.send", "op_id": "f", "data": {"room": "lobby", "text": text}}).to_string();
        sender.send_compressed(&request, fragments).await;
        sender.recv_type("ack").await;
        for _ in 0..2 {
            assert_eq!(observer.recv_message("lobby").await["text"], text.as_str(), "{fragments} fragments");
        }
    }
    assert!(metric(&server, "ringcast_frames_inflated_total").await >= 6);
    // An uncompressed fragmented message in between is fine too.
    let request = json!({"type": "chat.send", "op_id": "u", "data": {"room": "lobby", "text": "plain"}}).to_string();
    let (head, tail) = request.as_bytes().split_at(10);
    sender.send_frame(OPCODE_TEXT, head).await;
    sender.send_frame(0x80 | OPCODE_CONTINUATION, tail).await;
    assert_eq!(observer.recv_message("lobby").await["text"], "plain");
}

#[tokio::test]
async fn test_deflate_bomb_closes_1009() {
    let server = compression_server(&["--max-message-bytes", "65536"]);
    let mut observer = with_observer(&server).await;
    let mut client = RawClient::connect(&server, "alice", Some("permessage-deflate")).await;
    let zeros = "0".repeat(8 << 20);
    let bomb = client.deflate(zeros.as_bytes());
    assert!(bomb.len() < 65536, "the bomb itself passes the frame limit: {}", bomb.len());
    client.send_frame(0x80 | OPCODE_TEXT | RSV1, &bomb).await;
    assert_eq!(client.expect_close().await, Some(1009));
    // Just under the limit inflates fine.
    let mut client = RawClient::connect(&server, "alice", Some("permessage-deflate")).await;
    client.join("lobby").await;
    let request = json!({"type": "chat.send", "op_id": "b", "data": {"room": "lobby", "text": "0".repeat(60_000)}});
    client.send_compressed(&request.to_string(), 3).await;
    client.recv_type("ack").await;
    assert_eq!(observer.recv_message("lobby").await["text"].as_str().unwrap().len(), 60_000);
    observer_unaffected(&server, &mut observer).await;
}

#[tokio::test]
async fn test_rsv1_where_not_allowed_closes_1002() {
    let server = compression_server(&[]);
    let mut observer = with_observer(&server).await;
    // Not negotiated.
    let mut client = RawClient::connect(&server, "alice", None).await;
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    client.send_frame(0x80 | OPCODE_TEXT | RSV1, &hello).await;
    assert_eq!(client.expect_close().await, Some(1002));
    // Negotiated, but on a continuation frame.
    let mut client = RawClient::connect(&server, "alice", Some("permessage-deflate")).await;
    client.send_frame(OPCODE_TEXT, b"{\"type\":").await;
    client.send_frame(0x80 | RSV1 | OPCODE_CONTINUATION, &hello).await;
    assert_eq!(client.expect_close().await, Some(1002));
    // Negotiated, but on a ping.
    let mut client = RawClient::connect(&server, "alice", Some("permessage-deflate")).await;
    client.send_frame(0x80 | RSV1 | OPCODE_PING, b"").await;
    assert_eq!(client.expect_close().await, Some(1002));
    // RSV2 is never allowed.
    let mut client = RawClient::connect(&server, "alice", Some("permessage-deflate")).await;
    client.send_frame(0x80 | 0x20 | OPCODE_TEXT, b"{}").await;
    assert_eq!(client.expect_close().await, Some(1002));
    observer_unaffected(&server, &mut observer).await;
}

#[tokio::test]
async fn test_corrupt_deflate_data_and_invalid_utf8_close_1007() {
    let server = compression_server(&[]);
    let mut observer = with_observer(&server).await;
    let mut client = RawClient::connect(&server, "alice", Some("permessage-deflate")).await;
    client.send_frame(0x80 | OPCODE_TEXT | RSV1, &[0xff, 0xff, 0xff, 0x00, 0x12]).await;
    assert_eq!(client.expect_close().await, Some(1007));
    // A back-reference before the start of the stream.
    let mut client = RawClient::connect(&server, "alice", Some("permessage-deflate")).await;
    client.send_frame(0x80 | OPCODE_TEXT | RSV1, &[0xf2, 0x00, 0x11, 0x00, 0x00]).await;
    assert_eq!(client.expect_close().await, Some(1007));
    // Valid deflate data that inflates to invalid UTF-8: like an uncompressed text frame.
    let mut client = RawClient::connect(&server, "alice", Some("permessage-deflate")).await;
    let bad = client.deflate(&[b'{', 0xff, 0xfe, b'}']);
    client.send_frame(0x80 | OPCODE_TEXT | RSV1, &bad).await;
    assert_eq!(client.expect_close().await, Some(1007));
    observer_unaffected(&server, &mut observer).await;
}

#[tokio::test]
async fn test_room_message_is_compressed_once_for_every_subscriber() {
    let server = compression_server(&[]);
    let mut compressing = Vec::new();
    for index in 0..5 {
        let mut client = RawClient::connect(&server, &format!("user{index}"), Some("permessage-deflate")).await;
        client.join("lobby").await;
        compressing.push(client);
    }
    let mut plain = RawClient::connect(&server, "plain", None).await;
    plain.join("lobby").await;
    let mut tungstenite = server.client("tung").await;
    tungstenite.join("lobby").await;
    let mut sender = server.client("sender").await;
    sender.join("lobby").await;
    // Let the joins' member.joined frames (small: never compressed) settle.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = metric(&server, "ringcast_frames_compressed_total").await;
    let (in_before, out_before) = (
        metric(&server, "ringcast_compression_in_bytes_total").await,
        metric(&server, "ringcast_compression_out_bytes_total").await,
    );
    let text = format!("{} {}", compressible(900), "a ~1 KiB chat message");
    sender.say("lobby", &text).await;
    let mut payloads = Vec::new();
    for client in &mut compressing {
        let (compressed, message) = client.recv_type("chat.message").await;
        assert!(compressed);
        assert_eq!(message["data"]["text"], text.as_str());
        payloads.push(message);
    }
    let (compressed, message) = plain.recv_type("chat.message").await;
    assert!(!compressed);
    assert_eq!(message["data"]["text"], text.as_str());
    assert_eq!(tungstenite.recv_message("lobby").await["text"], text.as_str());
    assert!(payloads.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(metric(&server, "ringcast_frames_compressed_total").await - before, 1, "one deflate for 5 recipients");
    let saved_in = metric(&server, "ringcast_compression_in_bytes_total").await - in_before;
    let saved_out = metric(&server, "ringcast_compression_out_bytes_total").await - out_before;
    assert!(saved_in > 900 && saved_out < saved_in / 3, "{saved_in} bytes deflated into {saved_out}");
}

#[tokio::test]
async fn test_admin_broadcast_is_compressed_once() {
    let server = compression_server(&["--admin-key", common::admin::ADMIN_KEY]);
    let mut clients = Vec::new();
    for index in 0..4 {
        clients.push(RawClient::connect(&server, &format!("user{index}"), Some("permessage-deflate")).await);
    }
    let mut plain = RawClient::connect(&server, "plain", None).await;
    let before = metric(&server, "ringcast_frames_compressed_total").await;
    let text = compressible(2000);
    let notice = json!({"type": "system.notice", "data": {"text": text}});
    let sent = common::admin::admin(&server, "POST", "/v1/broadcast", Some(notice)).await;
    assert_eq!(sent["delivered"], 5, "{sent}");
    for client in &mut clients {
        let (compressed, frame) = client.recv_type("system.notice").await;
        assert!(compressed);
        assert_eq!(frame["data"]["text"], text.as_str());
    }
    let (compressed, frame) = plain.recv_type("system.notice").await;
    assert!(!compressed);
    assert_eq!(frame["data"]["text"], text.as_str());
    assert_eq!(metric(&server, "ringcast_frames_compressed_total").await - before, 1);
}

#[tokio::test]
async fn test_large_replies_to_one_connection_are_compressed() {
    let server = compression_server(&[]);
    let mut client = RawClient::connect(&server, "alice", Some("permessage-deflate")).await;
    client.join("lobby").await;
    for index in 0..5 {
        client.send_request("chat.send", json!({"room": "lobby", "text": compressible(200 + index)}), true).await;
        let (compressed, _) = client.recv_type("ack").await;
        assert!(!compressed, "a short ack is not compressed");
    }
    client.send_request("room.history", json!({"room": "lobby"}), true).await;
    let (compressed, history) = client.recv_type("ack").await;
    assert!(compressed, "a history of 5 messages is over the minimum");
    assert_eq!(history["data"]["messages"].as_array().unwrap().len(), 5);
}

#[test]
fn test_bad_compression_flags_exit_64() {
    assert_config_errors(&[
        (vec!["--compression", "yes"], "--compression"),
        (vec!["--compression", "ON"], "off or on"),
    ]);
    // The environment twin, too.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args(["serve", "--jwt-secret", "s", "--listen", "127.0.0.1:0", "--node-id", "n"])
        .env_remove("RINGCAST_CONFIG")
        .env("RINGCAST_COMPRESSION", "maybe")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert_eq!(String::from_utf8_lossy(&output.stderr).trim(), r#"ringcast: --compression "maybe" must be off or on"#);
}
