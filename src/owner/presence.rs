//! Presence (PROTOCOL.md §6), owned by the owner of each user's personal room: a user is
//! online while it has a connection (every connection is in its personal room), and offline
//! once the grace after its last connection has run out without a new one. Manual status,
//! subscribers and the grace live in the user's `UserBox`; device events go to the user's
//! own other connections.

use bytes::Bytes;
use serde::Serialize;

use super::context::push;
use super::{EdgeSink, OpCtx, Owner, Room, Rooms, UserBox};
use crate::frames;
use crate::ops::{ConnRef, EdgeMsg, PresenceOp};
use crate::protocol::{ErrorCode, ReplyError};
use crate::room::RoomKey;
use crate::time;
use crate::webhook::{self, EventType};

#[derive(Serialize)]
struct PresenceData<'a> {
    user_id: std::borrow::Cow<'a, str>,
    status: &'a str,
    message: Option<&'a str>,
    devices: usize,
}

#[derive(Serialize)]
struct Device<'a> {
    user_id: &'a str,
    conn_id: String,
}

impl Owner {
    /// A connection joined its user's personal room.
    pub(super) fn user_conn_added(&self, room: &Room, sink: &dyn EdgeSink, key: &RoomKey, conn: &ConnRef, first: bool) {
        let user_id = &*user_of(key);
        let ts = time::rfc3339_millis(time::now_millis());
        let device = Device { user_id, conn_id: format!("{}-{}", conn.node, conn.conn_id) };
        room.fan_out(sink, key, Some(conn), frames::event("device.online", device, &ts));
        let mut inboxes = self.inbox_shard(key).lock();
        let was_in_grace = inboxes.get_mut(key).is_some_and(|user_box| user_box.offline_at.take().is_some());
        if first && !was_in_grace {
            self.presence_event(inboxes.get(key), key, devices_of(room));
        }
        let Some(user_box) = inboxes.get_mut(key) else { return };
        if !user_box.rooms.is_empty() {
            // The user's server-side subscriptions: the new connection joins them too.
            let msg = EdgeMsg::Groups { conn_id: conn.conn_id, added: user_box.rooms.clone(), removed: Vec::new() };
            sink.send_to_edge(&conn.node, msg);
        }
        // Back within the grace: still online, nothing to tell.
        if !(first && was_in_grace) {
            notify(sink, user_box, key, devices_of(room));
        }
    }

    /// A connection left its user's personal room (`room` is what remains of it, if anything).
    pub(super) fn user_conn_gone(&self, room: Option<&Room>, sink: &dyn EdgeSink, key: &RoomKey, conn: &ConnRef) {
        let user_id = &*user_of(key);
        let devices = room.map(devices_of).unwrap_or(0);
        if let Some(room) = room.filter(|_| devices > 0) {
            let ts = time::rfc3339_millis(time::now_millis());
            let device = Device { user_id, conn_id: format!("{}-{}", conn.node, conn.conn_id) };
            room.fan_out(sink, key, None, frames::event("device.offline", device, &ts));
        }
        let mut inboxes = self.inbox_shard(key).lock();
        if devices == 0 {
            // The grace starts: offline only if nobody comes back in time.
            let user_box = inboxes.entry(key.clone()).or_default();
            user_box.offline_at = Some(time::now_millis() + self.presence_grace.as_millis() as u64);
            self.presence_pending.lock().insert(key.clone());
        } else if let Some(user_box) = inboxes.get(key) {
            notify(sink, user_box, key, devices);
        }
    }

    /// Turns users whose grace ran out offline. Called periodically.
    pub fn expire_presence(&self, sink: &dyn EdgeSink) {
        let keys: Vec<RoomKey> = self.presence_pending.lock().iter().cloned().collect();
        let now = time::now_millis();
        for key in keys {
            let online = self.shard(&key).lock().get(&key).map(|room| devices_of(room)).unwrap_or(0) > 0;
            let mut inboxes = self.inbox_shard(&key).lock();
            let Some(user_box) = inboxes.get_mut(&key) else {
                self.presence_pending.lock().remove(&key);
                continue;
            };
            match user_box.offline_at {
                Some(at) if at <= now => {
                    user_box.offline_at = None;
                    if !online {
                        notify(sink, user_box, &key, 0);
                        self.presence_event(Some(user_box), &key, 0);
                    }
                }
                Some(_) => continue,
                None => {}
            }
            self.presence_pending.lock().remove(&key);
            if user_box.is_idle() {
                inboxes.remove(&key);
            }
        }
    }

    /// `presence.changed`: the user of personal room `key` turned online or offline, or set
    /// its status; `presence` is what `presence.update` tells.
    fn presence_event(&self, user_box: Option<&UserBox>, key: &RoomKey, devices: usize) {
        self.webhooks.emit(EventType::PresenceChanged, key, false, &user_of(key), || {
            let idle = UserBox::default();
            webhook::value("presence", &data(user_box.unwrap_or(&idle), key, devices))
        });
    }

    pub(super) fn presence_op(&self, shard: &Rooms, ctx: &OpCtx<'_>, op: PresenceOp) {
        let (sink, key, sender) = (ctx.sink, ctx.key, ctx.sender);
        let devices = shard.get(key).map(|room| devices_of(room)).unwrap_or(0);
        let mut inboxes = self.inbox_shard(key).lock();
        match op {
            PresenceOp::Set { status, message } => {
                if *user_of(key) != *sender.user_id {
                    drop(inboxes);
                    return ctx.error(ReplyError::new(ErrorCode::Forbidden, "presence is set by its user"));
                }
                let user_box = inboxes.entry(key.clone()).or_default();
                user_box.status = (status != "online").then_some(status);
                user_box.message = message;
                notify(sink, user_box, key, devices);
                self.presence_event(Some(user_box), key, devices);
                let entry = entry(user_box, key, devices);
                drop(inboxes);
                // The ack's data is the entry itself.
                ctx.ack(serde_json::from_slice::<serde_json::Value>(&entry).unwrap_or_default());
            }
            PresenceOp::Subscribe => {
                let user_box = inboxes.entry(key.clone()).or_default();
                if !user_box.subscribers.contains(&sender.conn) {
                    user_box.subscribers.push(sender.conn.clone());
                }
                // The state now, so the subscriber starts from the truth.
                push(sink, &sender.conn, update_frame(user_box, key, devices));
            }
            PresenceOp::Unsubscribe => {
                if let Some(user_box) = inboxes.get_mut(key) {
                    user_box.subscribers.retain(|conn| conn != &sender.conn);
                    if user_box.is_idle() {
                        inboxes.remove(key);
                    }
                }
            }
            PresenceOp::Query { query_id } => {
                let entry = match inboxes.get(key) {
                    Some(user_box) => entry(user_box, key, devices),
                    None => entry(&UserBox::default(), key, devices),
                };
                let msg = EdgeMsg::PresenceInfo { conn_id: sender.conn.conn_id, query_id, entry };
                sink.send_to_edge(&sender.conn.node, msg);
            }
        }
    }
}

/// The user of personal room `key`.
pub(super) fn user_of(key: &RoomKey) -> std::borrow::Cow<'_, str> {
    crate::auth::unescape_user_id(key.room().strip_prefix("user:").unwrap_or(key.room()))
}

fn devices_of(room: &Room) -> usize {
    room.users.values().map(|user| user.conns.len()).sum()
}

fn status_of(user_box: &UserBox, devices: usize) -> &str {
    if devices == 0 && user_box.offline_at.is_none() {
        "offline"
    } else {
        user_box.status.as_deref().unwrap_or("online")
    }
}

fn data<'a>(user_box: &'a UserBox, key: &'a RoomKey, devices: usize) -> PresenceData<'a> {
    PresenceData {
        user_id: user_of(key),
        status: status_of(user_box, devices),
        message: user_box.message.as_deref(),
        devices,
    }
}

/// `{user_id, status, message, devices}` as JSON.
fn entry(user_box: &UserBox, key: &RoomKey, devices: usize) -> Bytes {
    Bytes::from(serde_json::to_vec(&data(user_box, key, devices)).unwrap_or_default())
}

fn update_frame(user_box: &UserBox, key: &RoomKey, devices: usize) -> Bytes {
    let ts = time::rfc3339_millis(time::now_millis());
    #[derive(Serialize)]
    struct Update<'a> {
        #[serde(flatten)]
        data: PresenceData<'a>,
        ts: &'a str,
    }
    frames::event("presence.update", Update { data: data(user_box, key, devices), ts: &ts }, &ts)
}

/// Sends `presence.update` to every subscriber of the user.
fn notify(sink: &dyn EdgeSink, user_box: &UserBox, key: &RoomKey, devices: usize) {
    if user_box.subscribers.is_empty() {
        return;
    }
    let frame = update_frame(user_box, key, devices);
    for subscriber in &user_box.subscribers {
        push(sink, subscriber, frame.clone());
    }
}
