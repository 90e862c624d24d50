//! One client connection: reads frames, enforces the limits of PROTOCOL.md §1, parses each
//! message once and turns it into an owner operation or a local reply.
//!
//! A session is two tasks: this reader, and the writer (`writer.rs`) that drains the
//! outbox. fastwebsockets' `read_frame` is not cancel-safe, so the reader never races it
//! against anything it would resume; when the writer ends the connection, the reader is
//! dropped with it.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use fastwebsockets::{Frame, OpCode, WebSocketError, WebSocketRead};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::auth::{AuthError, Identity};
use crate::close::Disconnect;
use crate::conn::{Conn, ConnMeta, Outgoing};
use crate::frames;
use crate::metrics;
use crate::node::Node;
use crate::protocol::{self, ErrorCode, ReplyError, Request};
use crate::room::{self, RoomKey};
use crate::route::{ConnRef, OwnerOp, Sender};
use crate::time;
use crate::writer;

/// Runs a connection from the completed upgrade to its end.
///
/// `identity` is the token's identity when the upgrade request carried one; otherwise the
/// first frame must be `auth`.
pub async fn run<R, W>(node: Arc<Node>, reader: R, writer_half: W, identity: Option<Identity>, meta: ConnMeta)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(Conn::new(node.next_conn_id(), node.config.limits.queue_frames, meta));
    conn.touch();
    node.hub.register(conn.clone());
    metrics::connection_opened();
    let writer_task = node.tasks.spawn(writer::run(node.clone(), conn.clone(), writer_half));

    let (ws_read, _) = fastwebsockets::after_handshake_split(reader, tokio::io::sink(), fastwebsockets::Role::Server);
    let mut session = Session {
        node: node.clone(),
        conn: conn.clone(),
        ws: ws_read,
        rate: RateLimiter::new(node.config.limits.rate_per_second, node.config.limits.rate_burst),
        fragments: None,
    };
    session.ws.set_auto_close(true);
    session.ws.set_auto_pong(true);
    session.ws.set_max_message_size(node.config.limits.max_message_bytes + 1);

    let mut writer_task = writer_task;
    tokio::select! {
        _ = session.read_loop(identity) => {
            // The reader ended first (peer closed, protocol error, limit): let the writer
            // send what is queued and the close, within its own time limit.
            let _ = (&mut writer_task).await;
        }
        _ = &mut writer_task => {}
    }
    drop(session);
    for room in node.hub.unregister(&conn) {
        if let Some(identity) = conn.identity() {
            let sender = sender_of(&node, &conn, &identity);
            let _ = node.route(OwnerOp::Leave { room, sender, op_id: None });
        }
    }
    metrics::connection_closed();
}

fn sender_of(node: &Node, conn: &Conn, identity: &Identity) -> Sender {
    Sender {
        conn: ConnRef { node: node.id.clone(), conn_id: conn.id },
        user_id: identity.user_id.clone(),
        name: identity.name.clone(),
        is_moderator: identity.is_moderator(),
        request_id: 0,
    }
}

/// A whole message read from the client.
enum Message {
    Text(BytesMut),
    Binary,
}

struct Session<R> {
    node: Arc<Node>,
    conn: Arc<Conn>,
    ws: WebSocketRead<R>,
    rate: RateLimiter,
    /// A fragmented message being reassembled: its opcode and bytes so far.
    fragments: Option<(OpCode, BytesMut)>,
}

impl<R: AsyncRead + Unpin> Session<R> {
    async fn read_loop(&mut self, identity: Option<Identity>) {
        match identity {
            Some(identity) => self.authenticated(identity),
            None => {
                let limit = self.node.config.limits.auth_timeout;
                match tokio::time::timeout(limit, self.read_message()).await {
                    Err(_) => return self.refuse_auth(None, "auth timeout"),
                    Ok(Err(disconnect)) => return self.conn.outbox.close(disconnect),
                    Ok(Ok(Message::Binary)) => return self.refuse_auth(None, "first frame must be auth"),
                    Ok(Ok(Message::Text(mut payload))) => {
                        let parsed = protocol::parse(&mut payload);
                        match parsed.request {
                            Ok(Request::Auth { token }) => match self.node.auth.authenticate(&token) {
                                Ok(identity) => {
                                    metrics::message_in("auth");
                                    self.authenticated(identity);
                                    if let Some(ack) = frames::ack(parsed.op_id.as_deref(), serde_json::json!({})) {
                                        self.conn.outbox.push_text(ack);
                                    }
                                }
                                Err(err) => return self.refuse_auth(parsed.op_id.as_deref(), &err.to_string()),
                            },
                            _ => return self.refuse_auth(parsed.op_id.as_deref(), "first frame must be auth"),
                        }
                    }
                }
            }
        }
        loop {
            match self.read_message().await {
                Ok(Message::Text(payload)) => self.on_text(payload),
                Ok(Message::Binary) => {
                    if self.admit(None) {
                        self.reply_error(
                            None,
                            ReplyError::new(ErrorCode::Unsupported, "binary frames are not supported in v1"),
                        );
                    }
                }
                Err(disconnect) => return self.conn.outbox.close(disconnect),
            }
        }
    }

    fn refuse_auth(&self, op_id: Option<&str>, message: &str) {
        let error = ReplyError::new(ErrorCode::Unauthorized, message.to_string());
        metrics::error_sent(error.code.as_str());
        self.conn.outbox.push_text(frames::error(op_id, &error));
        self.conn.outbox.close(Disconnect::UNAUTHORIZED);
    }

    /// The connection is authenticated: say `connected`, join the personal and group rooms.
    fn authenticated(&mut self, identity: Identity) {
        let identity = Arc::new(identity);
        self.conn.set_identity(identity.clone());
        #[derive(Serialize)]
        struct Connected<'a> {
            conn_id: String,
            node_id: &'a str,
            user_id: &'a str,
            tenant: &'a str,
            ping_interval_ms: u128,
            server_time: String,
        }
        let now = time::rfc3339_millis(time::now_millis());
        let connected = Connected {
            conn_id: self.node.conn_label(self.conn.id),
            node_id: self.node.id.as_str(),
            user_id: &identity.user_id,
            tenant: &identity.tenant,
            ping_interval_ms: self.node.config.limits.ping_interval.as_millis(),
            server_time: now.clone(),
        };
        self.conn.outbox.push_text(frames::event("connected", connected, &now));
        self.join_quietly(&identity, &format!("user:{}", identity.user_id));
        for group in &identity.groups {
            self.join_quietly(&identity, &format!("group:{group}"));
        }
    }

    /// An automatic join: no ack; `unavailable` owners are logged, not fatal.
    fn join_quietly(&self, identity: &Identity, room: &str) {
        let key = RoomKey::new(&identity.tenant, room);
        self.conn.rooms.lock().rooms.insert(key.clone());
        let sender = sender_of(&self.node, &self.conn, identity);
        if let Err(err) = self.node.route(OwnerOp::Join { room: key, sender, op_id: None, since: None }) {
            tracing::warn!(room, error = %err.message, "automatic join failed");
        }
    }

    /// Reads one whole message, reassembling fragments; control frames are handled here.
    async fn read_message(&mut self) -> Result<Message, Disconnect> {
        let max = self.node.config.limits.max_message_bytes;
        loop {
            let outbox = &self.conn.outbox;
            let mut obligated = |frame: Frame<'_>| {
                // fastwebsockets hands us the pongs it owes; the close echo is sent by the
                // writer when the reader returns.
                if frame.opcode == OpCode::Pong {
                    outbox.push(Outgoing::Pong(bytes::Bytes::copy_from_slice(&frame.payload)));
                }
                std::future::ready(Ok::<(), std::convert::Infallible>(()))
            };
            let frame = match self.ws.read_frame(&mut obligated).await {
                Ok(frame) => frame,
                Err(err) => return Err(read_error_disconnect(&err)),
            };
            self.conn.touch();
            match frame.opcode {
                OpCode::Close => return Err(Disconnect::NORMAL),
                OpCode::Pong | OpCode::Ping => continue,
                OpCode::Text | OpCode::Binary if frame.fin => {
                    if self.fragments.is_some() {
                        return Err(Disconnect::PROTOCOL_ERROR);
                    }
                    return Ok(whole(frame.opcode, payload_bytes(frame)));
                }
                OpCode::Text | OpCode::Binary => {
                    if self.fragments.is_some() {
                        return Err(Disconnect::PROTOCOL_ERROR);
                    }
                    self.fragments = Some((frame.opcode, payload_bytes(frame)));
                }
                OpCode::Continuation => {
                    let Some((_, buffer)) = self.fragments.as_mut() else {
                        return Err(Disconnect::PROTOCOL_ERROR);
                    };
                    if buffer.len() + frame.payload.len() > max {
                        return Err(Disconnect::TOO_LARGE);
                    }
                    buffer.extend_from_slice(&frame.payload);
                    if frame.fin {
                        let (opcode, buffer) = self.fragments.take().expect("checked above");
                        if opcode == OpCode::Text && std::str::from_utf8(&buffer).is_err() {
                            return Err(Disconnect::INVALID_UTF8);
                        }
                        return Ok(whole(opcode, buffer));
                    }
                }
            }
        }
    }

    /// Applies the rate limit to one message; false when it must be dropped.
    fn admit(&mut self, op_id: Option<&str>) -> bool {
        match self.rate.check(self.node.config.limits.rate_limit_close_after) {
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
        if let Err(error) = self.dispatch(op_id.as_deref(), request) {
            self.reply_error(op_id.as_deref(), error);
        }
    }

    fn dispatch(&mut self, op_id: Option<&str>, request: Request) -> Result<(), ReplyError> {
        let identity =
            self.conn.identity().ok_or_else(|| ReplyError::new(ErrorCode::Unauthorized, "not authenticated"))?;
        let sender = sender_of(&self.node, &self.conn, &identity);
        let op_id_owned = op_id.map(str::to_string);
        match request {
            Request::Auth { .. } => Err(ReplyError::invalid("already authenticated")),
            Request::AuthRefresh { token } => self.refresh(op_id, &identity, &token),
            Request::RoomJoin { room, since } => {
                room::check_join(&identity, &room)?;
                let key = RoomKey::new(&identity.tenant, &room);
                self.conn.rooms.lock().rooms.insert(key.clone());
                self.node.route(OwnerOp::Join { room: key, sender, op_id: op_id_owned, since })
            }
            Request::RoomLeave { room } => {
                let key = RoomKey::new(&identity.tenant, &room);
                self.node.route(OwnerOp::Leave { room: key, sender, op_id: op_id_owned })
            }
            Request::RoomMembers { room } => {
                let key = RoomKey::new(&identity.tenant, &room);
                self.node.route(OwnerOp::Members { room: key, sender, op_id: op_id_owned })
            }
            Request::ChatSend(message) => {
                let key = RoomKey::new(&identity.tenant, &message.room);
                self.node.route(OwnerOp::Publish { room: key, sender, op_id: op_id_owned, message })
            }
            Request::PresencePing => {
                #[derive(Serialize)]
                struct Pong {
                    timestamp: String,
                }
                let frame =
                    frames::reply("presence.pong", op_id, Pong { timestamp: time::rfc3339_millis(time::now_millis()) });
                self.conn.outbox.push_text(frame);
                Ok(())
            }
        }
    }

    /// `auth.refresh`: same user and tenant, new expiry, roles, name and groups; group rooms
    /// follow the new groups at once.
    fn refresh(&mut self, op_id: Option<&str>, current: &Arc<Identity>, token: &str) -> Result<(), ReplyError> {
        let identity = self
            .node
            .auth
            .authenticate(token)
            .map_err(|err: AuthError| ReplyError::new(ErrorCode::Unauthorized, err.to_string()))?;
        if identity.user_id != current.user_id || identity.tenant != current.tenant {
            return Err(ReplyError::new(ErrorCode::Forbidden, "token is for another user or tenant"));
        }
        let identity = Arc::new(identity);
        self.conn.set_identity(identity.clone());
        #[derive(Serialize)]
        struct RefreshAck {
            expires_at: u64,
        }
        if let Some(ack) = frames::ack(op_id, RefreshAck { expires_at: identity.expires_at }) {
            self.conn.outbox.push_text(ack);
        }
        let added: Vec<String> = identity.groups.iter().filter(|group| !current.groups.contains(group)).cloned().collect();
        let removed: Vec<String> = current.groups.iter().filter(|group| !identity.groups.contains(group)).cloned().collect();
        if !added.is_empty() || !removed.is_empty() {
            // Every connection of the user follows, wherever it is: the owner of the personal
            // room knows them all.
            let room = RoomKey::user(&identity.tenant, &identity.user_id);
            let sender = sender_of(&self.node, &self.conn, &identity);
            self.node.route(OwnerOp::UserGroups { room, sender, added, removed })?;
        }
        Ok(())
    }

    /// Sends an error; failed requests (but rate limits) count towards the 1008 threshold.
    fn reply_error(&self, op_id: Option<&str>, error: ReplyError) {
        metrics::error_sent(error.code.as_str());
        self.conn.outbox.push_text(frames::error(op_id, &error));
        if error.code != ErrorCode::RateLimited {
            let limits = &self.node.config.limits;
            if self.conn.errors.lock().record(limits.error_limit, limits.error_window) {
                self.conn.outbox.close(Disconnect::TOO_MANY_ERRORS);
            }
        }
    }
}

/// Applies the group changes queued for `conn` (see [`crate::route::EdgeMsg::Groups`]):
/// its identity takes the new groups, it joins and leaves the `group:` rooms, and it is told
/// with `room.update`. Runs on the connection's writer task, outside every lock.
pub fn apply_group_changes(node: &Node, conn: &Conn) {
    let changes: Vec<(Vec<String>, Vec<String>)> = std::mem::take(&mut *conn.pending_groups.lock());
    let Some(mut identity) = conn.identity() else { return };
    #[derive(Serialize)]
    struct RoomUpdate<'a> {
        room: &'a str,
        status: &'a str,
        reason: &'static str,
    }
    for (added, removed) in changes {
        let mut updated = (*identity).clone();
        updated.groups.retain(|group| !removed.contains(group));
        for group in &added {
            if !updated.groups.contains(group) {
                updated.groups.push(group.clone());
            }
        }
        identity = Arc::new(updated);
        conn.set_identity_quietly(identity.clone());
        let ts = time::rfc3339_millis(time::now_millis());
        let sender = sender_of(node, conn, &identity);
        for (groups, status) in [(&added, "joined"), (&removed, "left")] {
            for group in groups {
                let room = format!("group:{group}");
                let key = RoomKey::new(&identity.tenant, &room);
                let op = if status == "joined" {
                    conn.rooms.lock().rooms.insert(key.clone());
                    OwnerOp::Join { room: key, sender: sender.clone(), op_id: None, since: None }
                } else {
                    OwnerOp::Leave { room: key, sender: sender.clone(), op_id: None }
                };
                if let Err(err) = node.route(op) {
                    tracing::warn!(room, error = %err.message, "group room change failed");
                }
                conn.outbox.push_text(frames::event("room.update", RoomUpdate { room: &room, status, reason: "groups" }, &ts));
            }
        }
    }
}

fn request_type(request: &Request) -> &'static str {
    match request {
        Request::Auth { .. } => "auth",
        Request::AuthRefresh { .. } => "auth.refresh",
        Request::RoomJoin { .. } => "room.join",
        Request::RoomLeave { .. } => "room.leave",
        Request::RoomMembers { .. } => "room.members",
        Request::ChatSend(_) => "chat.send",
        Request::PresencePing => "presence.ping",
    }
}

fn whole(opcode: OpCode, payload: BytesMut) -> Message {
    match opcode {
        OpCode::Text => Message::Text(payload),
        _ => Message::Binary,
    }
}

/// The frame's payload as an owned, mutable buffer (simd-json parses in place). Frames read
/// by fastwebsockets already own their bytes, so this moves them without a copy.
fn payload_bytes(frame: Frame<'_>) -> BytesMut {
    match frame.payload {
        fastwebsockets::Payload::Bytes(bytes) => bytes,
        other => BytesMut::from(&other[..]),
    }
}

fn read_error_disconnect(err: &WebSocketError) -> Disconnect {
    match err {
        WebSocketError::FrameTooLarge => Disconnect::TOO_LARGE,
        WebSocketError::InvalidUTF8 => Disconnect::INVALID_UTF8,
        WebSocketError::IoError(_) | WebSocketError::UnexpectedEOF | WebSocketError::ConnectionClosed => {
            Disconnect::NORMAL
        }
        _ => Disconnect::PROTOCOL_ERROR,
    }
}

/// Token bucket over client messages, with the "keeps exceeding" clock of close 4008.
struct RateLimiter {
    tokens: f64,
    rate_per_second: f64,
    burst: f64,
    refilled_at: Instant,
    /// When the current run of refusals began, and when the last refusal was.
    excess: Option<(Instant, Instant)>,
}

enum RateVerdict {
    Allowed,
    Limited,
    Close,
}

impl RateLimiter {
    /// A gap this long without a refusal ends a run of refusals.
    const RUN_GAP: std::time::Duration = std::time::Duration::from_secs(2);

    fn new(rate_per_second: f64, burst: u32) -> Self {
        RateLimiter {
            tokens: burst as f64,
            rate_per_second,
            burst: burst as f64,
            refilled_at: Instant::now(),
            excess: None,
        }
    }

    fn check(&mut self, close_after: std::time::Duration) -> RateVerdict {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_second).min(self.burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return RateVerdict::Allowed;
        }
        let started = match self.excess {
            Some((started, last)) if now.duration_since(last) < Self::RUN_GAP => started,
            _ => now,
        };
        self.excess = Some((started, now));
        if now.duration_since(started) >= close_after {
            RateVerdict::Close
        } else {
            RateVerdict::Limited
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rate_limiter_burst_then_refuse() {
        let mut limiter = RateLimiter::new(10.0, 20);
        for _ in 0..20 {
            assert!(matches!(limiter.check(std::time::Duration::from_secs(10)), RateVerdict::Allowed));
        }
        assert!(matches!(limiter.check(std::time::Duration::from_secs(10)), RateVerdict::Limited));
        assert!(matches!(limiter.check(std::time::Duration::ZERO), RateVerdict::Close));
    }
}
