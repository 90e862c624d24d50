//! Dispatch of a parsed client request: to the owner of its key (`Owners::route`) or answered
//! here (`presence.ping`, `auth.refresh`), and the group changes that follow a token's.

use std::sync::Arc;

use serde::Serialize;

use super::conn::Conn;
use super::session::Session;
use super::Edge;
use crate::auth::{AuthError, Identity};
use crate::frames;
use crate::ops::{subscribed_room, OwnerOp, PresenceOp, RequestKind, RoomAction, UserDelivery};
use crate::protocol::{CallSignal, ErrorCode, ReplyError, Request};
use crate::room::{self, RoomKey};
use crate::time;
use crate::webhook::hooks::JoinVerdict;

impl Session {
    pub(super) fn dispatch(&mut self, op_id: Option<&str>, request: Request) -> Result<(), ReplyError> {
        let identity =
            self.conn.identity().ok_or_else(|| ReplyError::new(ErrorCode::Unauthorized, "not authenticated"))?;
        let sender = self.edge.sender(&self.conn, &identity);
        let op_id_owned = op_id.map(str::to_string);
        match request {
            Request::Auth { .. } => Err(ReplyError::invalid("already authenticated")),
            Request::AuthRefresh { token } => self.refresh(op_id, &identity, &token),
            Request::RoomJoin { room, since } => {
                room::check_join(&identity, &room)?;
                let key = RoomKey::new(&identity.tenant, &room);
                if self.edge.hooks.asks_join(&room) {
                    let op = OwnerOp::request(key.clone(), sender, op_id_owned.clone(), RequestKind::Join { since });
                    ask_join_hook(self.edge.clone(), self.conn.clone(), &identity, key, op, op_id_owned);
                    return Ok(());
                }
                self.conn.rooms.lock().rooms.insert(key.clone());
                self.edge.owners.route(OwnerOp::request(key, sender, op_id_owned, RequestKind::Join { since }))
            }
            Request::RoomLeave { room } => {
                let key = RoomKey::new(&identity.tenant, &room);
                self.edge.owners.route(OwnerOp::request(key, sender, op_id_owned, RequestKind::Leave))
            }
            Request::RoomMembers { room } => {
                let key = RoomKey::new(&identity.tenant, &room);
                // The owner lists the members to this node, which adds their presence.
                if !self.conn.rooms.lock().rooms.contains(&key) {
                    return Err(ReplyError::new(ErrorCode::Forbidden, "not in room"));
                }
                self.edge.owners.clone().members(sender, op_id_owned, key);
                Ok(())
            }
            Request::ChatSend(message) => {
                let key = RoomKey::new(&identity.tenant, &message.room);
                self.edge.owners.route(OwnerOp::request(key, sender, op_id_owned, RequestKind::Publish(message)))
            }
            Request::Room { room, action } => {
                let key = RoomKey::new(&identity.tenant, &room);
                self.edge.owners.route(OwnerOp::request(key, sender, op_id_owned, RequestKind::Act(action)))
            }
            Request::Dm { to, text, attachments, client_id, meta } => {
                if to == *identity.user_id {
                    return Err(ReplyError::invalid("cannot send a direct message to yourself"));
                }
                let now = time::now_millis();
                let id = self.edge.owners.message_id(now);
                let ts = time::rfc3339_millis(now);
                #[derive(Serialize)]
                struct DmMessage<'a> {
                    id: &'a str,
                    from: &'a str,
                    name: &'a str,
                    to: &'a str,
                    text: &'a str,
                    attachments: &'a [crate::protocol::Attachment],
                    ts: &'a str,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    meta: Option<&'a serde_json::Value>,
                    #[serde(skip_serializing_if = "std::ops::Not::not")]
                    offline: bool,
                }
                let mut message = DmMessage {
                    id: &id,
                    from: &identity.user_id,
                    name: &identity.name,
                    to: &to,
                    text: &text,
                    attachments: &attachments,
                    ts: &ts,
                    meta: meta.as_deref(),
                    offline: false,
                };
                let frame = frames::event("dm.message", &message, &ts);
                message.offline = true;
                let offline_frame = frames::event("dm.message", &message, &ts);
                let delivery = UserDelivery::Dm { id: id.clone(), ts: ts.clone(), frame, offline_frame, client_id };
                let room = RoomKey::user(&identity.tenant, &to);
                self.edge.owners.route(OwnerOp::request(room, sender, op_id_owned, RequestKind::ToUser(delivery)))
            }
            Request::PresenceSet { status, message } => {
                let room = RoomKey::user(&identity.tenant, &identity.user_id);
                let op = PresenceOp::Set { status, message };
                self.edge.owners.route(OwnerOp::request(room, sender, op_id_owned, RequestKind::Presence(op)))
            }
            Request::PresenceSubscribe { users, subscribe } => {
                for user in &users {
                    let room = RoomKey::user(&identity.tenant, user);
                    let op = if subscribe { PresenceOp::Subscribe } else { PresenceOp::Unsubscribe };
                    self.edge.owners.route(OwnerOp::request(room, sender.clone(), None, RequestKind::Presence(op)))?;
                    self.conn.set_presence_subscription(user, subscribe);
                }
                if let Some(ack) = frames::ack(op_id, serde_json::json!({ "users": users })) {
                    self.conn.outbox.push_text(ack);
                }
                Ok(())
            }
            Request::PresenceQuery { users } => {
                let users = users.iter().map(|user| RoomKey::user(&identity.tenant, user)).collect();
                self.edge.owners.presence_query(sender, op_id, users)
            }
            Request::Call { to, signal } => {
                if to == *identity.user_id {
                    return Err(ReplyError::invalid("cannot call yourself"));
                }
                let ts = time::rfc3339_millis(time::now_millis());
                let from: &str = &identity.user_id;
                let frame = match &signal {
                    CallSignal::Offer { call_id, sdp, kind } => {
                        let data = serde_json::json!({"from": from, "call_id": call_id, "sdp": sdp, "kind": kind});
                        frames::event("call.incoming", data, &ts)
                    }
                    CallSignal::Answer { call_id, sdp } => frames::event(
                        "call.answer",
                        serde_json::json!({"from": from, "call_id": call_id, "sdp": sdp}),
                        &ts,
                    ),
                    CallSignal::Ice { call_id, candidate } => {
                        let candidate: serde_json::Value =
                            serde_json::from_str(candidate).unwrap_or(serde_json::Value::Null);
                        let data = serde_json::json!({"from": from, "call_id": call_id, "candidate": candidate});
                        frames::event("call.ice", data, &ts)
                    }
                    CallSignal::Hangup { call_id } => {
                        frames::event("call.ended", serde_json::json!({"call_id": call_id, "by": from}), &ts)
                    }
                };
                let delivery = UserDelivery::Call { call_id: signal.call_id().to_string(), frame };
                let room = RoomKey::user(&identity.tenant, &to);
                self.edge.owners.route(OwnerOp::request(room, sender, op_id_owned, RequestKind::ToUser(delivery)))
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
            .edge
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
        let added: Vec<String> =
            identity.groups.iter().filter(|group| !current.groups.contains(group)).cloned().collect();
        let removed: Vec<String> =
            current.groups.iter().filter(|group| !identity.groups.contains(group)).cloned().collect();
        if !added.is_empty() || !removed.is_empty() {
            // Every connection of the user follows, wherever it is: the owner of the personal
            // room knows them all.
            let room = RoomKey::user(&identity.tenant, &identity.user_id);
            let sender = self.edge.sender(&self.conn, &identity);
            self.edge.owners.route(OwnerOp::request(room, sender, None, RequestKind::UserGroups { added, removed }))?;
        }
        Ok(())
    }
}

/// Applies the group changes queued for `conn` (see [`crate::ops::EdgeMsg::Groups`]):
/// its identity takes the new groups, it joins and leaves the `group:` rooms (and the rooms
/// of server-side subscriptions, [`subscribed_room`]), and it is told with `room.update`. Runs on the connection's writer task, outside every lock.
pub fn apply_group_changes(edge: &Edge, conn: &Conn) {
    let changes = conn.take_group_changes();
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
        for group in added.iter().filter(|entry| subscribed_room(entry).is_none()) {
            if !updated.groups.contains(group) {
                updated.groups.push(group.clone());
            }
        }
        identity = Arc::new(updated);
        conn.set_identity_quietly(identity.clone());
        let ts = time::rfc3339_millis(time::now_millis());
        let sender = edge.sender(conn, &identity);
        for (groups, status) in [(&added, "joined"), (&removed, "left")] {
            for group in groups {
                // A server-side subscription names its room; a group its `group:` room.
                let (room, reason) = match subscribed_room(group) {
                    Some(room) => (room.to_string(), "server"),
                    None => (format!("group:{group}"), "groups"),
                };
                let key = RoomKey::new(&identity.tenant, &room);
                let op = if status == "joined" {
                    conn.rooms.lock().rooms.insert(key.clone());
                    OwnerOp::request(key, sender.clone(), None, RequestKind::Join { since: None })
                } else {
                    OwnerOp::request(key, sender.clone(), None, RequestKind::Leave)
                };
                if let Err(err) = edge.owners.route(op) {
                    tracing::warn!(room, error = %err.message, "group room change failed");
                }
                conn.outbox.push_text(frames::event("room.update", RoomUpdate { room: &room, status, reason }, &ts));
            }
        }
    }
}

/// Asks the join hook whether the connection may join `key`; its answer is applied by the
/// connection's task: the join `op` goes to the owner, or the request is answered
/// `forbidden` with the application's reason.
fn ask_join_hook(
    edge: Arc<Edge>,
    conn: Arc<Conn>,
    identity: &Identity,
    key: RoomKey,
    op: OwnerOp,
    op_id: Option<String>,
) {
    let (tenant, user) = (identity.tenant.clone(), identity.user_id.clone());
    tokio::spawn(async move {
        let verdict = edge.hooks.join(&tenant, &user, key.room(), &edge.conn_label(conn.id)).await;
        conn.defer(Box::new(move |conn| {
            let result = match verdict {
                JoinVerdict::Allow => {
                    conn.rooms.lock().rooms.insert(key);
                    edge.owners.route(op)
                }
                JoinVerdict::Deny { reason } => Err(ReplyError::new(ErrorCode::Forbidden, reason)),
            };
            if let Err(error) = result {
                crate::metrics::error_sent(error.code.as_str());
                conn.outbox.push_text(frames::error(op_id.as_deref(), &error));
            }
        }));
    });
}

pub(super) fn request_type(request: &Request) -> &'static str {
    match request {
        Request::Auth { .. } => "auth",
        Request::AuthRefresh { .. } => "auth.refresh",
        Request::RoomJoin { .. } => "room.join",
        Request::RoomLeave { .. } => "room.leave",
        Request::RoomMembers { .. } => "room.members",
        Request::ChatSend(_) => "chat.send",
        Request::Room { action, .. } => match action {
            RoomAction::Edit { .. } => "chat.edit",
            RoomAction::Versions { .. } => "chat.versions",
            RoomAction::Delete { .. } => "chat.delete",
            RoomAction::Redact { .. } => "chat.redact",
            RoomAction::React { .. } => "chat.react",
            RoomAction::Typing { .. } => "chat.typing",
            RoomAction::Receipt { read: true, .. } => "chat.read",
            RoomAction::Receipt { read: false, .. } => "chat.delivered",
            RoomAction::Upload { .. } => "chat.upload",
            RoomAction::History { .. } => "room.history",
            RoomAction::RequestJoin => "room.request_join",
            RoomAction::Approve { .. } => "room.approve",
            RoomAction::Deny { .. } => "room.deny",
            RoomAction::Kick { .. } => "room.kick",
            RoomAction::Ban { .. } => "room.ban",
        },
        Request::PresencePing => "presence.ping",
        Request::Dm { .. } => "dm.send",
        Request::PresenceSet { .. } => "presence.set",
        Request::PresenceSubscribe { subscribe: true, .. } => "presence.subscribe",
        Request::PresenceSubscribe { subscribe: false, .. } => "presence.unsubscribe",
        Request::PresenceQuery { .. } => "presence.query",
        Request::Call { signal, .. } => match signal {
            CallSignal::Offer { .. } => "call.offer",
            CallSignal::Answer { .. } => "call.answer",
            CallSignal::Ice { .. } => "call.ice",
            CallSignal::Hangup { .. } => "call.hangup",
        },
    }
}
