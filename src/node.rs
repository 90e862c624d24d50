//! The node: everything one ringcast process holds, and the router between its edge and the
//! owners of room keys, in-process or over peer links.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;
use parking_lot::Mutex;
use ringcast_cluster::{Cluster, ClusterConfig, ClusterError, MemberState, NodeId, Ring};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::config::{Config, ConfigError};
use crate::frames;
use crate::hub::Hub;
use crate::ids::ConnId;
use crate::ids::IdGen;
use crate::metrics;
use crate::ops::{EdgeMsg, OwnerOp, Sender};
use crate::owner::{EdgeSink, Owner};
use crate::peer;
use crate::protocol::{ErrorCode, ReplyError};
use crate::room::RoomKey;
use crate::takeover::{Held, Takeover};
use crate::time;

mod inbound;

/// A request sent to a remote owner and not answered yet.
struct Pending {
    node: NodeId,
    conn_id: ConnId,
    op_id: String,
    sent_at: Instant,
    publish: bool,
}

/// A `presence.query` being answered by the owners of its users.
struct PresenceQuery {
    conn_id: ConnId,
    op_id: Option<String>,
    entries: Vec<Option<Bytes>>,
    started: Instant,
}

/// Users per query id: a part's id is `query_id * QUERY_PARTS + index`.
const QUERY_PARTS: u64 = 128;

/// How long a remote owner may take to answer before the client gets `unavailable`.
const PENDING_TIMEOUT: Duration = Duration::from_secs(10);

/// One ringcast process.
pub struct Node {
    pub id: NodeId,
    /// Start time in milliseconds; a restarted node has a higher generation.
    pub generation: u64,
    pub config: Config,
    pub auth: Authenticator,
    /// Rooms this node holds as their owner.
    pub owner: Owner,
    /// This node's connections and their local fan-out.
    pub hub: Hub,
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
    /// Requests in flight to remote owners, by request id.
    pending: Mutex<HashMap<u64, Pending>>,
    next_request_id: AtomicU64,
    /// `presence.query` requests waiting for their parts, by query id.
    queries: Mutex<HashMap<u64, PresenceQuery>>,
    /// Cancelled when the node begins to shut down: stop accepting.
    pub shutdown: CancellationToken,
    /// Cancelled once every connection was asked to close: a connection registered later
    /// closes at once.
    pub close_all: CancellationToken,
    /// Tracks every connection task so shutdown can wait for them.
    pub tasks: TaskTracker,
    pub metrics: Option<PrometheusHandle>,
    /// Ops an owner asked this edge to route (see [`EdgeMsg::Route`]): routed by a task,
    /// never from inside the owner call that produced them.
    deferred_tx: tokio::sync::mpsc::UnboundedSender<OwnerOp>,
    deferred_rx: parking_lot::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<OwnerOp>>>,
    next_conn_id: AtomicU64,
    ready: AtomicBool,
    /// Admin API requests in flight to other nodes.
    pub admin: crate::admin::Pending,
    /// A durable store's loads and completions, taken by [`Node::run_store`].
    store_channels: parking_lot::Mutex<Option<StoreChannels>>,
}

struct StoreChannels {
    loads: tokio::sync::mpsc::UnboundedReceiver<RoomKey>,
    completions: crate::store::redis_store::Completions,
}

impl Node {
    pub fn new(config: Config, metrics: Option<PrometheusHandle>) -> Result<Self, ConfigError> {
        let id = NodeId::new(&config.node_id);
        let generation = time::now_millis();
        let (deferred_tx, deferred_rx) = tokio::sync::mpsc::unbounded_channel();
        let (loads_tx, loads) = tokio::sync::mpsc::unbounded_channel();
        let (store, store_channels): (Arc<dyn crate::store::Store>, _) = match &config.redis_url {
            None => (Arc::new(crate::store::MemoryStore), None),
            Some(url) => {
                let limits = crate::store::redis_store::Limits {
                    history_size: config.history_size,
                    inbox_size: config.inbox_size,
                    inbox_ttl: config.inbox_ttl,
                };
                let (store, completions) = crate::store::redis_store::RedisStore::start(url, limits)
                    .map_err(|err| ConfigError::new(format!("--redis-url is not usable: {err}")))?;
                (store, Some(StoreChannels { loads, completions }))
            }
        };
        Ok(Node {
            store_channels: parking_lot::Mutex::new(store_channels),
            deferred_tx,
            deferred_rx: parking_lot::Mutex::new(Some(deferred_rx)),
            auth: Authenticator::new(&config.key)?,
            owner: Owner::with_inbox(
                IdGen::new(id.as_str(), generation),
                config.history_size,
                config.typing_timeout,
                config.inbox_size,
                config.inbox_ttl,
            )
            .with_presence_grace(config.presence_grace)
            .with_store(store, loads_tx),
            hub: Hub::new(config.limits.error_limit, config.limits.error_window),
            routing_ring: parking_lot::RwLock::new(Arc::new(Ring::new([id.clone()]))),
            owner_ring: parking_lot::RwLock::new(Arc::new(Ring::new([id.clone()]))),
            takeover: Takeover::default(),
            cluster: OnceLock::new(),
            pending: Mutex::new(HashMap::new()),
            next_request_id: AtomicU64::new(1),
            queries: Mutex::new(HashMap::new()),
            id,
            generation,
            config,
            shutdown: CancellationToken::new(),
            close_all: CancellationToken::new(),
            tasks: TaskTracker::new(),
            metrics,
            next_conn_id: AtomicU64::new(1),
            ready: AtomicBool::new(false),
            admin: crate::admin::Pending::default(),
        })
    }

    /// Joins the cluster of `--cluster-listen` (a no-op for a single node): starts gossip and
    /// links, waits for the seeds and the links, then gossips `ready`.
    pub async fn join_cluster(self: &Arc<Self>) -> Result<(), ClusterError> {
        let Some(settings) = self.config.cluster.clone() else {
            return Ok(());
        };
        let handler = Arc::new(inbound::PeerHandler::new(Arc::downgrade(self)));
        let cluster_config = ClusterConfig {
            node_id: self.id.clone(),
            generation: self.generation,
            listen_addr: settings.listen,
            advertise_addr: settings.advertise,
            seeds: settings.seeds.clone(),
            secret: settings.secret.as_bytes().to_vec(),
            // Gossip carries no authentication of its own: deriving the gossip cluster id from
            // the secret keeps a node with another secret out of the membership, not only
            // off the links.
            cluster_id: gossip_cluster_id(&settings.cluster_id, &settings.secret),
            gossip_interval: settings.gossip_interval,
            failure_timeout: settings.failure_timeout,
            link_queue_frames: 16 * 1024,
        };
        let cluster = Arc::new(Cluster::start(cluster_config, handler).await?);
        self.set_ring(Arc::new(Ring::new([])));
        self.set_owner_ring(Arc::new(Ring::new([])));
        let _ = self.cluster.set(cluster.clone());
        tokio::spawn(crate::rebalance::run(Arc::downgrade(self), cluster.watch()));
        tokio::spawn(sweep_pending(Arc::downgrade(self)));
        if !settings.seeds.is_empty() {
            // A seed that is not up yet (the first node of a cluster) does not stop us.
            let found = cluster.wait_for(Duration::from_secs(5), |view| view.members.len() > 1).await;
            if !found {
                tracing::warn!(seeds = ?settings.seeds, "no other member found; starting alone");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cluster.links_complete() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cluster.set_state(MemberState::Ready).await;
        cluster.wait_for(Duration::from_secs(2), |view| view.ring.contains(&self.id)).await;
        tracing::info!(members = cluster.view().members.len(), "joined the cluster");
        Ok(())
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

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The cluster-wide id of a local connection.
    pub fn conn_label(&self, conn_id: u64) -> String {
        format!("{}-{}", self.id, conn_id)
    }

    /// Ready: serving, and in a cluster a ready member with links to every other member.
    pub fn is_ready(&self) -> bool {
        if !self.ready.load(Ordering::Relaxed) || self.shutdown.is_cancelled() || !self.owner.store().up() {
            return false;
        }
        match self.cluster.get() {
            None => true,
            Some(cluster) => {
                // Settled: a ready member, linked to every member, routing by the ring of the
                // current view (the last rebalance is done).
                let view = cluster.view();
                view.members.get(&self.id).is_some_and(|member| member.is_ready())
                    && cluster.links_complete()
                    && self.ring().members() == view.ring.members()
            }
        }
    }

    /// The close every client gets when this node shuts down: 1012 (reconnect elsewhere) in a
    /// cluster, 1001 alone.
    pub fn shutdown_disconnect(&self) -> crate::close::Disconnect {
        if self.cluster.get().is_some() {
            crate::close::Disconnect::RESTART
        } else {
            crate::close::Disconnect::SHUTDOWN
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Sends `op` to the owner of its room: an in-process call when that is this node, a
    /// peer frame otherwise. `Err(unavailable)` when the owner cannot be reached; the op was
    /// not applied.
    pub fn route(&self, op: OwnerOp) -> Result<(), ReplyError> {
        self.route_by(op, &self.ring())
    }

    /// Like [`Node::route`], by the given ring.
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
    fn on_takeover_done(&self, member: &NodeId, hash: u64) {
        if self.takeover.done(member, hash) {
            self.release_takeover();
        }
    }

    fn route_now(&self, op: OwnerOp, ring: &Ring) -> Result<(), ReplyError> {
        let publish = op.is_publish().then(Instant::now);
        match self.owner.handle(self, op, |key| self.owns(key)) {
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
                let publish = op.is_publish();
                let pending = Pending {
                    node: owner.clone(),
                    conn_id: sender.conn.conn_id,
                    op_id,
                    sent_at: Instant::now(),
                    publish,
                };
                self.pending.lock().insert(request_id, pending);
                if let Some(sender) = op.sender_mut() {
                    sender.request_id = request_id;
                }
            }
        }
        metrics::peer_forward();
        if cluster.send(&owner, peer::encode_op(&op, hops)).is_err() {
            if request_id != 0 {
                self.pending.lock().remove(&request_id);
            }
            return Err(unavailable("owner unreachable"));
        }
        Ok(())
    }

    /// An op that arrived from a peer: apply it, forward it once, or refuse it.
    fn on_remote_op(&self, op: OwnerOp, hops: u16) {
        if let Some(Held::Remote(op, hops)) = self.takeover.hold(&self.id, Held::Remote(op, hops)) {
            self.on_remote_op_now(op, hops);
        }
    }

    fn on_remote_op_now(&self, op: OwnerOp, hops: u16) {
        let ring = self.ring();
        // A resubscription is sent to the node the sender's ring names; take it even if our
        // own view lags behind (the views converge within a few gossip rounds).
        let resubscribe = matches!(op, OwnerOp::Resubscribe { .. });
        let Err(op) = self.owner.handle(self, op, |key| resubscribe || self.owns(key)) else {
            return;
        };
        let result = if hops == 0 {
            self.forward(op.clone(), &ring, 1)
        } else {
            Err(ReplyError::new(ErrorCode::Unavailable, "room is moving, retry"))
        };
        if let Err(error) = result {
            if let (Some(sender), Some(op_id)) = (op.sender(), op.op_id()) {
                self.refuse(sender, op_id, &error);
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

    /// Serves a durable store: loads rooms the owner asked for and answers the jobs the
    /// store finished, until the node goes away. Returns at once without one.
    pub async fn run_store(self: Arc<Self>) {
        let Some(StoreChannels { mut loads, mut completions }) = self.store_channels.lock().take() else { return };
        let weak = Arc::downgrade(&self);
        drop(self);
        let loader = {
            let weak = weak.clone();
            async move {
                while let Some(key) = loads.recv().await {
                    let Some(node) = weak.upgrade() else { return };
                    let load = node.owner.store().load(&key);
                    drop(node);
                    let weak = weak.clone();
                    tokio::spawn(async move {
                        let result = load.await;
                        if let Some(node) = weak.upgrade() {
                            node.owner.loaded(&*node, &key, result, |key| node.owns(key));
                        }
                    });
                }
            }
        };
        let answers = async move {
            while let Some((job, ok)) = completions.recv().await {
                let Some(node) = weak.upgrade() else { return };
                node.owner.written(&*node, job, ok);
            }
        };
        tokio::join!(loader, answers);
    }

    /// Routes the ops owners asked this edge to route, until the node goes away.
    pub async fn run_deferred(self: Arc<Self>) {
        let Some(mut deferred_rx) = self.deferred_rx.lock().take() else { return };
        let weak = Arc::downgrade(&self);
        drop(self);
        while let Some(op) = deferred_rx.recv().await {
            let Some(node) = weak.upgrade() else { return };
            if let Err(err) = node.route(op) {
                tracing::debug!(error = %err.message, "deferred op not routed");
            }
        }
    }

    /// `presence.query`: asks the owner of each user's key, answers once all have.
    pub fn presence_query(
        &self,
        conn: &crate::conn::Conn,
        identity: &crate::auth::Identity,
        op_id: Option<&str>,
        users: Vec<String>,
    ) -> Result<(), ReplyError> {
        let query_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let query = PresenceQuery {
            conn_id: conn.id,
            op_id: op_id.map(str::to_string),
            entries: vec![None; users.len()],
            started: Instant::now(),
        };
        self.queries.lock().insert(query_id, query);
        for (index, user) in users.iter().enumerate() {
            let room = RoomKey::user(&identity.tenant, user);
            let sender = crate::session::sender_of(self, conn, identity);
            let op = crate::ops::PresenceOp::Query { query_id: query_id * QUERY_PARTS + index as u64 };
            if let Err(error) = self.route(OwnerOp::request(room, sender, None, crate::ops::RequestKind::Presence(op)))
            {
                self.queries.lock().remove(&query_id);
                return Err(error);
            }
        }
        Ok(())
    }

    /// One part of a `presence.query` came back; the ack goes out with the last one.
    fn on_presence_info(&self, conn_id: ConnId, part: u64, entry: Bytes) {
        let (query_id, index) = (part / QUERY_PARTS, (part % QUERY_PARTS) as usize);
        let complete = {
            let mut queries = self.queries.lock();
            let Some(query) = queries.get_mut(&query_id).filter(|query| query.conn_id == conn_id) else { return };
            if let Some(slot) = query.entries.get_mut(index) {
                *slot = Some(entry);
            }
            if query.entries.iter().all(Option::is_some) {
                queries.remove(&query_id)
            } else {
                None
            }
        };
        let Some(query) = complete else { return };
        let Some(op_id) = query.op_id else { return };
        let mut frame =
            format!(r#"{{"type":"ack","op_id":{},"data":{{"users":["#, serde_json::Value::from(op_id)).into_bytes();
        for (index, entry) in query.entries.iter().flatten().enumerate() {
            if index > 0 {
                frame.push(b',');
            }
            frame.extend_from_slice(entry);
        }
        frame.extend_from_slice(b"]}}");
        if let Some(conn) = self.hub.get(conn_id) {
            conn.outbox.push_text(Bytes::from(frame));
        }
    }

    /// A message for this edge: settle its request, then hand it to the hub.
    fn on_edge_msg(&self, msg: EdgeMsg) {
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
            if let Some(pending) = self.pending.lock().remove(&request_id) {
                metrics::peer_request_answered(pending.sent_at.elapsed().as_secs_f64());
                if pending.publish {
                    metrics::published(pending.sent_at);
                }
            }
        }
        self.hub.handle(msg);
    }

    /// Answers `unavailable` to requests in flight to `node` (its link broke) or older than
    /// the timeout.
    fn fail_pending(&self, filter: impl Fn(&Pending) -> bool, message: &'static str) {
        let failed: Vec<Pending> = {
            let mut pending = self.pending.lock();
            let ids: Vec<u64> = pending.iter().filter(|(_, p)| filter(p)).map(|(id, _)| *id).collect();
            ids.into_iter().filter_map(|id| pending.remove(&id)).collect()
        };
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

fn gossip_cluster_id(cluster_id: &str, secret: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, cluster_id.as_bytes());
    let hex: String = tag.as_ref()[..8].iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{cluster_id}-{hex}")
}

impl EdgeSink for Node {
    fn send_to_edge(&self, node: &NodeId, msg: EdgeMsg) {
        if node == &self.id {
            return match msg {
                // Called from inside an owner: route later, from the deferred task.
                EdgeMsg::Route(op) => {
                    let _ = self.deferred_tx.send(*op);
                }
                EdgeMsg::PresenceInfo { conn_id, query_id, entry } => self.on_presence_info(conn_id, query_id, entry),
                msg => self.hub.handle(msg),
            };
        }
        let Some(cluster) = self.cluster.get() else {
            return tracing::warn!(node = %node, "no link to edge node, message dropped");
        };
        if let Err(err) = cluster.send(node, peer::encode_msg(&msg)) {
            metrics::peer_send_failed();
            tracing::debug!(node = %node, error = %err, "edge message not sent");
        }
    }
}

async fn sweep_pending(node: std::sync::Weak<Node>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    loop {
        interval.tick().await;
        let Some(node) = node.upgrade() else { return };
        node.fail_pending(|pending| pending.sent_at.elapsed() > PENDING_TIMEOUT, "owner did not answer");
        let expired: Vec<PresenceQuery> = {
            let mut queries = node.queries.lock();
            let ids: Vec<u64> =
                queries.iter().filter(|(_, q)| q.started.elapsed() > PENDING_TIMEOUT).map(|(id, _)| *id).collect();
            ids.into_iter().filter_map(|id| queries.remove(&id)).collect()
        };
        for query in expired {
            if let Some(conn) = node.hub.get(query.conn_id) {
                let error = ReplyError::new(ErrorCode::Unavailable, "owner did not answer");
                conn.outbox.push_text(frames::error(query.op_id.as_deref(), &error));
            }
        }
    }
}
