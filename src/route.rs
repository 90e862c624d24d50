//! The router: takes each [`OwnerOp`] to the owner of its room key and each [`EdgeMsg`] to
//! the edge of its connection, in-process when that is this node, over a peer link
//! otherwise.
//!
//! The path of a client message: the edge's session parses it into an [`OwnerOp`] and calls
//! [`Router::route`]; the owner (this node's [`Owner`], or a peer's, reached by
//! [`Router::forward`] and taken in by [`Router::on_remote_op`]) applies it and answers
//! through [`EdgeSink::send_to_edge`], which hands the [`EdgeMsg`] to this node's [`Hub`]
//! or sends it to the edge's node ([`Router::on_edge_msg`] there).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use ringcast_cluster::{Cluster, Mark, NodeId, Ring};

use crate::edge::hub::Hub;
use crate::edge::Owners;
use crate::frames;
use crate::metrics;
use crate::ops::{EdgeMsg, OwnerOp, RequestKind, Sender};
use crate::owner::{EdgeSink, Owner};
use crate::peer;
use crate::protocol::{ErrorCode, ReplyError};
use crate::room::RoomKey;
use crate::stall::StallGuard;
use crate::takeover::{Held, Takeover};

/// The answer to an op that reaches a node right after it stood still (see `stall.rs`).
const STALLED: &str = "node stalled, retry";

mod members;
mod pending;
mod presence;
mod receipts;
mod tasks;

pub use pending::Awaiting;
use pending::{Pending, Requests};
use presence::Queries;
pub use tasks::StoreFeed;

/// Routes ops to owners and messages to edges; holds what routing needs: the rings, the
/// owner of this node's keys, the local edge's hub, the requests in flight.
pub struct Router {
    id: NodeId,
    /// Rooms this node holds as their owner.
    pub owner: Owner,
    /// This node's connections, where messages for local connections go.
    hub: Arc<Hub>,
    /// Set once at start in cluster mode.
    cluster: OnceLock<Arc<Cluster>>,
    /// The ring this node routes by. In a cluster it follows the gossip view, but only
    /// once `rebalance` has handed rooms over and resubscribed them at their new owners, so
    /// no op reaches a new owner before the state it needs.
    routing_ring: parking_lot::RwLock<Arc<Ring>>,
    /// The ring this node decides by which keys it may start holding (a room, inbox or
    /// moderation state it does not hold yet). It switches at the start of a hand-off,
    /// before the routing ring: an op for a key handed away (or about to be) is then
    /// forwarded behind the hand-off instead of starting an orphan copy here, which the
    /// new owner would never learn of (a join acknowledged but never delivered to).
    owner_ring: parking_lot::RwLock<Arc<Ring>>,
    /// Ops for keys gained in a ring change, held until the hand-offs are in.
    pub takeover: Takeover,
    /// Whether this node may serve as an owner now (not after a stall: see `stall.rs`).
    pub stall: Arc<StallGuard>,
    /// Requests in flight to remote owners, by request id.
    requests: Requests,
    next_request_id: AtomicU64,
    /// `presence.query` requests waiting for their parts.
    queries: Queries,
    /// Ops an owner asked this edge to route (see [`EdgeMsg::Route`]): routed by a task,
    /// never from inside the owner call that produced them.
    deferred: tasks::Deferred,
    /// Owners' answers waiting for their deliveries' receipts (see `receipts.rs`).
    receipts: receipts::Receipts,
}

impl Router {
    pub fn new(id: NodeId, owner: Owner, hub: Arc<Hub>) -> Self {
        Router {
            routing_ring: parking_lot::RwLock::new(Arc::new(Ring::new([id.clone()]))),
            owner_ring: parking_lot::RwLock::new(Arc::new(Ring::new([id.clone()]))),
            id,
            owner,
            hub,
            cluster: OnceLock::new(),
            takeover: Takeover::default(),
            stall: Arc::default(),
            requests: Requests::default(),
            next_request_id: AtomicU64::new(1),
            queries: Queries::default(),
            deferred: tasks::Deferred::new(),
            receipts: receipts::Receipts::default(),
        }
    }

    /// Routes over `cluster` from now on, starting from an empty ring (filled by
    /// `rebalance` as the members become ready).
    pub fn set_cluster(&self, cluster: Arc<Cluster>) {
        self.set_ring(Arc::new(Ring::new([])));
        self.set_owner_ring(Arc::new(Ring::new([])));
        let _ = self.cluster.set(cluster);
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// The ring this node routes by.
    pub fn ring(&self) -> Arc<Ring> {
        self.routing_ring.read().clone()
    }

    /// Switches routing to `ring` (called by `rebalance` once the rooms have moved).
    pub fn set_ring(&self, ring: Arc<Ring>) {
        *self.routing_ring.write() = ring;
    }

    /// Switches the keys this node may start holding to those `ring` gives it (called by
    /// `rebalance` before it hands keys away).
    pub fn set_owner_ring(&self, ring: Arc<Ring>) {
        *self.owner_ring.write() = ring;
    }

    /// Whether this node may start holding `key` (see `owner_ring`).
    fn owns(&self, key: &RoomKey) -> bool {
        self.owner_ring.read().owner(key.as_str()) == Some(&self.id)
    }

    /// Sends `op` to the owner of its room: an in-process call when that is this node, a
    /// peer frame otherwise. `Err(unavailable)` when the owner cannot be reached; the op was
    /// not applied.
    pub fn route(&self, op: OwnerOp) -> Result<(), ReplyError> {
        self.route_by(op, &self.ring())
    }

    /// Like [`Router::route`], by the given ring.
    pub fn route_by(&self, op: OwnerOp, ring: &Ring) -> Result<(), ReplyError> {
        match self.takeover.hold(&self.id, Held::Local(op)) {
            Some(Held::Local(op)) => self.route_now(op, ring),
            _ => Ok(()),
        }
    }

    /// Applies the ops held for a takeover, in order (see `takeover.rs`).
    pub fn release_takeover(&self) {
        self.takeover.release(|held| match held {
            Held::Local(op) => {
                let reply_to = op.sender().cloned().zip(op.op_id().map(str::to_string));
                if let Err(error) = self.route_now(op, &self.ring()) {
                    if let Some((sender, op_id)) = reply_to {
                        self.refuse(&sender, &op_id, &error);
                    }
                }
            }
            Held::Remote(op, hops) => self.on_remote_op_now(op, hops),
        });
    }

    /// `member` finished its hand-offs for the ring with `hash`.
    pub fn on_takeover_done(&self, member: &NodeId, hash: u64) {
        if self.takeover.done(member, hash) {
            self.release_takeover();
        }
    }

    fn route_now(&self, op: OwnerOp, ring: &Ring) -> Result<(), ReplyError> {
        if !self.stall.serving() {
            return Err(ReplyError::new(ErrorCode::Unavailable, STALLED));
        }
        let publish = op.is_publish().then(Instant::now);
        match receipts::scoped(|| self.owner.handle(self, op, |key| self.owns(key), false)) {
            Ok(()) => {
                if let Some(started) = publish {
                    metrics::published(started);
                }
                Ok(())
            }
            Err(op) => self.forward(op, ring, 0),
        }
    }

    /// Sends `op` to the ring's owner of its key. `hops` counts forwards by non-owners.
    fn forward(&self, mut op: OwnerOp, ring: &Ring, hops: u16) -> Result<(), ReplyError> {
        let unavailable = |message: &'static str| ReplyError::new(ErrorCode::Unavailable, message);
        let Some(cluster) = self.cluster.get() else {
            return Err(unavailable("owner unreachable"));
        };
        // The routing ring lags the owner ring while a hand-off is under way: a key it
        // still gives to this node has just been handed to the owner ring's owner.
        let owner = match ring.owner(op.room().as_str()) {
            Some(owner) if owner != &self.id => owner.clone(),
            _ => match self.owner_ring.read().owner(op.room().as_str()) {
                Some(owner) if owner != &self.id => owner.clone(),
                _ => return Err(unavailable("no ready owner for this room")),
            },
        };
        let mut request_id = 0;
        if let (Some(op_id), Some(sender)) = (op.op_id().map(str::to_string), op.sender()) {
            if sender.conn.node == self.id && sender.request_id == 0 {
                request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
                let pending = Pending {
                    node: owner.clone(),
                    conn_id: sender.conn.conn_id,
                    op_id,
                    sent_at: Instant::now(),
                    publish: op.is_publish(),
                };
                self.requests.insert(request_id, pending);
                if let Some(sender) = op.sender_mut() {
                    sender.request_id = request_id;
                }
            }
        }
        metrics::peer_forward();
        if cluster.send(&owner, peer::encode_op(&op, hops)).is_err() {
            if request_id != 0 {
                self.requests.remove(request_id);
            }
            return Err(unavailable("owner unreachable"));
        }
        Ok(())
    }

    /// An op that arrived from a peer: apply it, forward it once, or refuse it.
    pub fn on_remote_op(&self, op: OwnerOp, hops: u16) {
        if let Some(Held::Remote(op, hops)) = self.takeover.hold(&self.id, Held::Remote(op, hops)) {
            self.on_remote_op_now(op, hops);
        }
    }

    fn on_remote_op_now(&self, op: OwnerOp, hops: u16) {
        let ring = self.ring();
        // A resubscription is sent to the node the sender's ring names; take it even if our
        // own view lags behind (the views converge within a few gossip rounds).
        let (op, result) = if self.stall.serving() {
            let Err(op) = receipts::scoped(|| self.owner.handle(self, op, |key| self.owns(key), true)) else {
                return;
            };
            let result = if hops == 0 {
                self.forward(op.clone(), &ring, 1)
            } else {
                Err(ReplyError::new(ErrorCode::Unavailable, "room is moving, retry"))
            };
            (op, result)
        } else {
            (op, Err(ReplyError::new(ErrorCode::Unavailable, STALLED)))
        };
        if let Err(error) = result {
            match (op.sender(), op.op_id()) {
                (Some(sender), Some(op_id)) => self.refuse(sender, op_id, &error),
                (Some(sender), None) if matches!(op.as_request().map(|r| &r.kind), Some(RequestKind::Join { .. })) => {
                    // An automatic join its edge waits for (a personal room holds the
                    // connection's welcome): it failed, as one the edge could not route.
                    tracing::debug!(room = %op.room(), error = %error.message, "automatic join refused");
                    let msg = EdgeMsg::Left {
                        room: op.room().clone(),
                        conn_id: sender.conn.conn_id,
                        request_id: 0,
                        frames: Vec::new(),
                    };
                    self.send_to_edge(&sender.conn.node, msg);
                }
                _ => {}
            }
        }
    }

    /// Answers the request `op_id` of `sender` with `error` (unavailable: the server's
    /// condition, not counted against the client).
    fn refuse(&self, sender: &Sender, op_id: &str, error: &ReplyError) {
        let frame = frames::error(Some(op_id), error);
        let msg =
            EdgeMsg::Reply { conn_id: sender.conn.conn_id, request_id: sender.request_id, frame, is_error: false };
        self.send_to_edge(&sender.conn.node, msg);
    }

    /// A message for this edge from a peer: settle its request, then hand it to the hub.
    pub fn on_edge_msg(&self, msg: EdgeMsg) {
        if let EdgeMsg::PresenceInfo { conn_id, query_id, entry } = msg {
            return self.on_presence_info(conn_id, query_id, entry);
        }
        if let EdgeMsg::Route(op) = msg {
            // From a peer: no owner lock is held here.
            if let Err(err) = self.route(*op) {
                tracing::debug!(error = %err.message, "owner follow-up not routed");
            }
            return;
        }
        let request_id = msg.request_id();
        if request_id != 0 {
            if let Some(pending) = self.requests.remove(request_id) {
                metrics::peer_request_answered(pending.sent_at.elapsed().as_secs_f64());
                if pending.publish {
                    metrics::published(pending.sent_at);
                }
            }
        }
        self.hub.handle(msg);
    }

    /// The link to `node` broke: its requests in flight are answered `unavailable`, and
    /// answers waiting for its receipts go out.
    pub fn on_link_down(&self, node: &NodeId) {
        if !self.cluster().is_some_and(|cluster| cluster.is_connected(node)) {
            // Not replaced by a newer link already (whose takeover dones stand).
            self.takeover.forget(node);
        }
        self.fail_requests(|pending| &pending.node == node, "owner unreachable");
        self.on_receipt(node);
    }

    /// `node` handled more of what this node sent it (or its link broke): answers waiting
    /// for that go out (see `receipts.rs`).
    pub fn on_receipt(&self, node: &NodeId) {
        let Some(cluster) = self.cluster.get() else { return };
        self.receipts.on_peer(|peer, link| cluster.handled(peer, link), node, |node, msg| self.send_now(node, msg));
    }

    /// Owners' answers whose receipts ran out of time go out as `unavailable`.
    fn expire_answers(&self) {
        self.receipts.expire(std::time::Instant::now(), |node, msg| self.send_now(node, msg));
    }

    /// Answers `unavailable` to the requests in flight that `filter` picks.
    fn fail_requests(&self, filter: impl Fn(&Pending) -> bool, message: &'static str) {
        let failed = self.requests.take_where(filter);
        metrics::peer_requests_failed(failed.len());
        for pending in failed {
            let error = ReplyError::new(ErrorCode::Unavailable, message);
            if let Some(conn) = self.hub.get(pending.conn_id) {
                metrics::error_sent(error.code.as_str());
                conn.outbox.push_text(frames::error(Some(&pending.op_id), &error));
            }
        }
    }
}

impl EdgeSink for Router {
    fn congested(&self, node: &NodeId) -> bool {
        node != &self.id && self.cluster.get().is_some_and(|cluster| cluster.congested(node))
    }

    fn send_to_edge(&self, node: &NodeId, msg: EdgeMsg) {
        if matches!(msg, EdgeMsg::Reply { .. }) {
            if let (Some(marks), Some(cluster)) = (receipts::pending(), self.cluster.get()) {
                // An answer after deliveries over links: it waits for their receipts (which
                // may all be in already: a peer can answer before this op is done).
                let handled = |peer: &NodeId, link| cluster.handled(peer, link);
                return self.receipts.defer(handled, marks, node, msg, |node, msg| self.send_now(node, msg));
            }
            // Nothing to wait for, but an earlier answer to the same connection may wait.
            match self.receipts.queue_behind(node, msg) {
                Ok(()) => return,
                Err(msg) => return self.send_now(node, msg),
            }
        }
        self.send_now(node, msg);
    }
}

impl Router {
    fn send_now(&self, node: &NodeId, msg: EdgeMsg) {
        if node == &self.id {
            return match msg {
                // Called from inside an owner: route later, from the deferred task.
                EdgeMsg::Route(op) => self.deferred.push(*op),
                EdgeMsg::PresenceInfo { conn_id, query_id, entry } => self.on_presence_info(conn_id, query_id, entry),
                msg => self.hub.handle(msg),
            };
        }
        let Some(cluster) = self.cluster.get() else {
            return tracing::warn!(node = %node, "no link to edge node, message dropped");
        };
        // What owners send edges is a stream: a delivery dropped leaves a seq the room's
        // subscribers there never see, an answer dropped leaves a request unanswered (and a
        // seq its sender never learns). It may overfill the link's queue rather than be
        // dropped: the work behind it was admitted while the link had room (a publish is
        // refused before it takes a seq when the link is congested, an op forwarded to the
        // owner finds the other direction's queue full and is answered `unavailable`).
        match cluster.send_stream(node, peer::encode_msg(&msg)) {
            Ok(mark) => {
                if matches!(msg, EdgeMsg::Deliver { .. }) {
                    receipts::record(node, mark);
                }
            }
            Err(err) => {
                metrics::peer_send_failed();
                if matches!(msg, EdgeMsg::Deliver { .. }) {
                    // The op's ack must not claim this delivery.
                    receipts::record(node, Mark::NOT_SENT);
                }
                tracing::debug!(node = %node, error = %err, "edge message not sent");
            }
        }
    }
}

impl Owners for Router {
    fn route(&self, op: OwnerOp) -> Result<(), ReplyError> {
        Router::route(self, op)
    }

    fn members(self: Arc<Self>, sender: Sender, op_id: Option<String>, room: RoomKey) {
        self.members_with_presence(sender, op_id, room)
    }

    fn presence_query(&self, sender: Sender, op_id: Option<&str>, users: Vec<RoomKey>) -> Result<(), ReplyError> {
        Router::presence_query(self, sender, op_id, users)
    }

    fn message_id(&self, now_millis: u64) -> String {
        self.owner.message_id(now_millis)
    }
}
