//! The owner over a durable store: keys loaded on first use, ops that change durable state
//! answered only once the store accepted their writes (see [`crate::store`]).
//!
//! A room with a durable store is in one of three load states:
//! - `Ready`: its state in memory is what the store holds, plus writes on their way;
//! - `Loading`: its state is being read; every op waits, in order, until it is there;
//! - `Stale`: never loaded, or a write failed (memory may be ahead of the store): ops that
//!   need durable state start a load, the others (leave, members, presence, typing, ...)
//!   apply at once, so live traffic of a room keeps going while the store is away.
//!
//! A failed write bumps the room's `gen` and makes it stale; answers of later writes of the
//! older generation are then held back too (answered `unavailable`), since their room is
//! reloaded from what the store really holds. No op is ever acknowledged before its writes
//! were stored.

use std::sync::Arc;

use parking_lot::Mutex;
use ringcast_cluster::NodeId;

use super::membership::{announce_reset, ResetReason};
use super::{EdgeSink, Owner, Room, Rooms, SentAck};
use crate::ops::{EdgeMsg, OwnerOp, Request, RequestKind, RoomAction};
use crate::room::RoomKey;
use crate::store::{journal, Job, Loaded, Refusal, StoreError, Write};

/// Ops waiting for one room's load at most; beyond, they are answered `unavailable`.
const MAX_WAITING: usize = 4096;

pub(super) enum Load {
    Ready,
    Loading(Vec<OwnerOp>),
    Stale,
}

/// Collects the answers of an op while its writes are on their way.
#[derive(Default)]
struct Held(Mutex<Vec<(NodeId, EdgeMsg)>>);

impl EdgeSink for Held {
    fn send_to_edge(&self, node: &NodeId, msg: EdgeMsg) {
        self.0.lock().push((node.clone(), msg));
    }
}

/// The op needs the room's durable state (or changes it).
fn needs_store(op: &OwnerOp) -> bool {
    let Some(request) = op.as_request() else { return false };
    match &request.kind {
        RequestKind::Join { .. } | RequestKind::Publish(_) | RequestKind::ToUser(_) => true,
        RequestKind::Act(action) => {
            !matches!(action, RoomAction::Typing { .. } | RoomAction::Receipt { .. } | RoomAction::Upload { .. })
        }
        // A change of the user's server-side subscriptions writes them whole: the stored ones
        // first.
        RequestKind::UserGroups { added, removed } => {
            added.iter().chain(removed).any(|entry| crate::ops::subscribed_room(entry).is_some())
        }
        RequestKind::Leave | RequestKind::Members | RequestKind::Presence(_) => false,
    }
}

pub(super) fn refuse(sink: &dyn EdgeSink, op: &OwnerOp, message: &'static str) {
    if let Some(refusal) = Refusal::of(op) {
        send_refusal(sink, refusal, message);
    }
}

fn send_refusal(sink: &dyn EdgeSink, refusal: Refusal, message: &'static str) {
    let (node, msg) = refusal.answer(message);
    sink.send_to_edge(&node, msg);
}

impl Owner {
    /// Applies `op` to a room served over a durable store (the shard is locked, the key is
    /// ours): waits for the room's load when it must, holds the answers until the writes are
    /// stored.
    pub(super) fn gate(&self, shard: &mut Rooms, sink: &dyn EdgeSink, op: OwnerOp) {
        let key = op.room().clone();
        let room = shard.entry(key.clone()).or_insert_with(|| self.new_room());
        match &mut room.load {
            Load::Ready => {}
            Load::Loading(waiting) => {
                if waiting.len() >= MAX_WAITING {
                    return refuse(sink, &op, "store busy, retry");
                }
                return waiting.push(op);
            }
            Load::Stale if needs_store(&op) => {
                self.start_load(room, &key);
                if let Load::Loading(waiting) = &mut room.load {
                    waiting.push(op);
                }
                return;
            }
            Load::Stale => {}
        }
        let gen = room.gen;
        journal::begin();
        let held = Held::default();
        let on_fail = Refusal::of(&op);
        self.apply(shard, &held, op);
        let writes = journal::end();
        let on_ok = held.0.into_inner();
        // Answers never overtake those of the room's writes still on their way (a join's
        // replay must not meet a message's live delivery twice): they queue behind them, as
        // a job without writes.
        let room = shard.get_mut(&key);
        let behind = room.as_ref().is_some_and(|room| room.in_flight > 0);
        if writes.is_empty() && !behind {
            for (node, msg) in on_ok {
                sink.send_to_edge(&node, msg);
            }
            // An op on a room nobody is in (members of an unknown room, a presence query)
            // leaves nothing behind.
            if shard.get(&key).is_some_and(|room| room.can_forget()) {
                shard.remove(&key);
                crate::metrics::rooms_owned(-1.0);
            }
            return;
        }
        let job = Job { key, gen, writes, on_ok, on_fail };
        match self.store.submit(job) {
            Ok(()) => {
                if let Some(room) = room {
                    room.in_flight += 1;
                }
            }
            Err(job) => self.write_failed(shard, sink, job),
        }
    }

    /// Starts reading the room's state from the store; ops wait for it.
    pub(super) fn start_load(&self, room: &mut Room, key: &RoomKey) {
        room.load = Load::Loading(Vec::new());
        if self.loads.send(key.clone()).is_err() {
            tracing::warn!("store loader gone");
        }
    }

    /// A load the store answered: the room takes the state and its waiting ops apply, in
    /// order (or are answered `unavailable` when the load failed).
    pub fn loaded(
        &self,
        sink: &dyn EdgeSink,
        key: &RoomKey,
        result: Result<Loaded, StoreError>,
        owns: impl Fn(&RoomKey) -> bool,
    ) {
        let mut shard = self.shard(key).lock();
        let Some(room) = shard.get_mut(key) else { return };
        let Load::Loading(waiting) = std::mem::replace(&mut room.load, Load::Stale) else { return };
        match result {
            Ok(loaded) => {
                self.take_loaded(sink, room, key, loaded);
                room.load = Load::Ready;
                for op in waiting {
                    if shard.contains_key(op.room()) || owns(op.room()) {
                        self.gate(&mut shard, sink, op);
                    } else {
                        refuse(sink, &op, "room is moving, retry");
                    }
                }
            }
            Err(err) => {
                tracing::debug!(room = %key, error = %err, "room load failed");
                for op in waiting {
                    // A connection's automatic join of its personal room goes ahead without
                    // its inbox (left in the store for a later connection): it stays
                    // reachable live while the store is away.
                    let quiet_personal_join =
                        matches!(op.as_request(), Some(Request { op_id: None, kind: RequestKind::Join { .. }, .. }))
                            && key.room().starts_with("user:");
                    if needs_store(&op) && !quiet_personal_join {
                        refuse(sink, &op, "store unavailable");
                    } else {
                        self.apply(&mut shard, sink, op);
                    }
                }
            }
        }
        if shard.get(key).is_some_and(|room| room.can_forget()) {
            shard.remove(key);
            crate::metrics::rooms_owned(-1.0);
        }
    }

    /// The room's state from the store. State already in memory (a hand-off that arrived
    /// while loading) is kept when it is ahead of the store's. Subscribers whose room the store does not hold (it lost it, or it never got the
    /// epoch of an owner that died) are told with `room.reset`.
    fn take_loaded(&self, sink: &dyn EdgeSink, room: &mut Room, key: &RoomKey, loaded: Loaded) {
        let reset_due = std::mem::take(&mut room.reset_due);
        match loaded.epoch {
            Some(epoch) => room.epoch = Arc::from(epoch),
            None => {
                if room.stored {
                    // The store lost the room (flushed, or restarted without persistence):
                    // its seqs start again, so under a new epoch, never reused under the old.
                    tracing::warn!(room = %key, "room missing from the store: new epoch");
                    room.epoch = Arc::from(self.ids.epoch(crate::time::now_millis()));
                    room.seq = 0;
                    room.history.clear();
                }
                if room.stored || reset_due {
                    // Before any message of the new epoch: those wait for this load.
                    let reason = if room.stored { ResetReason::StoreLost } else { ResetReason::OwnerLost };
                    announce_reset(room, sink, key, reason);
                }
                // A room the store never saw: its epoch goes first, before any message.
                let job = Job {
                    key: key.clone(),
                    gen: room.gen,
                    writes: vec![Write::Epoch(room.epoch.clone())],
                    on_ok: Vec::new(),
                    on_fail: None,
                };
                let _ = self.store.submit(job);
            }
        }
        room.stored = true;
        // After a failed write memory holds no history (the store's is taken, the seq given
        // out stays); a hand-off that arrived while loading is kept when it is ahead.
        if room.history.is_empty() || loaded.seq >= room.seq {
            room.seq = room.seq.max(loaded.seq);
            room.history.clear();
            room.sent = Default::default();
            for (message, client_id) in loaded.messages {
                if let Some(client_id) = client_id {
                    let ack = SentAck { id: message.id.clone(), seq: message.seq, ts: message.ts.clone() };
                    room.sent.insert((message.user_id.clone(), client_id), ack);
                }
                room.history.push_back(Arc::new(message));
            }
        }
        if !loaded.bans.is_empty() {
            self.meta_shard(key).lock().entry(key.clone()).or_default().bans = loaded.bans;
        }
        if key.room().starts_with("user:") {
            let mut inboxes = self.inbox_shard(key).lock();
            let user_box = inboxes.entry(key.clone()).or_default();
            user_box.messages = loaded.inbox.into_iter().collect();
            for (from, client_id, ack) in loaded.dm_sent {
                user_box.sent.insert((from, client_id), ack);
            }
            for room in loaded.rooms {
                if !user_box.rooms.contains(&room) {
                    user_box.rooms.push(room);
                }
            }
            if user_box.is_idle() {
                inboxes.remove(key);
            }
        }
    }

    /// A job the store answered: its answers go out, or `unavailable` when its writes (or an
    /// earlier write of its room) failed.
    pub fn written(&self, sink: &dyn EdgeSink, job: Job, ok: bool) {
        let mut shard = self.shard(&job.key).lock();
        let room = shard.get_mut(&job.key);
        // A room gone since (left empty, handed off) has no later writes to keep in order.
        let current = room.as_ref().is_none_or(|room| room.gen == job.gen);
        if let Some(room) = room {
            room.in_flight = room.in_flight.saturating_sub(1);
        }
        // A room left empty while its writes were on their way goes now.
        if shard.get(&job.key).is_some_and(|room| room.in_flight == 0 && room.can_forget()) {
            shard.remove(&job.key);
            crate::metrics::rooms_owned(-1.0);
        }
        // A job without writes only waited for its turn: it cannot have failed.
        if job.writes.is_empty() || (ok && current) {
            // Under the shard lock, as every answer of the owner: an op of this room applied
            // meanwhile must not overtake these answers (a join acked at this seq would then
            // meet the message live).
            for (node, msg) in job.on_ok {
                sink.send_to_edge(&node, msg);
            }
        } else {
            self.write_failed(&mut shard, sink, job);
        }
    }

    fn write_failed(&self, shard: &mut Rooms, sink: &dyn EdgeSink, job: Job) {
        if let Some(refusal) = job.on_fail {
            send_refusal(sink, refusal, "store unavailable");
        }
        if let Some(room) = shard.get_mut(&job.key) {
            if room.gen == job.gen {
                room.gen += 1;
                // What memory holds beyond the store is unknown now: the reload decides.
                // The seq stays: a seq that was given out is never given again (a refused
                // message leaves a gap, never a second message under its seq).
                room.history.clear();
                room.sent = Default::default();
                if matches!(room.load, Load::Ready) {
                    room.load = Load::Stale;
                }
            }
        }
    }
}
