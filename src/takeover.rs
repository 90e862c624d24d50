//! Taking over keys after a ring change (DESIGN.md "Membership changes").
//!
//! When the ring changes, every node hands the keys it lost to their new owners, resubscribes
//! its connections' rooms whose owner changed at the new owners, and then switches its
//! routing. Those steps run on each node independently: a third node may route a room's ops
//! (a publish) to the room's new owner before the room's old owner has handed the room over,
//! or before another edge has resubscribed its connections there, each on another link. The
//! new owner would then start the room afresh (the hand-off arriving too late: subscribers
//! saw seqs start again), or acknowledge a message that a subscriber on the late edge never
//! gets (a failover: the first message of the new owner lost to a live subscriber).
//!
//! So a node that gains keys holds the ops for them until every member of the new ring has
//! said it finished its hand-offs and resubscriptions for that ring (`KIND_TAKEOVER_DONE`,
//! sent on each link behind the snapshots and the resubscriptions; the node itself counts,
//! so its own connections' ops wait for its own resubscriptions), or
//! until [`HOLD_LIMIT`] passed (logged and counted: `ringcast_takeover_expired_total`). Ring
//! changes that come one after another (a node restarting: it leaves, fences, joins) each
//! wait [`HOLD_LIMIT`] again, but never past [`HOLD_TOTAL_LIMIT`] from the first: an op held
//! under the first one is answered within a bound, however long the rings keep moving. Held
//! ops are then applied before any op that comes later: first the resubscriptions (they
//! restore who was in the room before the change), then the others in the order they came.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ringcast_cluster::{NodeId, Ring};

use crate::ops::OwnerOp;
use crate::room::RoomKey;

/// The longest an op waits for the hand-offs of a ring change (a member whose view of the
/// ring differs never says it is done for ours).
pub const HOLD_LIMIT: Duration = Duration::from_secs(2);

/// The longest ops wait through ring changes that follow one another before the wait ends.
pub const HOLD_TOTAL_LIMIT: Duration = Duration::from_secs(4);

/// An op held for a key being taken over.
pub enum Held {
    /// From a connection of this node.
    Local(OwnerOp),
    /// From a peer, with its hop count.
    Remote(OwnerOp, u16),
}

/// What a ring change asks of the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// Nothing to hold.
    Idle,
    /// Ops of gained keys are held: call [`Takeover::expire`] at this deadline.
    Wait(Instant),
    /// Ops held for an earlier change have nothing left to wait for: release them.
    Release,
}

impl Held {
    fn op(&self) -> &OwnerOp {
        match self {
            Held::Local(op) | Held::Remote(op, _) => op,
        }
    }

    fn room(&self) -> &RoomKey {
        self.op().room()
    }
}

#[derive(Default)]
pub struct Takeover {
    /// Fast path: false when nothing is being taken over.
    active: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The ring being taken over, its hash, and the ring before it (`None`: there was
    /// none, this node has just started, so every key it owns now is gained).
    ring: Option<(Arc<Ring>, u64, Option<Arc<Ring>>)>,
    /// Members that have not said they are done with `ring` yet.
    waiting: BTreeSet<NodeId>,
    deadline: Option<Instant>,
    /// When the current run of waits began (the first ring change of it).
    since: Option<Instant>,
    held: VecDeque<Held>,
    /// Set while held ops are being applied: later ops for gained keys queue behind them.
    releasing: bool,
    /// The change dropped a member: every key this node owns is held, not only gained ones.
    all: bool,
    /// The ring each member said last it is done with: a completion may arrive before this
    /// node has seen the ring change itself. Only the latest counts (a member goes through
    /// the same ring again after a failure and a return: its old completion is not one).
    latest: HashMap<NodeId, u64>,
}

/// A ring's identity, the same on every node that sees the same members (FNV-1a).
pub fn ring_hash(ring: &Ring) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for member in ring.members() {
        for byte in member.as_str().bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

impl Takeover {
    /// A ring change from `previous` to `ring`: when this node gains keys, hold their ops
    /// until every member of `ring` is done with it (any other may have held some of the
    /// keys, or have connections subscribed to them; this node resubscribes its own).
    pub fn begin(&self, me: &NodeId, previous: &Arc<Ring>, ring: Arc<Ring>) -> Begin {
        self.begin_at(me, previous, ring, Instant::now())
    }

    fn begin_at(&self, me: &NodeId, previous: &Arc<Ring>, ring: Arc<Ring>, now: Instant) -> Begin {
        let hash = ring_hash(&ring);
        let mut state = self.state.lock();
        // An empty ring before: this node has just started, holds nothing yet, and does not
        // know who held what: every other member may hand it something. A takeover still
        // waiting is not done either: what it gained is still gained, so the new one counts
        // from where that one started.
        let previous = match &state.ring {
            Some((_, _, base)) if !state.waiting.is_empty() => base.clone(),
            _ => (!previous.members().is_empty()).then(|| previous.clone()),
        };
        // A member that left the ring may be alive behind a partition, with connections
        // still subscribed to this node's rooms (dropped from them by now): until every
        // member of the new ring says it sees that ring too, this node may be the one that is
        // cut off without knowing it yet, and must not acknowledge anything. So every key it
        // owns waits, as gained ones do.
        let lost = previous.as_ref().is_some_and(|previous| {
            previous.members().iter().any(|member| member != me && !ring.members().contains(member))
        });
        let gains = lost || previous.as_ref().is_none_or(|previous| gains_keys(me, previous, &ring));
        state.all = lost || (state.all && !state.waiting.is_empty());
        let waiting: BTreeSet<NodeId> = if gains {
            let others_done = |member: &&NodeId| *member != me && state.latest.get(*member) == Some(&hash);
            ring.members().iter().filter(|member| !others_done(member)).cloned().collect()
        } else {
            BTreeSet::new()
        };
        let since = state.since.filter(|_| !state.waiting.is_empty()).unwrap_or(now);
        state.ring = Some((ring, hash, previous));
        state.waiting = waiting;
        if state.waiting.is_empty() {
            state.deadline = None;
            state.since = None;
            if state.held.is_empty() {
                if !state.releasing {
                    state.ring = None;
                    self.active.store(false, Ordering::Release);
                }
                return Begin::Idle;
            }
            return if start_release(&mut state) { Begin::Release } else { Begin::Idle };
        }
        let deadline = (now + HOLD_LIMIT).min(since + HOLD_TOTAL_LIMIT);
        state.deadline = Some(deadline);
        state.since = Some(since);
        self.active.store(true, Ordering::Release);
        Begin::Wait(deadline)
    }

    /// Holds `held` if its key is being taken over; gives it back otherwise.
    pub fn hold(&self, me: &NodeId, held: Held) -> Option<Held> {
        if !self.active.load(Ordering::Acquire) {
            return Some(held);
        }
        let mut state = self.state.lock();
        let key = held.room();
        let gained = match &state.ring {
            Some((ring, _, previous)) => {
                is_gained(me, ring, previous.as_deref(), key) || (state.all && ring.owner(key.as_str()) == Some(me))
            }
            None => false,
        };
        let holding = gained && (!state.waiting.is_empty() || state.releasing);
        // An op whose key still has ops waiting (held under an earlier ring change) queues
        // behind them, so a key's ops stay in order whatever the rings did meanwhile.
        if !holding && !state.held.iter().any(|earlier| earlier.room() == key) {
            return Some(held);
        }
        state.held.push_back(held);
        None
    }

    /// `member` finished its hand-offs for the ring with `hash`. True when this ends the
    /// wait: the caller then applies the held ops with [`Takeover::release`].
    pub fn done(&self, member: &NodeId, hash: u64) -> bool {
        let mut state = self.state.lock();
        state.latest.insert(member.clone(), hash);
        let current = matches!(&state.ring, Some((_, current, _)) if *current == hash);
        current && state.waiting.remove(member) && state.waiting.is_empty() && start_release(&mut state)
    }

    /// The link to `member` broke: what it said it had done went with it (a partition may
    /// have hidden rings it went through since, and a done for a ring seen again must be
    /// said again on the new link).
    pub fn forget(&self, member: &NodeId) {
        self.state.lock().latest.remove(member);
    }

    /// The deadline passed: stop waiting. True when the caller must release.
    pub fn expire(&self, now: Instant) -> bool {
        let mut state = self.state.lock();
        if state.deadline.is_some_and(|deadline| deadline <= now) && !state.waiting.is_empty() {
            tracing::warn!(waiting = ?state.waiting, "takeover: members did not confirm in time; going on");
            crate::metrics::takeover_expired();
            state.waiting.clear();
            return start_release(&mut state);
        }
        false
    }

    /// Applies the held ops with `apply`, in order, until none is left (ops held meanwhile
    /// included), then stops holding.
    pub fn release(&self, mut apply: impl FnMut(Held)) {
        loop {
            let batch = {
                let mut state = self.state.lock();
                if state.held.is_empty() {
                    state.releasing = false;
                    if state.waiting.is_empty() {
                        state.ring = None;
                        state.deadline = None;
                        state.since = None;
                        self.active.store(false, Ordering::Release);
                    }
                    return;
                }
                std::mem::take(&mut state.held)
            };
            let (resubscriptions, others): (Vec<Held>, Vec<Held>) =
                batch.into_iter().partition(|held| matches!(held.op(), OwnerOp::Resubscribe { .. }));
            for held in resubscriptions.into_iter().chain(others) {
                apply(held);
            }
        }
    }
}

/// How many keys are probed to find whether this node gains keys.
const PROBES: u32 = 16_384;

/// Whether some key `me` owns by `ring` was another member's by `previous` (or nobody's):
/// found by probing keys spread over the hash space.
fn gains_keys(me: &NodeId, previous: &Ring, ring: &Ring) -> bool {
    let mut key = String::with_capacity(24);
    (0..PROBES).any(|probe| {
        key.clear();
        use std::fmt::Write as _;
        let _ = write!(key, "takeover-probe/{probe}");
        ring.owner(&key) == Some(me) && previous.owner(&key) != Some(me)
    })
}

fn start_release(state: &mut State) -> bool {
    if state.releasing {
        return false;
    }
    state.releasing = true;
    true
}

/// Whether `key` is this node's by `ring` and was not by `previous` (`None`: alone before).
fn is_gained(me: &NodeId, ring: &Ring, previous: Option<&Ring>, key: &RoomKey) -> bool {
    ring.owner(key.as_str()) == Some(me) && previous.is_none_or(|previous| previous.owner(key.as_str()) != Some(me))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{ConnRef, RequestKind, Sender};

    fn id(name: &str) -> NodeId {
        NodeId::new(name)
    }

    fn op(room: &str) -> Held {
        let sender = Sender {
            conn: ConnRef { node: id("x"), conn_id: 1 },
            user_id: "u".into(),
            name: "u".into(),
            is_moderator: false,
            request_id: 0,
        };
        Held::Local(OwnerOp::request(RoomKey::new("default", room), sender, None, RequestKind::Leave))
    }

    fn rooms_of(me: &NodeId, ring: &Ring, count: usize) -> Vec<String> {
        (0..)
            .map(|i| format!("r{i}"))
            .filter(|room| ring.owner(&format!("default/{room}")) == Some(me))
            .take(count)
            .collect()
    }

    #[test]
    fn test_ops_of_gained_keys_wait_for_every_other_member() {
        let (a, b, c) = (id("a"), id("b"), id("c"));
        let after = Arc::new(Ring::new([a.clone(), b.clone(), c.clone()]));
        let takeover = Takeover::default();
        assert!(matches!(
            takeover.begin(&c, &Arc::new(Ring::new([a.clone(), b.clone()])), after.clone()),
            Begin::Wait(_)
        ));
        let mine = rooms_of(&c, &after, 2);
        assert!(takeover.hold(&c, op(&mine[0])).is_none(), "a gained key waits");
        let theirs = rooms_of(&a, &after, 1);
        assert!(takeover.hold(&c, op(&theirs[0])).is_some(), "another node's key does not");
        let hash = ring_hash(&after);
        assert!(!takeover.done(&a, hash));
        assert!(!takeover.done(&b, hash ^ 1), "a completion for another ring does not count");
        assert!(takeover.hold(&c, op(&mine[1])).is_none());
        assert!(!takeover.done(&b, hash), "c's own resubscriptions are not in yet");
        assert!(takeover.done(&c, hash));
        let mut released = Vec::new();
        takeover.release(|held| released.push(held));
        assert_eq!(released.len(), 2, "both held ops, in order");
        assert!(takeover.hold(&c, op(&mine[0])).is_some(), "no holding after the release");
    }

    #[test]
    fn test_a_node_that_gains_keys_waits_for_every_other_member_and_one_that_gains_none_for_nobody() {
        let (a, b, c) = (id("a"), id("b"), id("c"));
        let three = Ring::new([a.clone(), b.clone(), c.clone()]);
        let two = Ring::new([a.clone(), c.clone()]);
        // b died: a and c gain its keys. c held none of a's gained keys, but c's connections
        // may be in those rooms: a waits for c's resubscriptions.
        assert!(gains_keys(&a, &three, &two) && gains_keys(&c, &three, &two));
        let takeover = Takeover::default();
        assert!(matches!(takeover.begin(&a, &Arc::new(three.clone()), Arc::new(two.clone())), Begin::Wait(_)));
        let gained = rooms_of(&a, &two, 3).into_iter().find(|room| three.owner(&format!("default/{room}")) == Some(&b));
        let gained = gained.expect("a gained one of b's rooms");
        assert!(takeover.hold(&a, op(&gained)).is_none());
        assert!(!takeover.done(&c, ring_hash(&two)));
        assert!(takeover.done(&a, ring_hash(&two)), "a and c were the ones to wait for");
        // b joins again: a and c gain nothing.
        assert!(!gains_keys(&a, &two, &three) && !gains_keys(&c, &two, &three));
        assert!(gains_keys(&b, &two, &three));
    }

    #[test]
    fn test_a_ring_change_during_a_wait_keeps_waiting_for_what_was_gained() {
        // c restarts: it first sees a ring without d, then d too. From c's side d's arrival
        // gains it nothing, but nobody has confirmed the keys it gained at its start.
        let (a, b, c, d) = (id("a"), id("b"), id("c"), id("d"));
        let first = Arc::new(Ring::new([a.clone(), b.clone(), c.clone()]));
        let whole = Arc::new(Ring::new([a.clone(), b.clone(), c.clone(), d.clone()]));
        let takeover = Takeover::default();
        assert!(matches!(takeover.begin(&c, &Arc::new(Ring::new([])), first.clone()), Begin::Wait(_)));
        assert!(!gains_keys(&c, &first, &whole));
        assert!(matches!(takeover.begin(&c, &first, whole.clone()), Begin::Wait(_)), "still gained");
        let mine = rooms_of(&c, &whole, 1);
        assert!(takeover.hold(&c, op(&mine[0])).is_none(), "a key gained at the start still waits");
        for member in [&a, &b, &d] {
            assert!(!takeover.done(member, ring_hash(&whole)));
        }
        assert!(takeover.done(&c, ring_hash(&whole)));
        // Done: a later change that gains nothing holds nothing.
        let mut released = Vec::new();
        takeover.release(|held| released.push(held));
        assert_eq!(released.len(), 1);
        let more = Arc::new(Ring::new([a.clone(), b.clone(), c.clone(), d.clone(), id("e")]));
        assert!(matches!(takeover.begin(&c, &whole, more), Begin::Idle));
    }

    #[test]
    fn test_when_a_member_leaves_every_owned_key_waits_for_the_others_to_see_it_too() {
        // b is gone from c's view: c may be the one cut off, so even the keys c owned before
        // wait until a (the rest of the new ring) says it sees the same ring.
        let (a, b, c) = (id("a"), id("b"), id("c"));
        let three = Arc::new(Ring::new([a.clone(), b.clone(), c.clone()]));
        let two = Arc::new(Ring::new([a.clone(), c.clone()]));
        let takeover = Takeover::default();
        assert!(matches!(takeover.begin(&c, &three, two.clone()), Begin::Wait(_)));
        let kept = rooms_of(&c, &two, 8).into_iter().find(|room| three.owner(&format!("default/{room}")) == Some(&c));
        let kept = kept.expect("a room c owned before and after");
        assert!(takeover.hold(&c, op(&kept)).is_none(), "an owned key waits too");
        let theirs = rooms_of(&a, &two, 1).remove(0);
        assert!(takeover.hold(&c, op(&theirs)).is_some(), "another node's key is forwarded");
        assert!(!takeover.done(&c, ring_hash(&two)));
        assert!(takeover.done(&a, ring_hash(&two)));
        let mut released = Vec::new();
        takeover.release(|held| released.push(held));
        assert_eq!(released.len(), 1);
        // A member joining drops nobody: c holds nothing.
        assert!(matches!(takeover.begin(&c, &two, three.clone()), Begin::Idle));
        assert!(takeover.hold(&c, op(&kept)).is_some());
    }

    #[test]
    fn test_resubscriptions_are_released_before_the_ops_held_before_them() {
        let (a, b) = (id("a"), id("b"));
        let after = Arc::new(Ring::new([a.clone(), b.clone()]));
        let takeover = Takeover::default();
        assert!(matches!(takeover.begin(&a, &Arc::new(Ring::new([b.clone()])), after.clone()), Begin::Wait(_)));
        let room = rooms_of(&a, &after, 1).remove(0);
        assert!(takeover.hold(&a, op(&room)).is_none());
        let Held::Local(first) = op(&room) else { unreachable!() };
        let resubscribe = OwnerOp::Resubscribe { room: first.room().clone(), members: Vec::new() };
        assert!(takeover.hold(&a, Held::Remote(resubscribe, 0)).is_none());
        assert!(!takeover.done(&b, ring_hash(&after)));
        assert!(takeover.done(&a, ring_hash(&after)));
        let mut order = Vec::new();
        takeover.release(|held| order.push(matches!(held.op(), OwnerOp::Resubscribe { .. })));
        assert_eq!(order, [true, false], "the resubscription first");
    }

    #[test]
    fn test_a_completion_that_came_first_counts_and_the_deadline_ends_a_wait() {
        let (a, b) = (id("a"), id("b"));
        let after = Arc::new(Ring::new([a.clone(), b.clone()]));
        let takeover = Takeover::default();
        assert!(!takeover.done(&a, ring_hash(&after)));
        assert!(matches!(takeover.begin(&b, &Arc::new(Ring::new([])), after.clone()), Begin::Wait(_)));
        assert!(takeover.done(&b, ring_hash(&after)), "a said it was done before b began: only b itself was left");
        takeover.release(|_| {});
        // A later completion supersedes an earlier one: a went through another ring since.
        assert!(!takeover.done(&a, ring_hash(&after) ^ 1));
        assert!(matches!(takeover.begin(&b, &Arc::new(Ring::new([a.clone()])), after.clone()), Begin::Wait(_)));
        assert!(!takeover.done(&b, ring_hash(&after)), "a's old completion for this ring does not count");
        assert!(takeover.done(&a, ring_hash(&after)));
        takeover.release(|_| {});

        // c starts: it has no ring yet, so it waits for a and b; its gained keys wait.
        let c = id("c");
        let three = Arc::new(Ring::new([a.clone(), b.clone(), c.clone()]));
        let fresh = Takeover::default();
        let Begin::Wait(deadline) = fresh.begin(&c, &Arc::new(Ring::new([])), three.clone()) else { panic!("c waits") };
        let gained = rooms_of(&c, &three, 1);
        assert!(fresh.hold(&c, op(&gained[0])).is_none());
        let takeover = fresh;
        assert!(!takeover.expire(deadline - Duration::from_millis(1)));
        assert!(takeover.expire(deadline));
        let mut released = 0;
        takeover.release(|_| released += 1);
        assert_eq!(released, 1);

        // b stays in a ring that c leaves: b gains c's keys and waits for a (whose
        // connections may be in c's rooms) and itself, not for c, which is gone.
        assert!(matches!(takeover.begin(&b, &three, after.clone()), Begin::Wait(_)));
        assert!(!takeover.done(&b, ring_hash(&after)));
        assert!(takeover.done(&a, ring_hash(&after)), "a and b were the ones to wait for");
        takeover.release(|_| {});
        // A node that gains nothing waits for nobody: a joins a ring of b, c.
        let bc = Arc::new(Ring::new([b.clone(), c.clone()]));
        match takeover.begin(&b, &bc, three.clone()) {
            Begin::Idle => {}
            other => panic!("b gains nothing when a joins: {other:?}"),
        }
    }

    #[test]
    fn test_ring_changes_one_after_another_wait_no_longer_than_the_total_limit() {
        let (a, b, c) = (id("a"), id("b"), id("c"));
        let three = Arc::new(Ring::new([a.clone(), b.clone(), c.clone()]));
        let two = Arc::new(Ring::new([a.clone(), c.clone()]));
        let takeover = Takeover::default();
        let t0 = Instant::now();
        // c starts and holds an op of a gained key; a and b never say they are done, while the
        // ring keeps changing every 1.5 s (b leaves, b comes back, b leaves).
        let Begin::Wait(first) = takeover.begin_at(&c, &Arc::new(Ring::new([])), three.clone(), t0) else {
            panic!("c waits")
        };
        assert_eq!(first, t0 + HOLD_LIMIT);
        let gained = rooms_of(&c, &three, 1);
        assert!(takeover.hold(&c, op(&gained[0])).is_none());
        let step = Duration::from_millis(1500);
        let Begin::Wait(second) = takeover.begin_at(&c, &three, two.clone(), t0 + step) else { panic!("still waits") };
        assert_eq!(second, t0 + step + HOLD_LIMIT, "a later change waits its own limit");
        let Begin::Wait(third) = takeover.begin_at(&c, &two, three.clone(), t0 + step * 2) else {
            panic!("still waits")
        };
        assert_eq!(third, t0 + HOLD_TOTAL_LIMIT, "but not past the total limit from the first");
        let Begin::Wait(fourth) = takeover.begin_at(&c, &three, two.clone(), t0 + step * 3) else {
            panic!("still waits")
        };
        assert_eq!(fourth, t0 + HOLD_TOTAL_LIMIT, "already due: the wait ends at once");
        assert!(takeover.expire(t0 + step * 3));
        let mut released = 0;
        takeover.release(|_| released += 1);
        assert_eq!(released, 1, "the op held under the first change");
        // The next change starts a run of its own.
        let later = t0 + Duration::from_secs(10);
        let Begin::Wait(fresh) = takeover.begin_at(&c, &three, two.clone(), later) else { panic!("b leaves: c waits") };
        assert_eq!(fresh, later + HOLD_LIMIT);
    }
}
