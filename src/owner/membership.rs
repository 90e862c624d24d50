//! Who is in a room, as requests change it: joining (with replay after a `since` and the
//! inbox of a personal room), leaving, the member list, and the resubscription of a room's
//! connections after it changed owner.

use bytes::Bytes;
use serde::Serialize;

use super::context::event_now;
use super::{Added, EdgeSink, OpCtx, Owner, Removed, Room, Rooms};
use crate::frames;
use crate::metrics;
use crate::ops::{EdgeMsg, Sender};
use crate::protocol::{ErrorCode, ReplyError, Since};
use crate::room::RoomKey;
use crate::webhook::{EventType, Webhooks};

impl Owner {
    /// The connections of an edge whose owner for `key` changed (the room was theirs before
    /// the change). A room that is not here (not handed over, or not yet) restarts under a
    /// new epoch unless a hand-off or the durable store brings its state; its members are
    /// told with `room.reset` before the room's first message (see [`Owner::reset_if_due`]).
    ///
    /// A resubscription can come late: after the restarted room's reset went out, or into a
    /// room a join started here. Its connections knew the previous owner's epoch, not this
    /// one, so each that is new to the room gets its own `room.reset` before anything else.
    pub(super) fn resubscribe(&self, shard: &mut Rooms, sink: &dyn EdgeSink, key: RoomKey, members: Vec<Sender>) {
        let restarted = !shard.contains_key(&key);
        let room = shard.entry(key.clone()).or_insert_with(|| self.new_room());
        room.reset_due |= restarted;
        let late = room.began_here && !room.reset_due && !self.store.durable();
        // Rendered once for every connection it goes to.
        let reset = late.then(|| reset_frame(&key, room, ResetReason::OwnerLost));
        let mut told = 0;
        for member in members {
            let added = room.add_conn(&member.user_id, &member.name, member.is_moderator, &member.conn);
            let frames = match &reset {
                Some(reset) if added != Added::AlreadyIn => {
                    told += 1;
                    vec![reset.clone()]
                }
                _ => Vec::new(),
            };
            sink.send_to_edge(
                &member.conn.node,
                EdgeMsg::Joined { room: key.clone(), conn_id: member.conn.conn_id, request_id: 0, frames },
            );
        }
        if told > 0 {
            metrics::room_reset();
            tracing::info!(room = %key, connections = told, "late resubscription told of the room's new epoch");
        }
        if restarted && self.store.durable() {
            // The store tells whether the room goes on or restarts (`take_loaded`).
            self.start_load(room, &key);
        }
    }

    /// Before the first request on a room restarted by resubscriptions (no hand-off brought
    /// its state): without a durable store its history is gone, and every member gets
    /// `room.reset` before anything of the new epoch.
    pub(super) fn reset_if_due(&self, room: &mut Room, sink: &dyn EdgeSink, key: &RoomKey) {
        if room.reset_due && !self.store.durable() {
            room.reset_due = false;
            announce_reset(room, sink, key, ResetReason::OwnerLost);
        }
    }

    pub(super) fn join(&self, shard: &mut Rooms, ctx: &OpCtx<'_>, since: Option<Since>) {
        let (key, sender) = (ctx.key, ctx.sender);
        if self.is_banned(key, &sender.user_id) {
            let error = ReplyError::new(ErrorCode::Forbidden, "banned from this room");
            return ctx.left(vec![ctx.error_frame(&error)]);
        }
        let room = shard.entry(key.clone()).or_insert_with(|| self.new_room());
        if let (Some(limit), true) = (self.max_user_connections, key.room().starts_with("user:")) {
            let conns = room.users.get(&sender.user_id).map(|user| user.conns.as_slice()).unwrap_or_default();
            if conns.len() >= limit && !conns.contains(&sender.conn) {
                ctx.left(vec![frames::user_connections_refused()]);
                if room.can_forget() {
                    shard.remove(key);
                }
                return;
            }
        }
        let added = room.add_conn(&sender.user_id, &sender.name, sender.is_moderator, &sender.conn);
        let mut frames = if key.room().starts_with("user:") { self.take_inbox(key) } else { Vec::new() };
        let recovered = since.map(|since| {
            let replay = room.replay_after(&since);
            if let Some(messages) = &replay {
                frames.extend(messages.iter().map(|message| message.render(key.room(), true)));
            }
            replay.is_some()
        });
        #[derive(Serialize)]
        struct JoinAck<'a> {
            room: &'a str,
            status: &'static str,
            seq: u64,
            epoch: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            recovered: Option<bool>,
        }
        let ack = JoinAck { room: key.room(), status: "joined", seq: room.seq, epoch: &room.epoch, recovered };
        frames.extend(frames::ack(ctx.op_id, ack));
        ctx.joined(frames);
        if key.room().starts_with("user:") && added != Added::AlreadyIn {
            self.user_conn_added(room, ctx.sink, key, &sender.conn, added == Added::FirstOfUser);
        }
        if added == Added::FirstOfUser {
            ctx.fan_out(room, member_joined_frame(key, &sender.user_id, &sender.name));
            membership_event(ctx.webhooks, EventType::RoomJoined, key, &sender.user_id);
        }
    }
}

pub(super) fn leave(shard: &mut Rooms, ctx: &OpCtx<'_>) -> Removed {
    #[derive(Serialize)]
    struct LeaveAck<'a> {
        room: &'a str,
        status: &'static str,
    }
    let frames: Vec<Bytes> =
        frames::ack(ctx.op_id, LeaveAck { room: ctx.room(), status: "left" }).into_iter().collect();
    let Some(room) = shard.get_mut(ctx.key) else {
        // Not in the room: leaving is idempotent.
        ctx.left(frames);
        return Removed::NotThere;
    };
    let removed = room.remove_conn(&ctx.sender.user_id, &ctx.sender.conn);
    ctx.left(frames);
    if removed == Removed::LastOfUser {
        room.fan_out(ctx.sink, ctx.key, None, member_left_frame(ctx.key, &ctx.sender.user_id));
        membership_event(ctx.webhooks, EventType::RoomLeft, ctx.key, &ctx.sender.user_id);
    }
    if room.can_forget() {
        // Empty rooms are forgotten; without persistence their history goes with them and
        // the next join starts a new epoch.
        shard.remove(ctx.key);
        metrics::rooms_owned(-1.0);
    }
    removed
}

pub(super) fn members(shard: &mut Rooms, ctx: &OpCtx<'_>) {
    let Some(room) = ctx.in_room(shard) else { return };
    #[derive(Serialize)]
    struct Member<'a> {
        user_id: &'a str,
        name: &'a str,
        status: &'static str,
        connections: usize,
    }
    #[derive(Serialize)]
    struct MembersAck<'a> {
        room: &'a str,
        members: Vec<Member<'a>>,
    }
    let mut members: Vec<Member<'_>> = room
        .users
        .iter()
        .map(|(user_id, user)| Member { user_id, name: &user.name, status: "online", connections: user.conns.len() })
        .collect();
    members.sort_by(|a, b| a.user_id.cmp(b.user_id));
    ctx.ack(MembersAck { room: ctx.room(), members });
}

/// `room.joined` or `room.left` (a user's first connection in, its last one out) of a room
/// that is not a personal room (connection events tell of those).
pub(super) fn membership_event(webhooks: &Webhooks, kind: EventType, key: &RoomKey, user_id: &str) {
    if !key.room().starts_with("user:") {
        webhooks.emit(kind, key, true, user_id, Vec::new);
    }
}

/// `member.joined` of `user_id`, to the room's other members.
fn member_joined_frame(key: &RoomKey, user_id: &str, name: &str) -> Bytes {
    #[derive(Serialize)]
    struct MemberJoined<'a> {
        room: &'a str,
        user_id: &'a str,
        name: &'a str,
    }
    event_now("member.joined", MemberJoined { room: key.room(), user_id, name })
}

pub(super) fn member_left_frame(key: &RoomKey, user_id: &str) -> Bytes {
    #[derive(Serialize)]
    struct MemberLeft<'a> {
        room: &'a str,
        user_id: &'a str,
    }
    event_now("member.left", MemberLeft { room: key.room(), user_id })
}

/// Why a room's subscribers get `room.reset`.
#[derive(Clone, Copy)]
pub(super) enum ResetReason {
    /// Its owner died and nothing kept its history.
    OwnerLost,
    /// The durable store no longer holds it.
    StoreLost,
}

impl ResetReason {
    fn as_str(self) -> &'static str {
        match self {
            ResetReason::OwnerLost => "owner_lost",
            ResetReason::StoreLost => "store_lost",
        }
    }
}

/// Sends every member of `room` `room.reset{room, epoch, seq, reason}`: the room's history
/// is gone, it goes on from `seq` under `epoch`.
pub(super) fn announce_reset(room: &Room, sink: &dyn EdgeSink, key: &RoomKey, reason: ResetReason) {
    metrics::room_reset();
    tracing::info!(room = %key, reason = reason.as_str(), "room restarted under a new epoch");
    room.fan_out(sink, key, None, reset_frame(key, room, reason));
}

pub(super) fn reset_frame(key: &RoomKey, room: &Room, reason: ResetReason) -> Bytes {
    #[derive(Serialize)]
    struct Reset<'a> {
        room: &'a str,
        epoch: &'a str,
        seq: u64,
        reason: &'static str,
    }
    event_now("room.reset", Reset { room: key.room(), epoch: &room.epoch, seq: room.seq, reason: reason.as_str() })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;
    use ringcast_cluster::NodeId;

    use super::super::{EdgeSink, Owner, RoomSnapshot};
    use crate::ids::IdGen;
    use crate::ops::{ConnRef, EdgeMsg, OwnerOp, RequestKind, Sender};
    use crate::protocol::ChatSend;
    use crate::room::RoomKey;

    #[derive(Default)]
    struct Sink(Mutex<Vec<(NodeId, EdgeMsg)>>);

    impl EdgeSink for Sink {
        fn send_to_edge(&self, node: &NodeId, msg: EdgeMsg) {
            self.0.lock().push((node.clone(), msg));
        }
    }

    impl Sink {
        /// The text of every frame `node` was sent for connection `conn_id` (or its room).
        fn texts(&self, node: &str) -> Vec<String> {
            let text = |frame: &bytes::Bytes| String::from_utf8_lossy(frame).into_owned();
            self.0
                .lock()
                .iter()
                .filter(|(to, _)| to.as_str() == node)
                .flat_map(|(_, msg)| match msg {
                    EdgeMsg::Deliver { frame, .. } | EdgeMsg::Reply { frame, .. } => vec![text(frame)],
                    EdgeMsg::Joined { frames, .. } => frames.iter().map(text).collect(),
                    _ => Vec::new(),
                })
                .collect()
        }
    }

    fn member(node: &str, conn_id: u64, user: &str) -> Sender {
        Sender {
            conn: ConnRef { node: NodeId::new(node), conn_id },
            user_id: Arc::from(user),
            name: Arc::from(user),
            is_moderator: false,
            request_id: 0,
        }
    }

    fn publish(owner: &Owner, sink: &Sink, key: &RoomKey, sender: Sender, text: &str) {
        let send = ChatSend {
            room: key.room().to_string(),
            text: text.into(),
            attachments: Vec::new(),
            reply_to: None,
            client_id: None,
            meta: None,
        };
        let op = OwnerOp::request(key.clone(), sender, Some("p".into()), RequestKind::Publish(send));
        assert!(owner.handle(sink, op, |_| true, false).is_ok());
    }

    fn resubscribe(owner: &Owner, sink: &Sink, key: &RoomKey, members: Vec<Sender>) {
        let op = OwnerOp::Resubscribe { room: key.clone(), members };
        assert!(owner.handle(sink, op, |_| true, false).is_ok());
    }

    #[test]
    fn test_late_resubscription_is_told_of_the_new_epoch() {
        let owner = Owner::new(IdGen::new("n0", 1), 100, std::time::Duration::from_secs(5));
        let sink = Sink::default();
        let key = RoomKey::new("t", "lobby");
        // Edge a resubscribes first: the room restarts, its reset goes out before message 1.
        resubscribe(&owner, &sink, &key, vec![member("a", 1, "u1")]);
        publish(&owner, &sink, &key, member("a", 1, "u1"), "one");
        let a = sink.texts("a");
        assert!(a[0].contains("\"room.reset\"") && a[0].contains("\"seq\":0"), "{a:?}");
        // Edge b comes late: its connection knew the old epoch, and learns the new one first.
        resubscribe(&owner, &sink, &key, vec![member("b", 2, "u2")]);
        publish(&owner, &sink, &key, member("a", 1, "u1"), "two");
        let b = sink.texts("b");
        assert_eq!(b.len(), 2, "{b:?}");
        assert!(b[0].contains("\"room.reset\"") && b[0].contains("\"seq\":1"), "{b:?}");
        assert!(b[1].contains("\"chat.message\"") && b[1].contains("\"seq\":2"), "{b:?}");
        // A connection already in the room is not told again.
        let before = sink.texts("a").len();
        resubscribe(&owner, &sink, &key, vec![member("a", 1, "u1")]);
        assert_eq!(sink.texts("a").len(), before);
    }

    #[test]
    fn test_resubscription_into_a_room_a_join_started_is_told() {
        let owner = Owner::new(IdGen::new("n0", 1), 100, std::time::Duration::from_secs(5));
        let sink = Sink::default();
        let key = RoomKey::new("t", "lobby");
        let join =
            OwnerOp::request(key.clone(), member("a", 1, "u1"), Some("j".into()), RequestKind::Join { since: None });
        assert!(owner.handle(&sink, join, |_| true, false).is_ok());
        resubscribe(&owner, &sink, &key, vec![member("b", 2, "u2")]);
        let b = sink.texts("b");
        assert!(b.len() == 1 && b[0].contains("\"room.reset\""), "{b:?}");
    }

    #[test]
    fn test_handed_off_room_goes_on_without_reset() {
        let owner = Owner::new(IdGen::new("n0", 1), 100, std::time::Duration::from_secs(5));
        let sink = Sink::default();
        let key = RoomKey::new("t", "lobby");
        let snapshot = |users| RoomSnapshot {
            key: key.clone(),
            epoch: "old".into(),
            seq: 7,
            history: Vec::new(),
            users,
            sent: Vec::new(),
        };
        // Resubscribed first, then the hand-off: the room goes on under the old epoch.
        resubscribe(&owner, &sink, &key, vec![member("a", 1, "u1")]);
        owner.install(&sink, snapshot(Vec::new()));
        resubscribe(&owner, &sink, &key, vec![member("b", 2, "u2")]);
        publish(&owner, &sink, &key, member("a", 1, "u1"), "eight");
        for node in ["a", "b"] {
            let texts = sink.texts(node);
            assert!(texts.iter().all(|t| !t.contains("room.reset")), "{texts:?}");
        }
        assert!(sink.texts("b")[0].contains("\"seq\":8"));
        // A hand-off that comes after the room started anew: its connections are told.
        let other = RoomKey::new("t", "other");
        let key = other.clone();
        resubscribe(&owner, &sink, &key, vec![member("a", 1, "u1")]);
        publish(&owner, &sink, &key, member("a", 1, "u1"), "one");
        let c = ConnRef { node: NodeId::new("c"), conn_id: 3 };
        owner.install(
            &sink,
            RoomSnapshot { key: other, ..snapshot(vec![(Arc::from("u3"), Arc::from("u3"), false, vec![c])]) },
        );
        let c = sink.texts("c");
        assert!(c.len() == 1 && c[0].contains("\"room.reset\"") && c[0].contains("\"seq\":1"), "{c:?}");
        // A room that goes on under the snapshot's epoch (as one loaded from a durable store
        // does) tells nobody, though it has messages already.
        let same = RoomKey::new("t", "same");
        resubscribe(&owner, &sink, &same, vec![member("e", 5, "u5")]);
        publish(&owner, &sink, &same, member("e", 5, "u5"), "one");
        let reset = sink.texts("e").into_iter().find(|t| t.contains("room.reset")).unwrap();
        let value: serde_json::Value = serde_json::from_str(&reset).unwrap();
        let epoch = value["data"]["epoch"].as_str().unwrap().to_string();
        let d = ConnRef { node: NodeId::new("d"), conn_id: 4 };
        let users = vec![(Arc::from("u4"), Arc::from("u4"), false, vec![d])];
        owner.install(&sink, RoomSnapshot { key: same, epoch, seq: 1, ..snapshot(users) });
        assert!(sink.texts("d").is_empty(), "{:?}", sink.texts("d"));
    }
}
