//! The [`Cluster`] handle: gossip membership (chitchat over UDP), the ring over ready
//! members, and the peer links (TCP on the same port number).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chitchat::transport::UdpTransport;
use chitchat::{spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::change::{compute_changes, members_by_id, ClusterChange};
use crate::link::{FrameHandler, Links, Mark, SendError};
use crate::member::{ClusterMember, MemberState, PEER_ADDR_KEY, STATE_KEY};
use crate::metrics;
use crate::node::{NodeId, NodeIdentity};
use crate::ring::Ring;
use crate::wire::PeerFrame;

/// How a node joins and talks to its cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub node_id: NodeId,
    /// Start time in milliseconds: a restarted node has a higher one.
    pub generation: u64,
    /// TCP links and UDP gossip listen on this one address.
    pub listen_addr: SocketAddr,
    /// The address other nodes reach this node at (TCP and UDP).
    pub advertise_addr: SocketAddr,
    /// `host:port` of other nodes; DNS names are re-resolved (a headless service works).
    pub seeds: Vec<String>,
    /// Shared secret of the link handshake.
    pub secret: Vec<u8>,
    /// Nodes of different clusters ignore each other.
    pub cluster_id: String,
    /// Gossip round interval.
    pub gossip_interval: Duration,
    /// About how long without news before a node is declared dead.
    pub failure_timeout: Duration,
    /// Frames queued per peer link before sends are refused.
    pub link_queue_frames: usize,
}

impl ClusterConfig {
    /// A configuration for tests on loopback.
    pub fn for_test(node_id: &str, addr: SocketAddr, seeds: Vec<String>) -> Self {
        ClusterConfig {
            node_id: NodeId::new(node_id),
            generation: 1,
            listen_addr: addr,
            advertise_addr: addr,
            seeds,
            secret: b"test-secret".to_vec(),
            cluster_id: "ringcast".into(),
            gossip_interval: Duration::from_millis(100),
            failure_timeout: Duration::from_millis(1500),
            link_queue_frames: 4096,
        }
    }
}

/// Startup failures.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start gossip: {0}")]
    Gossip(String),
}

/// What this node knows of the cluster at one moment.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// Increases with every change.
    pub version: u64,
    /// Live members (any state), by id.
    pub members: BTreeMap<NodeId, ClusterMember>,
    /// The ring over the ready members.
    pub ring: Arc<Ring>,
    /// Every member this node knows of, live or dead (until chitchat forgets a dead node,
    /// `dead_node_grace_period`), but those whose last state was `draining` (they left on
    /// purpose): the electorate of [`ClusterView::has_quorum`].
    pub known: BTreeSet<NodeId>,
}

impl ClusterView {
    pub fn ready_members(&self) -> impl Iterator<Item = &ClusterMember> {
        self.members.values().filter(|member| member.is_ready())
    }

    /// Whether this node reaches a strict majority of the members it knows (see `known`).
    /// Below three known members there is no majority to speak of: a survivor of two cannot
    /// tell its peer's death from a partition, and goes on.
    pub fn has_quorum(&self) -> bool {
        has_quorum(&self.members, &self.known)
    }
}

/// How long a member that was declared dead and came back (same process: a partition
/// healed) counts as joining, whatever state it had before.
const REVIVAL_GRACE: Duration = Duration::from_secs(1);

/// A member that comes back from the dead is first heard of through its heartbeat, while its
/// state is still the one it had when it was cut off: `ready`, although it fenced itself
/// (gossiped `joining`) meanwhile. Putting it back on the ring on that stale word would hand
/// it rooms and route to it before it serves again; so it counts as joining until its own
/// gossip had time to arrive ([`REVIVAL_GRACE`]).
fn hold_revived(
    me: &NodeId,
    previous: &ClusterView,
    members: &mut BTreeMap<NodeId, ClusterMember>,
    generations: &mut HashMap<NodeId, u64>,
    revived: &mut HashMap<NodeId, Instant>,
) {
    let now = Instant::now();
    for member in members.values_mut().filter(|member| member.node_id != *me) {
        let came_back = !previous.members.contains_key(&member.node_id)
            && generations.get(&member.node_id) == Some(&member.generation);
        if came_back {
            revived.insert(member.node_id.clone(), now);
        }
        generations.insert(member.node_id.clone(), member.generation);
        if revived.get(&member.node_id).is_some_and(|since| now.duration_since(*since) < REVIVAL_GRACE)
            && member.state == MemberState::Ready
        {
            member.state = MemberState::Joining;
        }
    }
    revived.retain(|_, since| now.duration_since(*since) < REVIVAL_GRACE);
}

fn has_quorum(members: &BTreeMap<NodeId, ClusterMember>, known: &BTreeSet<NodeId>) -> bool {
    let reachable = members.values().filter(|member| member.state != MemberState::Draining).count();
    known.len() < 3 || 2 * reachable > known.len()
}

/// A running membership: drop it or call [`Cluster::shutdown`] to leave.
pub struct Cluster {
    identity: NodeIdentity,
    chitchat: Mutex<Option<ChitchatHandle>>,
    links: Arc<Links>,
    view_rx: watch::Receiver<Arc<ClusterView>>,
    refresh: Arc<Notify>,
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<ClusterChange>>>>,
    shutdown: CancellationToken,
    /// Gossip's own runtime (one thread): see [`gossip_runtime`].
    gossip: Mutex<Option<tokio::runtime::Runtime>>,
}

/// The runtime gossip runs on, apart from the node's work.
///
/// Liveness is judged by heartbeats. On the node's runtime a gossip round waits behind
/// every task queued before it, so a node that is busy (thousands of deliveries queued) but
/// alive would fall silent, be declared dead and lose its rooms while still serving them.
/// On a thread of its own, gossip keeps its rhythm whatever the node's backlog; a node that
/// stops altogether is caught by the stall guard.
fn gossip_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("ringcast-gossip").enable_all().build()
}

impl Cluster {
    /// Binds the port, starts gossip (as `joining`) and the link acceptor.
    pub async fn start(config: ClusterConfig, handler: Arc<dyn FrameHandler>) -> Result<Cluster, ClusterError> {
        metrics::describe();
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(|source| ClusterError::Bind { addr: config.listen_addr, source })?;
        let identity = NodeIdentity { node_id: config.node_id.clone(), generation: config.generation };
        let shutdown = CancellationToken::new();
        let links = Links::new(
            identity.clone(),
            config.cluster_id.clone(),
            &config.secret,
            config.link_queue_frames,
            handler,
            shutdown.clone(),
        );
        // phi here is "silence / mean heartbeat interval": the threshold is the failure
        // timeout in units of the gossip interval.
        let phi_threshold = (config.failure_timeout.as_secs_f64() / config.gossip_interval.as_secs_f64()).max(3.0);
        let chitchat_config = ChitchatConfig {
            chitchat_id: ChitchatId::new(config.node_id.as_str(), config.generation, config.advertise_addr),
            cluster_id: config.cluster_id.clone(),
            gossip_interval: config.gossip_interval,
            listen_addr: config.listen_addr,
            seed_nodes: config.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold,
                sampling_window_size: 100,
                max_interval: Duration::from_secs(10),
                initial_interval: config.gossip_interval,
                dead_node_grace_period: Duration::from_secs(600),
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        let initial = vec![
            (STATE_KEY.to_string(), MemberState::Joining.as_str().to_string()),
            (PEER_ADDR_KEY.to_string(), config.advertise_addr.to_string()),
        ];
        let gossip = gossip_runtime().map_err(|err| ClusterError::Gossip(err.to_string()))?;
        let chitchat = gossip
            .spawn(async move { spawn_chitchat(chitchat_config, initial, &UdpTransport).await })
            .await
            .map_err(|err| ClusterError::Gossip(err.to_string()))?
            .map_err(|err| ClusterError::Gossip(err.to_string()))?;
        tokio::spawn(links.clone().accept_loop(listener));

        let empty = Arc::new(ClusterView {
            version: 0,
            members: BTreeMap::new(),
            ring: Arc::new(Ring::new([])),
            known: BTreeSet::new(),
        });
        let (view_tx, view_rx) = watch::channel(empty);
        let refresh = Arc::new(Notify::new());
        let subscribers = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(membership_loop(
            chitchat.chitchat(),
            identity.clone(),
            links.clone(),
            view_tx,
            refresh.clone(),
            subscribers.clone(),
            shutdown.clone(),
        ));
        Ok(Cluster {
            identity,
            chitchat: Mutex::new(Some(chitchat)),
            links,
            view_rx,
            refresh,
            subscribers,
            shutdown,
            gossip: Mutex::new(Some(gossip)),
        })
    }

    pub fn node_id(&self) -> &NodeId {
        &self.identity.node_id
    }

    pub fn generation(&self) -> u64 {
        self.identity.generation
    }

    /// The current view (members and ring).
    pub fn view(&self) -> Arc<ClusterView> {
        self.view_rx.borrow().clone()
    }

    /// A watch of the view: wakes on every change.
    pub fn watch(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view_rx.clone()
    }

    /// Typed membership changes; the stream first replays every current member as `Add`.
    pub fn changes(&self) -> mpsc::UnboundedReceiver<ClusterChange> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut subscribers = self.subscribers.lock();
        for member in self.view().members.values() {
            let _ = tx.send(ClusterChange::Add(member.clone()));
        }
        subscribers.push(tx);
        rx
    }

    /// Gossips this node's new state; the local view follows at once.
    pub async fn set_state(&self, state: MemberState) {
        let chitchat = self.chitchat.lock().as_ref().map(ChitchatHandle::chitchat);
        if let Some(chitchat) = chitchat {
            chitchat.lock().await.self_node_state().set(STATE_KEY, state.as_str());
        }
        self.refresh.notify_one();
    }

    /// Queues `frame` for `node` without waiting; its [`Mark`] tells later whether `node`
    /// handled it.
    pub fn send(&self, node: &NodeId, frame: PeerFrame) -> Result<Mark, SendError> {
        self.links.send(node, frame, false)
    }

    /// Queues a frame of an ordered stream (one that must not be lost while its link
    /// stands): it may overfill the queue up to [`crate::STREAM_QUEUE_FACTOR`] times (at
    /// least [`crate::STREAM_QUEUE_MIN`] frames), so a sender that checked
    /// [`Cluster::congested`] before taking a seq does not find it full; one that still does
    /// resets the link rather than leave a hole in the stream.
    pub fn send_stream(&self, node: &NodeId, frame: PeerFrame) -> Result<Mark, SendError> {
        self.links.send(node, frame, true)
    }

    /// How many frames `node` has handled of those sent on link `link_id` (peers send
    /// receipts as they read; see [`Mark`]); `None` once that link is gone or replaced.
    pub fn handled(&self, node: &NodeId, link_id: u64) -> Option<u64> {
        self.links.handled(node, link_id)
    }

    /// Whether the link to `node` has less than an eighth of its queue free (frames sent now
    /// may find it full, except those of [`Cluster::send_stream`]).
    pub fn congested(&self, node: &NodeId) -> bool {
        self.links.congested(node)
    }

    pub fn is_connected(&self, node: &NodeId) -> bool {
        self.links.is_connected(node)
    }

    /// True when this node has a link to every other live member.
    pub fn links_complete(&self) -> bool {
        self.view().members.keys().filter(|node| **node != self.identity.node_id).all(|node| self.is_connected(node))
    }

    /// Waits until `predicate` holds for the view, or `timeout` passes.
    pub async fn wait_for(&self, timeout: Duration, predicate: impl Fn(&ClusterView) -> bool) -> bool {
        let mut watch = self.watch();
        tokio::time::timeout(timeout, async {
            loop {
                if predicate(&watch.borrow_and_update()) {
                    return;
                }
                if watch.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await
        .is_ok()
    }

    /// Leaves: stops gossip and closes every link.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let chitchat = self.chitchat.lock().take();
        if let Some(chitchat) = chitchat {
            let _ = chitchat.shutdown().await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(chitchat) = self.chitchat.lock().take() {
            let _ = chitchat.initiate_shutdown();
        }
        if let Some(gossip) = self.gossip.lock().take() {
            // Dropped from async code too: never block on its tasks.
            gossip.shutdown_background();
        }
    }
}

/// Recomputes the view whenever gossip's live set changes (or this node's own state), and
/// publishes it with the typed changes.
async fn membership_loop(
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    identity: NodeIdentity,
    links: Arc<Links>,
    view_tx: watch::Sender<Arc<ClusterView>>,
    refresh: Arc<Notify>,
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<ClusterChange>>>>,
    shutdown: CancellationToken,
) {
    let mut live_watch = chitchat.lock().await.live_nodes_watcher();
    let mut metrics_tick = tokio::time::interval(Duration::from_secs(1));
    // The generation each member had when last seen, and when a member seen dead came back.
    let mut generations: HashMap<NodeId, u64> = HashMap::new();
    let mut revived: HashMap<NodeId, Instant> = HashMap::new();
    loop {
        let (members, known) = {
            let chitchat = chitchat.lock().await;
            let known: BTreeSet<NodeId> = chitchat
                .node_states()
                .iter()
                .filter_map(|(chitchat_id, node_state)| ClusterMember::from_node_state(chitchat_id, node_state))
                .filter(|member| member.state != MemberState::Draining || member.node_id == identity.node_id)
                .map(|member| member.node_id)
                .collect();
            let members: Vec<ClusterMember> = chitchat
                .live_nodes()
                .filter_map(|chitchat_id| {
                    let node_state = chitchat.node_state(chitchat_id)?;
                    ClusterMember::from_node_state(chitchat_id, node_state)
                })
                .filter(|member| member.node_id != identity.node_id || member.generation == identity.generation)
                .collect();
            (members_by_id(members), known)
        };
        let previous = view_tx.borrow().clone();
        let mut members = members;
        hold_revived(&identity.node_id, &previous, &mut members, &mut generations, &mut revived);
        if members != previous.members || known != previous.known {
            // A node cut off from the majority is off its own ring at once: it must not take
            // over a single key in the moment before it fences itself (the others serve them).
            let quorum = has_quorum(&members, &known);
            let ring = Arc::new(Ring::new(
                members
                    .values()
                    .filter(|m| m.is_ready() && (quorum || m.node_id != identity.node_id))
                    .map(|m| m.node_id.clone()),
            ));
            if ring.members() != previous.ring.members() {
                let share = ring.shares().get(&identity.node_id).copied().unwrap_or(0.0);
                metrics::ring_changed(share);
                tracing::info!(ready = ?ring.members(), "ring changed");
            }
            for state in [MemberState::Joining, MemberState::Ready, MemberState::Draining] {
                metrics::members(state.as_str(), members.values().filter(|m| m.state == state).count());
            }
            let changes = compute_changes(&previous.members, &members);
            let peers: Vec<(NodeId, SocketAddr)> = members
                .values()
                .filter(|m| m.node_id != identity.node_id)
                .map(|m| (m.node_id.clone(), m.peer_addr))
                .collect();
            links.reconcile_dialers(&peers);
            let view = Arc::new(ClusterView { version: previous.version + 1, members, ring, known });
            let mut subscribers = subscribers.lock();
            let _ = view_tx.send(view);
            subscribers.retain(|subscriber| changes.iter().all(|change| subscriber.send(change.clone()).is_ok()));
        }
        // Look again when a revived member's grace ends.
        let grace_end = revived.values().min().map(|since| *since + REVIVAL_GRACE);
        tokio::select! {
            changed = live_watch.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep_until(grace_end.unwrap_or_else(Instant::now).into()), if grace_end.is_some() => {}
            _ = refresh.notified() => {}
            _ = metrics_tick.tick() => {
                let depths = links.queue_depths();
                metrics::link_gauges(depths.len(), depths.iter().map(|(_, depth)| depth).sum());
            }
            _ = shutdown.cancelled() => return,
        }
    }
}
