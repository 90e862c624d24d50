//! One client connection, from the completed upgrade to its end, on a single task.
//!
//! The task waits on one `select!` over: the socket readable, the socket writable (while
//! frames wait), the outbox (new frames or a close), identity changes, one timer (pings, idle,
//! token expiry, auth, closing), and the node-wide close. Every branch is cancel-safe:
//! reading is `readable()` + `try_read_buf`, writing is `writable()` + `try_write_vectored`.
//!
//! Memory: an idle connection holds no read buffer. Bytes are read into a buffer made when
//! they arrive; once every whole frame is taken out of it, the buffer is dropped. Frames are
//! decoded in place (`wsframe.rs`), each text message parsed once with simd-json on its own
//! bytes, and the resulting operation handed to its owner (`Owners::route`).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use fastwebsockets::upgrade::UpgradeFut;
use tokio::io::Interest;

use super::conn::{Conn, Outgoing};
use super::deflate::{DeflateOut, InflateError, Inflater, Negotiated};
use super::ratelimit::{RateLimiter, RateVerdict};
use super::transport::Transport;
use super::writer::WriteQueue;
use super::wsframe::{self, ClientFrame, FrameError};
use super::Edge;
use crate::auth::{now_secs, AuthError, Identity};
use crate::close::Disconnect;
use crate::frames;
use crate::metrics;
use crate::ops::{OwnerOp, PresenceOp, RequestKind};
use crate::protocol::{self, ErrorCode, ReplyError, Request};
use crate::room::RoomKey;
use crate::webhook::EventType;

use super::admission::{ask_connect_hook, connection_event, welcome};
use super::dispatch::{apply_group_changes, request_type};

/// How long a closing connection may take to write its last frames and the close frame.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes read per syscall at most; a buffer grows by this much when it runs out of room.
const READ_CHUNK: usize = 4096;
/// Reads per wakeup before other connections get their turn.
const READS_PER_WAKEUP: usize = 16;
/// Marks a fragmented message being reassembled as compressed (beside its opcode).
const COMPRESSED: u8 = 0x40;

/// Runs a connection from the upgrade to its end.
///
/// `identity` is the token's identity when the upgrade request carried one; otherwise the
/// first frame must be `auth`. `deflate`: what the upgrade negotiated of permessage-deflate.
pub async fn run(
    edge: Arc<Edge>,
    conn: Arc<Conn>,
    upgrade: UpgradeFut,
    identity: Option<Box<Identity>>,
    deflate: Option<Negotiated>,
) {
    let (transport, initial) = match upgrade.await {
        // The socket itself (and its TLS state), with any bytes the client sent right behind
        // the handshake.
        Ok(websocket) => match Transport::from_upgraded(websocket.into_inner().into_inner()) {
            Some(pair) => pair,
            None => return tracing::error!("upgraded connection is not a tcp stream"),
        },
        Err(err) => return tracing::debug!(error = %err, "upgrade did not complete"),
    };
    conn.touch();
    edge.hub.register(conn.clone());
    metrics::connection_opened();
    let mut session = Session {
        edge: edge.clone(),
        conn: conn.clone(),
        rate: RateLimiter::new(&edge.limits),
        fragments: None,
        pending_auth: None,
        deflate,
        inflater: Inflater::default(),
    };
    if let Some(identity) = identity {
        session.authenticated(*identity, None);
    }
    if edge.close_all.is_cancelled() {
        // Registered after the shutdown closed everyone: close now.
        conn.outbox.close(edge.shutdown_disconnect);
    }
    let deflate_out = deflate.map(|negotiated| DeflateOut::new(&negotiated, edge.compression.min_bytes));
    let mut io = Io { transport, read_buf: BytesMut::new(), queue: WriteQueue::new(deflate_out) };
    if !initial.is_empty() {
        io.read_buf.extend_from_slice(&initial);
    }
    // `initial` may be a slice of hyper's whole read buffer: let it go now, not at the end.
    drop(initial);
    let ended = session.drive(&mut io).await;
    if let Some(disconnect) = ended {
        metrics::disconnect(disconnect.code);
    }
    if let Some(identity) = conn.identity() {
        let (code, reason) = ended.map_or((1006, "connection lost"), |disconnect| (disconnect.code, disconnect.reason));
        connection_event(
            &edge,
            &conn,
            &identity,
            EventType::ConnectionClosed,
            &[("code", code.into()), ("reason", reason.into())],
        );
    }
    drop(io);
    for room in edge.hub.unregister(&conn) {
        if let Some(identity) = conn.identity() {
            let sender = edge.sender(&conn, &identity);
            let _ = edge.owners.route(OwnerOp::request(room, sender, None, RequestKind::Leave));
        }
    }
    let subscriptions = conn.take_presence_subscriptions();
    if let Some(identity) = conn.identity() {
        for user in subscriptions {
            let room = RoomKey::user(&identity.tenant, &user);
            let sender = edge.sender(&conn, &identity);
            let _ =
                edge.owners.route(OwnerOp::request(room, sender, None, RequestKind::Presence(PresenceOp::Unsubscribe)));
        }
    }
    metrics::connection_closed();
}

/// The socket and the two buffers of a connection.
struct Io {
    transport: Transport,
    /// Empty (no allocation) while no partial frame is pending.
    read_buf: BytesMut,
    queue: WriteQueue,
}

/// What a read did.
enum ReadOutcome {
    Continue,
    /// The peer closed or reset the connection: nothing more can be written.
    PeerGone,
    /// The connection must close with this code (after what is queued).
    Close(Disconnect),
}

pub(super) struct Session {
    pub(super) edge: Arc<Edge>,
    pub(super) conn: Arc<Conn>,
    rate: RateLimiter,
    /// A fragmented message being reassembled: its opcode and bytes so far (boxed: most
    /// connections never fragment, and this keeps idle ones small).
    fragments: Option<Box<(u8, BytesMut)>>,
    /// An in-band `auth` whose `kid` the JWKS did not know, checked again once the set was
    /// fetched (boxed: rare).
    pending_auth: Option<Box<PendingAuth>>,
    /// What the upgrade negotiated of permessage-deflate (`None`: RSV1 is a protocol error).
    deflate: Option<Negotiated>,
    /// The inflate context of compressed client messages, made by the first one.
    inflater: Inflater,
}

/// An in-band `auth` waiting for a fetch of the JWKS.
struct PendingAuth {
    token: String,
    op_id: Option<String>,
    /// Set (and the connection woken) when the fetch is over, whatever its result.
    fetched: Arc<std::sync::atomic::AtomicBool>,
}

impl Session {
    /// The connection's event loop; returns the close it ended with (`None`: the peer left).
    async fn drive(&mut self, io: &mut Io) -> Option<Disconnect> {
        let edge = self.edge.clone();
        let limits = &edge.limits;
        let started = tokio::time::Instant::now();
        let auth_deadline = started + limits.auth_timeout;
        let mut ping_at = started + limits.ping_interval;
        let mut closing: Option<(Disconnect, tokio::time::Instant)> = None;
        // The token's expiry (seconds since the epoch) and the instant it falls on.
        let mut expiry = (0u64, started);
        let timer = tokio::time::sleep_until(ping_at);
        tokio::pin!(timer);
        if io.transport.is_tls() || !io.read_buf.is_empty() {
            // Bytes that came with the upgrade (hyper's, or records rustls already holds)
            // are not announced by the socket again.
            match self.on_readable(io) {
                ReadOutcome::Continue => {}
                ReadOutcome::PeerGone => return None,
                ReadOutcome::Close(disconnect) => self.conn.outbox.close(disconnect),
            }
        }
        loop {
            if io.queue.is_empty() && closing.is_none() {
                if let Some(disconnect) = io.queue.refill(&self.conn.outbox) {
                    io.queue.push_close(disconnect);
                    closing = Some((disconnect, tokio::time::Instant::now() + CLOSE_WRITE_TIMEOUT));
                }
            }
            if !io.queue.is_empty() || io.transport.wants_write() {
                match io.queue.try_flush(&mut io.transport) {
                    Ok(()) => {}
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return closing.map(|(disconnect, _)| disconnect),
                }
            }
            if let (Some((disconnect, _)), true) = (closing, io.queue.is_empty() && !io.transport.wants_write()) {
                return Some(disconnect);
            }
            let close_requested = closing.is_some() || self.conn.outbox.is_closing();
            // Every deadline is absolute, so the timer is re-armed only when one moves (not
            // on every wakeup of a busy connection).
            let identity = self.conn.identity();
            let idle_deadline = tokio::time::Instant::from_std(self.conn.last_activity() + limits.idle_timeout);
            let mut deadline = ping_at.min(idle_deadline);
            match (&identity, closing) {
                (_, Some((_, closing_deadline))) => deadline = deadline.min(closing_deadline),
                (None, None) if !close_requested => deadline = deadline.min(auth_deadline),
                (Some(identity), None) => {
                    if expiry.0 != identity.expires_at {
                        let expires_in = Duration::from_secs(identity.expires_at.saturating_sub(now_secs()));
                        expiry = (identity.expires_at, tokio::time::Instant::now() + expires_in);
                    }
                    deadline = deadline.min(expiry.1);
                }
                _ => {}
            }
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            let mut interest: Option<Interest> = None;
            if !close_requested {
                interest = Some(Interest::READABLE);
            }
            if !io.queue.is_empty() || io.transport.wants_write() {
                interest = Some(interest.map_or(Interest::WRITABLE, |interest| interest | Interest::WRITABLE));
            }
            tokio::select! {
                biased;
                ready = io.transport.ready(interest) => {
                    let Ok(ready) = ready else { return None };
                    if ready.is_readable() && !close_requested {
                        match self.on_readable(io) {
                            ReadOutcome::Continue => {}
                            ReadOutcome::PeerGone => return None,
                            ReadOutcome::Close(disconnect) => self.conn.outbox.close(disconnect),
                        }
                    }
                }
                _ = self.conn.outbox.woken() => {
                    if self.conn.outbox.take_aborted() {
                        // A slow consumer: its backlog is dropped; a half-written frame cannot
                        // be followed by a close frame, so such a socket is simply closed.
                        if io.queue.is_mid_frame() {
                            return Some(Disconnect::SLOW_CONSUMER);
                        }
                        io.queue.drop_unstarted();
                        if closing.is_none() {
                            io.queue.push_close(Disconnect::SLOW_CONSUMER);
                            closing = Some((Disconnect::SLOW_CONSUMER, tokio::time::Instant::now() + CLOSE_WRITE_TIMEOUT));
                        }
                    }
                    if self.conn.has_group_changes() {
                        apply_group_changes(&self.edge, &self.conn);
                    }
                    self.conn.run_deferred();
                    if self.pending_auth.as_ref().is_some_and(|pending| pending.fetched.load(std::sync::atomic::Ordering::Acquire)) {
                        self.finish_pending_auth();
                    }
                }
                _ = &mut timer => {
                    let now = tokio::time::Instant::now();
                    if let Some((disconnect, closing_deadline)) = closing {
                        if now >= closing_deadline {
                            return Some(disconnect);
                        }
                    }
                    if now >= ping_at {
                        ping_at = now + limits.ping_interval;
                        // An idle connection gives back the queues a burst grew.
                        io.queue.shrink_if_empty();
                        self.conn.outbox.shrink_if_empty();
                        self.conn.outbox.push(Outgoing::Ping);
                    }
                    if !close_requested {
                        if self.conn.idle_for() >= limits.idle_timeout {
                            self.conn.outbox.close(Disconnect::IDLE);
                        } else if let Some(identity) = &identity {
                            if identity.expires_at <= now_secs() {
                                self.conn.outbox.close(Disconnect::TOKEN_EXPIRED);
                            }
                        } else if now >= auth_deadline {
                            self.refuse_auth(None, "auth timeout");
                        }
                    }
                }
            }
        }
    }

    /// Reads what the socket has, takes every whole frame out and handles it.
    fn on_readable(&mut self, io: &mut Io) -> ReadOutcome {
        for _ in 0..READS_PER_WAKEUP {
            if io.read_buf.capacity() - io.read_buf.len() < READ_CHUNK / 4 {
                io.read_buf.reserve(READ_CHUNK);
            }
            match io.transport.read_buf(&mut io.read_buf) {
                Ok(0) => return ReadOutcome::PeerGone,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return ReadOutcome::PeerGone,
            }
        }
        self.conn.touch();
        let max = self.edge.limits.max_message_bytes;
        loop {
            let frame = match wsframe::decode(&mut io.read_buf, max, self.deflate.is_some()) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(FrameError::TooLarge) => return ReadOutcome::Close(Disconnect::TOO_LARGE),
                Err(FrameError::Protocol(_)) => return ReadOutcome::Close(Disconnect::PROTOCOL_ERROR),
            };
            if let Err(disconnect) = self.on_frame(frame) {
                return ReadOutcome::Close(disconnect);
            }
            if self.conn.outbox.is_closing() {
                break;
            }
        }
        if io.read_buf.is_empty() {
            // Idle again: give the buffer back.
            io.read_buf = BytesMut::new();
        }
        ReadOutcome::Continue
    }

    /// Handles one frame: control frames here, data frames reassembled into messages.
    fn on_frame(&mut self, frame: ClientFrame) -> Result<(), Disconnect> {
        let max = self.edge.limits.max_message_bytes;
        match frame.opcode {
            wsframe::OPCODE_PING => {
                self.conn.outbox.push(Outgoing::Pong(frame.payload.freeze()));
                Ok(())
            }
            wsframe::OPCODE_PONG => Ok(()),
            wsframe::OPCODE_CLOSE => Err(close_reply(&frame.payload)),
            wsframe::OPCODE_TEXT | wsframe::OPCODE_BINARY => {
                if self.fragments.is_some() {
                    return Err(Disconnect::PROTOCOL_ERROR);
                }
                if !frame.fin {
                    let opcode = if frame.compressed { frame.opcode | COMPRESSED } else { frame.opcode };
                    self.fragments = Some(Box::new((opcode, frame.payload)));
                    Ok(())
                } else if frame.compressed {
                    let payload = self.inflate(&frame.payload)?;
                    self.on_message(frame.opcode, payload)
                } else {
                    self.on_message(frame.opcode, frame.payload)
                }
            }
            _ => {
                let Some((_, buffer)) = self.fragments.as_deref_mut() else {
                    return Err(Disconnect::PROTOCOL_ERROR);
                };
                if buffer.len() + frame.payload.len() > max {
                    return Err(Disconnect::TOO_LARGE);
                }
                buffer.extend_from_slice(&frame.payload);
                if frame.fin {
                    let (opcode, buffer) = *self.fragments.take().expect("checked above");
                    if opcode & COMPRESSED != 0 {
                        let payload = self.inflate(&buffer)?;
                        return self.on_message(opcode & !COMPRESSED, payload);
                    }
                    return self.on_message(opcode, buffer);
                }
                Ok(())
            }
        }
    }

    /// A whole compressed message, inflated within the message size limit.
    fn inflate(&mut self, compressed: &[u8]) -> Result<BytesMut, Disconnect> {
        let keep_context = self.deflate.is_some_and(|negotiated| !negotiated.client_no_context_takeover);
        match self.inflater.inflate(compressed, self.edge.limits.max_message_bytes, keep_context) {
            Ok(payload) => Ok(payload),
            Err(InflateError::TooLarge) => Err(Disconnect::TOO_LARGE),
            Err(InflateError::Corrupt) => Err(Disconnect::BAD_COMPRESSED_DATA),
        }
    }

    /// A whole message: the first must be `auth` on a connection without a token.
    fn on_message(&mut self, opcode: u8, mut payload: BytesMut) -> Result<(), Disconnect> {
        if opcode == wsframe::OPCODE_TEXT && std::str::from_utf8(&payload).is_err() {
            return Err(Disconnect::INVALID_UTF8);
        }
        if self.conn.identity().is_none() {
            if self.conn.admitting.load(std::sync::atomic::Ordering::Relaxed) {
                let op_id = protocol::parse(&mut payload).op_id;
                let error = ReplyError::new(ErrorCode::Unavailable, "connection not accepted yet");
                self.reply_error(op_id.as_deref(), error);
                return Ok(());
            }
            if opcode != wsframe::OPCODE_TEXT {
                self.refuse_auth(None, "first frame must be auth");
                return Ok(());
            }
            let parsed = protocol::parse(&mut payload);
            match parsed.request {
                Ok(Request::Auth { token }) => match self.edge.auth.authenticate(&token) {
                    Ok(identity) => {
                        metrics::message_in("auth");
                        let ack = frames::ack(parsed.op_id.as_deref(), serde_json::json!({}));
                        self.authenticated(identity, ack);
                    }
                    Err(AuthError::UnknownKey) if self.pending_auth.is_none() && self.edge.auth.jwks().is_some() => {
                        self.wait_for_jwks(token, parsed.op_id);
                    }
                    Err(err) => {
                        super::auth_failed(&err);
                        self.refuse_auth(parsed.op_id.as_deref(), &err.to_string());
                    }
                },
                _ => self.refuse_auth(parsed.op_id.as_deref(), "first frame must be auth"),
            }
            return Ok(());
        }
        if opcode == wsframe::OPCODE_TEXT {
            self.on_text(payload);
        } else if self.admit(None) {
            self.reply_error(None, ReplyError::new(ErrorCode::Unsupported, "binary frames are not supported in v1"));
        }
        Ok(())
    }

    /// Fetches the JWKS again (at most once per interval) for an in-band `auth` with an
    /// unknown `kid`; the connection's task checks the token again when it is over.
    fn wait_for_jwks(&mut self, token: String, op_id: Option<String>) {
        let fetched = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Some(jwks) = self.edge.auth.jwks().cloned() {
            let (conn, done) = (self.conn.clone(), fetched.clone());
            tokio::spawn(async move {
                jwks.refresh(false).await;
                done.store(true, std::sync::atomic::Ordering::Release);
                conn.outbox.signal();
            });
        }
        self.pending_auth = Some(Box::new(PendingAuth { token, op_id, fetched }));
    }

    fn finish_pending_auth(&mut self) {
        let Some(pending) = self.pending_auth.take() else { return };
        match self.edge.authenticate(&pending.token) {
            Ok(identity) => {
                metrics::message_in("auth");
                let ack = frames::ack(pending.op_id.as_deref(), serde_json::json!({}));
                self.authenticated(identity, ack);
            }
            Err(err) => self.refuse_auth(pending.op_id.as_deref(), &err.to_string()),
        }
    }

    fn refuse_auth(&self, op_id: Option<&str>, message: &str) {
        let error = ReplyError::new(ErrorCode::Unauthorized, message.to_string());
        metrics::error_sent(error.code.as_str());
        self.conn.outbox.push_text(frames::error(op_id, &error));
        self.conn.outbox.close(Disconnect::UNAUTHORIZED);
    }

    /// The connection is authenticated: accepted at once, or once the connect hook allowed
    /// it (`webhook/hooks.rs`).
    fn authenticated(&mut self, identity: Identity, ack: Option<bytes::Bytes>) {
        if self.edge.hooks.asks_connect() {
            return ask_connect_hook(self.edge.clone(), self.conn.clone(), identity, ack);
        }
        welcome(&self.edge, &self.conn, Arc::new(identity), ack, Vec::new());
    }

    /// Applies the rate limit to one message; false when it must be dropped.
    fn admit(&mut self, op_id: Option<&str>) -> bool {
        match self.rate.check(&self.edge.limits) {
            RateVerdict::Allowed => true,
            RateVerdict::Limited => {
                let error = ReplyError::new(ErrorCode::RateLimited, "rate limit exceeded");
                self.reply_error(op_id, error);
                false
            }
            RateVerdict::Close => {
                self.conn.outbox.close(Disconnect::RATE_LIMITED);
                false
            }
        }
    }

    fn on_text(&mut self, mut payload: BytesMut) {
        // Parsing first (it is cheap) lets a refusal name the request it refuses.
        let parsed = protocol::parse(&mut payload);
        let op_id = parsed.op_id;
        if !self.admit(op_id.as_deref()) {
            return;
        }
        let request = match parsed.request {
            Ok(request) => request,
            Err(error) => {
                metrics::message_in("other");
                return self.reply_error(op_id.as_deref(), error);
            }
        };
        metrics::message_in(request_type(&request));
        self.conn.received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(error) = self.dispatch(op_id.as_deref(), request) {
            self.reply_error(op_id.as_deref(), error);
        }
    }

    /// Sends an error; failed requests count towards the 1008 threshold, but rate limits
    /// (they have their own close) and `unavailable` (the server's condition, e.g. an owner
    /// failing over, not the client's fault).
    fn reply_error(&self, op_id: Option<&str>, error: ReplyError) {
        metrics::error_sent(error.code.as_str());
        self.conn.outbox.push_text(frames::error(op_id, &error));
        if !matches!(error.code, ErrorCode::RateLimited | ErrorCode::Unavailable) {
            let limits = &self.edge.limits;
            if self.conn.record_error(limits.error_limit, limits.error_window) {
                self.conn.outbox.close(Disconnect::TOO_MANY_ERRORS);
            }
        }
    }
}

/// The close that answers a client's close frame (RFC 6455 §5.5.1, §7.4): 1000, but 1002 for a
/// 1-byte payload or a code an endpoint may not send, 1007 for a reason that is not UTF-8.
pub(crate) fn close_reply(payload: &[u8]) -> Disconnect {
    match payload {
        [] => Disconnect::NORMAL,
        [_] => Disconnect::PROTOCOL_ERROR,
        [high, low, reason @ ..] => {
            if !wsframe::is_sendable_close_code(u16::from_be_bytes([*high, *low])) {
                Disconnect::PROTOCOL_ERROR
            } else if std::str::from_utf8(reason).is_err() {
                Disconnect::INVALID_UTF8
            } else {
                Disconnect::NORMAL
            }
        }
    }
}
