//! One room on its owner: its sequence and history, who is in it and on which nodes, its
//! idempotency memory, and the fan-out of a frame to every node subscribed to it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use ringcast_cluster::NodeId;
use smallvec::SmallVec;

use super::{durable, EdgeSink, Owner, SentAck, StoredMessage};
use crate::metrics;
use crate::ops::{ConnRef, EdgeMsg};
use crate::protocol::Since;
use crate::room::RoomKey;
use crate::time;

/// The rooms of one shard. A room is boxed: a table keeps 1.1 to 2.3 slots per entry, and a
/// slot then costs a pointer instead of a whole room (most rooms are personal ones).
pub(super) type Rooms = HashMap<RoomKey, Box<Room>>;

/// One room on its owner.
pub(super) struct Room {
    pub(super) epoch: Arc<str>,
    pub(super) seq: u64,
    /// The last `history_size` messages, oldest first.
    pub(super) history: VecDeque<Arc<StoredMessage>>,
    /// Subscribed nodes and how many of the room's connections each holds: a handful at most
    /// (one per node of the cluster), so a list; the first is inline, so that the room of
    /// one node (every personal room) allocates nothing for it.
    pub(super) nodes: SmallVec<[(NodeId, u32); 1]>,
    pub(super) users: Members,
    /// Recent `client_id`s by (user, client_id), with the ack they got, oldest first.
    pub(super) sent: SentIds,
    /// Users typing, with the instant their `typing:true` runs out.
    pub(super) typing: Vec<(Arc<str>, std::time::Instant)>,
    /// Whether the durable state is in memory (always ready without a durable store).
    pub(super) load: durable::Load,
    /// Store generation: bumped by a failed write (see [`durable`]).
    pub(super) gen: u64,
    /// The store is known to hold this room's epoch.
    pub(super) stored: bool,
    /// Jobs of this room submitted to the store and not answered yet.
    pub(super) in_flight: u32,
    /// Started by a resubscription over a durable store: its members get `room.reset` if the
    /// load finds the store without the room.
    pub(super) reset_due: bool,
    /// Started by a peer's resubscription before this node owned the key (see
    /// [`Owner::handle`]): no other op applies until it does.
    pub(super) early: bool,
    /// Its epoch began on this node (no hand-off brought the previous owner's): a connection
    /// that comes by resubscription knew another epoch, and is told with `room.reset`.
    pub(super) began_here: bool,
}

/// The idempotency memory of a room (and of a user's DMs): the last [`SENT_IDS_PER_ROOM`]
/// sends that carried a `client_id`, so a retry gets the first ack again instead of a second
/// message. Boxed and made by the first such send: most rooms (every personal room) never
/// see one, and then hold one pointer instead of a map and a queue.
#[derive(Default)]
pub(super) struct SentIds(Option<Box<SentInner>>);

#[derive(Default)]
struct SentInner {
    acks: HashMap<(Arc<str>, String), SentAck>,
    order: VecDeque<(Arc<str>, String)>,
}

const SENT_IDS_PER_ROOM: usize = 1000;

impl SentIds {
    pub(super) fn insert(&mut self, key: (Arc<str>, String), ack: SentAck) {
        let inner = self.0.get_or_insert_with(Box::default);
        if inner.acks.insert(key.clone(), ack).is_none() {
            inner.order.push_back(key);
        }
        while inner.order.len() > SENT_IDS_PER_ROOM {
            if let Some(oldest) = inner.order.pop_front() {
                inner.acks.remove(&oldest);
            }
        }
    }

    pub(super) fn get(&self, key: &(Arc<str>, String)) -> Option<&SentAck> {
        self.0.as_ref()?.acks.get(key)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|inner| inner.order.is_empty())
    }

    /// Every remembered send, oldest first: (user, client_id, first ack).
    pub(super) fn into_ordered(self) -> Vec<(Arc<str>, String, SentAck)> {
        let Some(mut inner) = self.0 else { return Vec::new() };
        let order = std::mem::take(&mut inner.order);
        order
            .into_iter()
            .filter_map(|key| {
                let ack = inner.acks.remove(&key)?;
                Some((key.0, key.1, ack))
            })
            .collect()
    }
}

pub(super) struct RoomUser {
    pub(super) name: Arc<str>,
    /// A moderator or admin (from the token of its latest join).
    pub(super) moderator: bool,
    /// The user's connections in the room: nearly always one, kept inline (a `Vec` would
    /// allocate room for four on the first push, 96 bytes per member).
    pub(super) conns: UserConns,
}

/// The connections of one user in one room.
pub(super) type UserConns = SmallVec<[ConnRef; 1]>;

/// The users in a room. A room of one user (every personal room) keeps it inline: a map of
/// one entry takes four slots, 320 bytes.
#[derive(Default)]
pub(super) enum Members {
    #[default]
    Empty,
    One(Arc<str>, RoomUser),
    Many(HashMap<Arc<str>, RoomUser>),
}

impl Members {
    pub(super) fn get(&self, user_id: &str) -> Option<&RoomUser> {
        match self {
            Members::One(id, user) if **id == *user_id => Some(user),
            Members::Many(map) => map.get(user_id),
            _ => None,
        }
    }

    pub(super) fn get_mut(&mut self, user_id: &str) -> Option<&mut RoomUser> {
        match self {
            Members::One(id, user) if **id == *user_id => Some(user),
            Members::Many(map) => map.get_mut(user_id),
            _ => None,
        }
    }

    pub(super) fn contains_key(&self, user_id: &str) -> bool {
        self.get(user_id).is_some()
    }

    pub(super) fn is_empty(&self) -> bool {
        matches!(self, Members::Empty)
    }

    /// The user's entry, made by `make` if the user is not in the room.
    pub(super) fn get_or_insert_with(&mut self, user_id: &Arc<str>, make: impl FnOnce() -> RoomUser) -> &mut RoomUser {
        match self {
            Members::Empty => *self = Members::One(user_id.clone(), make()),
            Members::One(id, _) if *id == *user_id => {}
            Members::One(..) => {
                let Members::One(id, user) = std::mem::take(self) else { unreachable!("matched above") };
                let mut map = HashMap::with_capacity(2);
                map.insert(id, user);
                map.insert(user_id.clone(), make());
                *self = Members::Many(map);
            }
            Members::Many(map) => {
                map.entry(user_id.clone()).or_insert_with(make);
            }
        }
        self.get_mut(user_id).expect("inserted above")
    }

    pub(super) fn remove(&mut self, user_id: &str) -> Option<RoomUser> {
        match self {
            Members::One(id, _) if **id == *user_id => match std::mem::take(self) {
                Members::One(_, user) => Some(user),
                _ => unreachable!("matched above"),
            },
            Members::Many(map) => {
                let user = map.remove(user_id);
                if map.is_empty() {
                    *self = Members::Empty;
                }
                user
            }
            _ => None,
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &RoomUser)> {
        let (one, many) = match self {
            Members::Empty => (None, None),
            Members::One(id, user) => (Some((id, user)), None),
            Members::Many(map) => (None, Some(map)),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &RoomUser> {
        self.iter().map(|(_, user)| user)
    }

    pub(super) fn into_vec(self) -> Vec<(Arc<str>, RoomUser)> {
        match self {
            Members::Empty => Vec::new(),
            Members::One(id, user) => vec![(id, user)],
            Members::Many(map) => map.into_iter().collect(),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Added {
    AlreadyIn,
    OneMoreOfUser,
    FirstOfUser,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Removed {
    NotThere,
    OneOfUser,
    LastOfUser,
}

impl Owner {
    pub(super) fn new_room(&self) -> Box<Room> {
        metrics::rooms_owned(1.0);
        Box::new(Room {
            epoch: Arc::from(self.ids.epoch(time::now_millis())),
            seq: 0,
            history: VecDeque::new(),
            nodes: SmallVec::new(),
            users: Members::default(),
            sent: SentIds::default(),
            typing: Vec::new(),
            load: if self.store.durable() { durable::Load::Stale } else { durable::Load::Ready },
            gen: 0,
            stored: false,
            in_flight: 0,
            reset_due: false,
            early: false,
            began_here: true,
        })
    }
}

impl Room {
    pub(super) fn add_conn(&mut self, user_id: &Arc<str>, name: &Arc<str>, moderator: bool, conn: &ConnRef) -> Added {
        let user = self.users.get_or_insert_with(user_id, || RoomUser {
            name: name.clone(),
            moderator,
            conns: UserConns::new(),
        });
        user.moderator = moderator;
        if user.conns.contains(conn) {
            return Added::AlreadyIn;
        }
        let first = user.conns.is_empty();
        user.conns.push(conn.clone());
        match self.nodes.iter_mut().find(|(node, _)| *node == conn.node) {
            Some((_, count)) => *count += 1,
            None => self.nodes.push((conn.node.clone(), 1)),
        }
        if first {
            Added::FirstOfUser
        } else {
            Added::OneMoreOfUser
        }
    }

    /// Nobody in it and nothing pending: the room may be forgotten (its state, if any, is in
    /// the store). A room waiting for its load or for answers of the store is kept.
    pub(super) fn can_forget(&self) -> bool {
        self.users.is_empty() && self.in_flight == 0 && !matches!(self.load, durable::Load::Loading(_))
    }

    pub(super) fn has_conn(&self, user_id: &str, conn: &ConnRef) -> bool {
        self.users.get(user_id).is_some_and(|user| user.conns.contains(conn))
    }

    pub(super) fn remove_conn(&mut self, user_id: &str, conn: &ConnRef) -> Removed {
        let Some(user) = self.users.get_mut(user_id) else {
            return Removed::NotThere;
        };
        let Some(index) = user.conns.iter().position(|c| c == conn) else {
            return Removed::NotThere;
        };
        user.conns.swap_remove(index);
        if let Some(index) = self.nodes.iter().position(|(node, _)| *node == conn.node) {
            self.nodes[index].1 -= 1;
            if self.nodes[index].1 == 0 {
                self.nodes.swap_remove(index);
            }
        }
        if user.conns.is_empty() {
            self.users.remove(user_id);
            Removed::LastOfUser
        } else {
            Removed::OneOfUser
        }
    }

    /// The stored messages after `since`, or `None` when they cannot all be given back
    /// (another epoch, or the history no longer reaches back that far).
    pub(super) fn replay_after(&self, since: &Since) -> Option<Vec<Arc<StoredMessage>>> {
        if since.epoch != *self.epoch || since.seq > self.seq {
            return None;
        }
        let oldest_kept = self.history.front().map(|message| message.seq).unwrap_or(self.seq + 1);
        if since.seq + 1 < oldest_kept {
            return None;
        }
        Some(self.history.iter().filter(|message| message.seq > since.seq).cloned().collect())
    }

    /// Whether `node` holds connections of the room.
    pub(super) fn has_node(&self, node: &NodeId) -> bool {
        self.nodes.iter().any(|(held, _)| held == node)
    }

    /// Sends `frame` once to every subscribed node.
    pub(super) fn fan_out(&self, sink: &dyn EdgeSink, key: &RoomKey, exclude: Option<&ConnRef>, frame: Bytes) {
        for (node, _) in &self.nodes {
            let exclude_here = exclude.filter(|conn| &conn.node == node).map(|conn| conn.conn_id);
            sink.send_to_edge(
                node,
                EdgeMsg::Deliver { room: key.clone(), exclude: exclude_here, frame: frame.clone() },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every room (a personal room per user) and every member costs its owner, pinned
    /// so that it cannot grow back unnoticed (docs/benchmarks.md, "Density").
    #[test]
    fn test_membership_stays_small() {
        let sizes = [
            ("Room", std::mem::size_of::<Room>(), ROOM),
            ("RoomUser", std::mem::size_of::<RoomUser>(), ROOM_USER),
            ("(Arc<str>, RoomUser)", std::mem::size_of::<(Arc<str>, RoomUser)>(), USER_SLOT),
            ("(RoomKey, Box<Room>)", std::mem::size_of::<(RoomKey, Box<Room>)>(), ROOM_SLOT),
        ];
        let all: Vec<String> =
            sizes.iter().map(|(name, size, bound)| format!("{name}: {size} bytes, bound {bound}")).collect();
        assert!(sizes.iter().all(|(_, size, bound)| size <= bound), "{all:#?}");
    }

    fn user(name: &str) -> RoomUser {
        RoomUser { name: Arc::from(name), moderator: false, conns: UserConns::new() }
    }

    #[test]
    fn test_members_one_then_many_then_none() {
        let (alice, bob): (Arc<str>, Arc<str>) = (Arc::from("alice"), Arc::from("bob"));
        let mut members = Members::default();
        assert!(members.is_empty());
        members.get_or_insert_with(&alice, || user("Alice")).moderator = true;
        assert!(matches!(members, Members::One(..)));
        assert!(members.get("alice").is_some_and(|user| user.moderator));
        members.get_or_insert_with(&alice, || user("other"));
        assert_eq!(&*members.get("alice").unwrap().name, "Alice");
        members.get_or_insert_with(&bob, || user("Bob"));
        assert!(matches!(members, Members::Many(_)));
        let mut ids: Vec<&str> = members.iter().map(|(id, _)| &**id).collect();
        ids.sort();
        assert_eq!(ids, ["alice", "bob"]);
        assert!(members.remove("carol").is_none());
        assert_eq!(&*members.remove("alice").unwrap().name, "Alice");
        assert!(!members.contains_key("alice") && members.contains_key("bob"));
        assert!(members.remove("bob").is_some());
        assert!(members.is_empty() && members.into_vec().is_empty());
    }

    /// The allocator's 256 class (224 up to 224 bytes).
    const ROOM: usize = 232;
    const ROOM_USER: usize = 56;
    const USER_SLOT: usize = 72;
    const ROOM_SLOT: usize = 24;
}
