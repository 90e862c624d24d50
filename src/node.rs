//! The node: one ringcast process wired together. It builds the owner, the router and the
//! edge from the configuration and holds what the whole process shares (shutdown, tasks,
//! readiness, metrics); the parts it holds do not import it back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use ringcast_cluster::NodeId;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::close::Disconnect;
use crate::config::{Config, ConfigError};
use crate::edge::hub::Hub;
use crate::edge::Edge;
use crate::ids::IdGen;
use crate::owner::Owner;
use crate::route::{Awaiting, Router, StoreFeed};
use crate::store::redis_store::{Limits, RedisStore};
use crate::store::{MemoryStore, Store};
use crate::time;
use crate::webhook::hooks::Hooks;
use crate::webhook::Webhooks;

/// One ringcast process.
pub struct Node {
    pub id: NodeId,
    /// Start time in milliseconds; a restarted node has a higher generation.
    pub generation: u64,
    pub config: Config,
    /// The connection side: this node's connections, their hub and what they share.
    pub edge: Arc<Edge>,
    /// The way from edges to owners and back, and the rooms this node owns.
    pub router: Arc<Router>,
    /// Cancelled when the node begins to shut down: stop accepting.
    pub shutdown: CancellationToken,
    /// Tracks every connection task so shutdown can wait for them.
    pub tasks: TaskTracker,
    pub metrics: Option<PrometheusHandle>,
    next_conn_id: AtomicU64,
    ready: AtomicBool,
    /// Cut off from the cluster's majority: no rooms, no clients (see `quorum.rs`).
    pub fenced: AtomicBool,
    /// Admin API requests in flight to other nodes.
    pub admin: Awaiting,
    /// `--connect-rate-per-ip`: new connections per client address.
    pub connect_limiter: Option<crate::admission::ConnectLimiter>,
    /// A durable store's feed, taken by [`Node::take_store_feed`] when the router starts
    /// serving it.
    store_feed: parking_lot::Mutex<Option<StoreFeed>>,
}

impl Node {
    pub fn new(config: Config, metrics: Option<PrometheusHandle>) -> Result<Self, ConfigError> {
        let id = NodeId::new(&config.node_id);
        let generation = time::now_millis();
        // Unbounded: the owner asks for a room's load once per load (the room waits in
        // `Loading` until it is answered), so the queue holds at most one key per room.
        let (loads_tx, loads) = tokio::sync::mpsc::unbounded_channel();
        let (store, store_feed): (Arc<dyn Store>, _) = match &config.redis_url {
            None => (Arc::new(MemoryStore), None),
            Some(url) => {
                let limits = Limits {
                    history_size: config.history_size,
                    inbox_size: config.inbox_size,
                    inbox_ttl: config.inbox_ttl,
                };
                let (store, completions) = RedisStore::start(url, limits)
                    .map_err(|err| ConfigError::new(format!("--redis-url is not usable: {err}")))?;
                (store, Some(StoreFeed { loads, completions }))
            }
        };
        let webhooks = match &config.webhooks {
            Some(settings) => Webhooks::start(settings, id.as_str(), generation, config.redis_url.as_deref())
                .map_err(|err| ConfigError::new(format!("--redis-url is not usable: {err}")))?,
            None => Webhooks::default(),
        };
        let owner = Owner::with_inbox(
            IdGen::new(id.as_str(), generation),
            config.history_size,
            config.typing_timeout,
            config.inbox_size,
            config.inbox_ttl,
        )
        .with_presence_grace(config.presence_grace)
        .with_user_connection_limit(config.admission.max_connections_per_user)
        .with_store(store, loads_tx)
        .with_webhooks(webhooks.clone());
        let hub = Arc::new(Hub::new(config.limits.error_limit, config.limits.error_window));
        let router = Arc::new(Router::new(id.clone(), owner, hub.clone()));
        let edge = Arc::new(Edge {
            node_id: id.clone(),
            limits: config.limits.clone(),
            auth: Authenticator::new(&config.key, &config.jwt)?,
            hub,
            owners: router.clone(),
            close_all: CancellationToken::new(),
            shutdown_disconnect: if config.cluster.is_some() { Disconnect::RESTART } else { Disconnect::SHUTDOWN },
            webhooks,
            hooks: match &config.hooks {
                Some(settings) => Hooks::start(settings, id.as_str(), generation),
                None => Hooks::default(),
            },
            compression: config.compression,
        });
        let connect_limiter = config.admission.connect_rate_per_ip.map(crate::admission::ConnectLimiter::new);
        Ok(Node {
            store_feed: parking_lot::Mutex::new(store_feed),
            edge,
            router,
            id,
            generation,
            config,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            metrics,
            next_conn_id: AtomicU64::new(1),
            ready: AtomicBool::new(false),
            fenced: AtomicBool::new(false),
            admin: Awaiting::default(),
            connect_limiter,
        })
    }

    /// The durable store's feed for [`Router::run_store`] (once; `None` without a store).
    pub fn take_store_feed(&self) -> Option<StoreFeed> {
        self.store_feed.lock().take()
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Ready: serving, and in a cluster a ready member with links to every other member.
    pub fn is_ready(&self) -> bool {
        if !self.ready.load(Ordering::Relaxed) || self.shutdown.is_cancelled() || !self.router.owner.store().up() {
            return false;
        }
        match self.router.cluster() {
            None => true,
            Some(cluster) => {
                // Settled: a ready member, linked to every member, routing by the ring of the
                // current view (the last rebalance is done).
                let view = cluster.view();
                view.members.get(&self.id).is_some_and(|member| member.is_ready())
                    && cluster.links_complete()
                    && self.router.ring().members() == view.ring.members()
            }
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}
