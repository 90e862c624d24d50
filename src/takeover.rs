//! Taking over keys after a ring change (DESIGN.md "Membership changes").
//!
//! When the ring changes, every node hands the keys it lost to their new owners and then
//! switches its routing. Those steps run on each node independently: a third node may route
//! a room's ops (a resubscription, a publish) to the room's new owner before the room's old
//! owner has handed the room over, on another link. The new owner would then start the
//! room afresh, and the hand-off would arrive too late (members merged, the old seq and
//! history lost: subscribers saw seqs start again).
//!
//! So a node that gains keys holds the ops for them until every other member of the new
//! ring has said it finished its hand-offs for that ring (`KIND_TAKEOVER_DONE`, sent on each
//! link behind the snapshots), or until [`HOLD_LIMIT`] passed. Held ops are then applied in
//! the order they came, before any op that comes later.

use std::collections::{BTreeSet, VecDeque};
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

/// How many (member, ring) completions are remembered: one may arrive before this node has
/// seen the ring change itself.
const DONE_KEPT: usize = 64;

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
    fn room(&self) -> &RoomKey {
        match self {
            Held::Local(op) | Held::Remote(op, _) => op.room(),
        }
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
    held: VecDeque<Held>,
    /// Set while held ops are being applied: later ops for gained keys queue behind them.
    releasing: bool,
    done: VecDeque<(NodeId, u64)>,
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
    /// A ring change from `previous` to `ring`: hold ops of gained keys until each member
    /// that held some of them before (and is still in `ring`) is done with it.
    pub fn begin(&self, me: &NodeId, previous: &Arc<Ring>, ring: Arc<Ring>) -> Begin {
        let hash = ring_hash(&ring);
        // An empty ring before: this node has just started, holds nothing yet, and does not
        // know who held what: every other member may hand it something.
        let previous = (!previous.members().is_empty()).then(|| previous.clone());
        let givers = match &previous {
            None => ring.members().iter().filter(|member| *member != me).cloned().collect(),
            Some(previous) => previous_owners_of_gained(me, previous, &ring),
        };
        let mut state = self.state.lock();
        let waiting: BTreeSet<NodeId> =
            givers.into_iter().filter(|member| !state.done.iter().any(|(m, h)| m == member && *h == hash)).collect();
        state.ring = Some((ring, hash, previous));
        state.waiting = waiting;
        if state.waiting.is_empty() {
            state.deadline = None;
            if state.held.is_empty() {
                if !state.releasing {
                    state.ring = None;
                    self.active.store(false, Ordering::Release);
                }
                return Begin::Idle;
            }
            return if start_release(&mut state) { Begin::Release } else { Begin::Idle };
        }
        let deadline = Instant::now() + HOLD_LIMIT;
        state.deadline = Some(deadline);
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
            Some((ring, _, previous)) => is_gained(me, ring, previous.as_deref(), key),
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
        if state.done.len() == DONE_KEPT {
            state.done.pop_front();
        }
        state.done.push_back((member.clone(), hash));
        let current = matches!(&state.ring, Some((_, current, _)) if *current == hash);
        current && state.waiting.remove(member) && state.waiting.is_empty() && start_release(&mut state)
    }

    /// The deadline passed: stop waiting. True when the caller must release.
    pub fn expire(&self, now: Instant) -> bool {
        let mut state = self.state.lock();
        if state.deadline.is_some_and(|deadline| deadline <= now) && !state.waiting.is_empty() {
            tracing::warn!(waiting = ?state.waiting, "ring change: hand-offs not confirmed in time; going on");
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
                        self.active.store(false, Ordering::Release);
                    }
                    return;
                }
                std::mem::take(&mut state.held)
            };
            for held in batch {
                apply(held);
            }
        }
    }
}

/// How many keys are probed to find who held the keys this node gains.
const PROBES: u32 = 16_384;

/// The members of `ring` (other than `me`) that owned, by `previous`, some key `me` owns by
/// `ring`: found by probing keys spread over the hash space.
fn previous_owners_of_gained(me: &NodeId, previous: &Ring, ring: &Ring) -> BTreeSet<NodeId> {
    let mut owners = BTreeSet::new();
    let mut key = String::with_capacity(24);
    for probe in 0..PROBES {
        key.clear();
        use std::fmt::Write as _;
        let _ = write!(key, "takeover-probe/{probe}");
        if ring.owner(&key) != Some(me) {
            continue;
        }
        if let Some(owner) = previous.owner(&key) {
            if owner != me && ring.members().contains(owner) {
                owners.insert(owner.clone());
            }
        }
    }
    owners
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
        assert!(takeover.done(&b, hash));
        let mut released = Vec::new();
        takeover.release(|held| released.push(held));
        assert_eq!(released.len(), 2, "both held ops, in order");
        assert!(takeover.hold(&c, op(&mine[0])).is_some(), "no holding after the release");
    }

    #[test]
    fn test_only_members_that_held_gained_keys_are_waited_for() {
        let (a, b, c) = (id("a"), id("b"), id("c"));
        let three = Ring::new([a.clone(), b.clone(), c.clone()]);
        let two = Ring::new([a.clone(), c.clone()]);
        // b left: a gains only b's keys; c held none of them.
        assert!(previous_owners_of_gained(&a, &three, &two).is_empty());
        // c joins a ring of a and b: c gains keys from both.
        let ab = Ring::new([a.clone(), b.clone()]);
        let owners = previous_owners_of_gained(&c, &ab, &three);
        assert_eq!(owners, [a.clone(), b.clone()].into_iter().collect());
    }

    #[test]
    fn test_a_completion_that_came_first_counts_and_the_deadline_ends_a_wait() {
        let (a, b) = (id("a"), id("b"));
        let after = Arc::new(Ring::new([a.clone(), b.clone()]));
        let takeover = Takeover::default();
        assert!(!takeover.done(&a, ring_hash(&after)));
        assert_eq!(takeover.begin(&b, &Arc::new(Ring::new([])), after.clone()), Begin::Idle, "nobody left to wait for");

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

        // b stays in a ring that c leaves: b gains c's keys, c held them, c is gone: no wait.
        assert_eq!(takeover.begin(&b, &three, after.clone()), Begin::Idle);
        // A member that held nothing b gains is not waited for either: a joins a ring of b, c.
        let bc = Arc::new(Ring::new([b.clone(), c.clone()]));
        match takeover.begin(&b, &bc, three.clone()) {
            Begin::Idle => {}
            other => panic!("b gains nothing when a joins: {other:?}"),
        }
    }
}
