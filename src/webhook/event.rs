//! One webhook event: its type, what it is about, and its body as posted.

use std::sync::Arc;

use bytes::Bytes;

use crate::config::EVENT_TYPES;
use crate::room::RoomKey;
use crate::time;

/// The event types of PROTOCOL.md §12, in the order of [`EVENT_TYPES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    ConnectionOpened,
    ConnectionClosed,
    RoomJoined,
    RoomLeft,
    MessageCreated,
    MessageEdited,
    MessageDeleted,
    DmSent,
    PresenceChanged,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        EVENT_TYPES[self as usize]
    }
}

/// A member of an event's `data` besides tenant, room, user and node.
pub enum Field {
    /// A client frame: its `data` (the message as clients see it), taken out when the
    /// event is posted, not when it is emitted.
    Frame(Bytes),
    Value(serde_json::Value),
}

/// One event, as queued to every endpoint.
pub struct Event {
    pub kind: EventType,
    /// Kept by every retry: receivers deduplicate by it.
    pub id: String,
    pub at_millis: u64,
    /// What the event is about: the order key of its lane.
    pub key: RoomKey,
    /// False for events about a user (the key is its personal room): no `room` in `data`.
    pub room_event: bool,
    pub user: Arc<str>,
    pub fields: Vec<(&'static str, Field)>,
}

impl Event {
    /// `{"type","id","timestamp","data":{tenant, room, user, node, ...}}`.
    pub fn body(&self, node: &str) -> Vec<u8> {
        let mut data = serde_json::Map::new();
        data.insert("tenant".into(), self.key.tenant().into());
        if self.room_event {
            data.insert("room".into(), self.key.room().into());
        }
        data.insert("user".into(), (*self.user).into());
        data.insert("node".into(), node.into());
        for (name, field) in &self.fields {
            let value = match field {
                Field::Value(value) => value.clone(),
                Field::Frame(frame) => serde_json::from_slice::<serde_json::Value>(frame)
                    .ok()
                    .and_then(|mut frame| frame.get_mut("data").map(serde_json::Value::take))
                    .unwrap_or_default(),
            };
            data.insert((*name).into(), value);
        }
        let body = serde_json::json!({
            "type": self.kind.as_str(),
            "id": self.id,
            "timestamp": time::rfc3339_millis(self.at_millis),
            "data": data,
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }
}
