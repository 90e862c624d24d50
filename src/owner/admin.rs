//! What the admin API (PROTOCOL.md §11) asks of an owner: its rooms as they stand, and a
//! frame for everyone in one room. Read under the shard locks like every op; nothing here
//! changes a room.

use bytes::Bytes;
use serde::Serialize;

use super::{EdgeSink, Owner, Room};
use crate::room::RoomKey;

/// A room as the admin API shows it: `{room, owner, seq, epoch, members}`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RoomInfo {
    pub room: String,
    pub owner: String,
    pub seq: u64,
    pub epoch: String,
    pub members: Vec<MemberInfo>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MemberInfo {
    pub user_id: String,
    pub name: String,
    /// The user's connections in the room, on every node.
    pub connections: usize,
}

/// Counts of one tenant on this owner, for `GET /v1/stats`.
#[derive(Debug, Default, Clone, Copy)]
pub struct OwnedCounts {
    /// Users with a connection: personal rooms held (each user's connections are in it).
    pub users: u64,
    /// Rooms held, personal rooms not counted.
    pub rooms: u64,
}

impl Owner {
    /// The rooms of `tenant` this node holds whose name starts with `prefix`, by name.
    pub fn admin_rooms(&self, owner: &str, tenant: &str, prefix: &str) -> Vec<RoomInfo> {
        let mut rooms: Vec<RoomInfo> = self
            .shards
            .iter()
            .flat_map(|shard| {
                let shard = shard.lock();
                shard
                    .iter()
                    .filter(|(key, _)| key.tenant() == tenant && key.room().starts_with(prefix))
                    .map(|(key, room)| room.info(key, owner))
                    .collect::<Vec<_>>()
            })
            .collect();
        rooms.sort_by(|a, b| a.room.cmp(&b.room));
        rooms
    }

    /// One room, if this node holds it.
    pub fn admin_room(&self, owner: &str, key: &RoomKey) -> Option<RoomInfo> {
        self.shard(key).lock().get(key).map(|room| room.info(key, owner))
    }

    pub fn admin_counts(&self, tenant: &str) -> OwnedCounts {
        let mut counts = OwnedCounts::default();
        for shard in self.shards.iter() {
            for key in shard.lock().keys().filter(|key| key.tenant() == tenant) {
                if key.room().starts_with("user:") {
                    counts.users += 1;
                } else {
                    counts.rooms += 1;
                }
            }
        }
        counts
    }

    /// Sends `frame` to every connection in the room, once per subscribed node, in order with
    /// the room's other frames. `None` when this node does not hold the room; otherwise the
    /// number of its connections.
    pub fn admin_deliver(&self, sink: &dyn EdgeSink, key: &RoomKey, frame: Bytes) -> Option<usize> {
        let shard = self.shard(key).lock();
        let room = shard.get(key)?;
        room.fan_out(sink, key, None, frame);
        Some(room.users.values().map(|user| user.conns.len()).sum())
    }
}

impl Room {
    fn info(&self, key: &RoomKey, owner: &str) -> RoomInfo {
        let mut members: Vec<MemberInfo> = self
            .users
            .iter()
            .map(|(user_id, user)| MemberInfo {
                user_id: user_id.to_string(),
                name: user.name.to_string(),
                connections: user.conns.len(),
            })
            .collect();
        members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        RoomInfo {
            room: key.room().to_string(),
            owner: owner.to_string(),
            seq: self.seq,
            epoch: self.epoch.to_string(),
            members,
        }
    }
}
