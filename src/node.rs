//! The node: everything one ringcast process holds, and the router between its edge and the
//! owners of room keys.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use metrics_exporter_prometheus::PrometheusHandle;
use ringcast_cluster::{NodeId, Ring};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::config::{Config, ConfigError};
use crate::hub::Hub;
use crate::ids::IdGen;
use crate::owner::{EdgeSink, Owner};
use crate::protocol::{ErrorCode, ReplyError};
use crate::route::{EdgeMsg, OwnerOp};
use crate::time;

/// One ringcast process.
pub struct Node {
    pub id: NodeId,
    /// Start time in milliseconds; a restarted node has a higher generation.
    pub generation: u64,
    pub config: Config,
    pub auth: Authenticator,
    /// Rooms whose key this node owns.
    pub owner: Owner,
    /// This node's connections and their local fan-out.
    pub hub: Hub,
    /// The ring over the ready members. A single node is a ring of one.
    ring: Ring,
    /// Cancelled when the node begins to shut down.
    pub shutdown: CancellationToken,
    /// Tracks every connection task so shutdown can wait for them.
    pub tasks: TaskTracker,
    pub metrics: Option<PrometheusHandle>,
    next_conn_id: AtomicU64,
    ready: AtomicBool,
}

impl Node {
    pub fn new(config: Config, metrics: Option<PrometheusHandle>) -> Result<Self, ConfigError> {
        let id = NodeId::new(&config.node_id);
        let generation = time::now_millis();
        Ok(Node {
            auth: Authenticator::new(&config.key)?,
            owner: Owner::new(IdGen::new(id.as_str(), generation), config.history_size),
            hub: Hub::new(config.limits.error_limit, config.limits.error_window),
            ring: Ring::new([id.clone()]),
            id,
            generation,
            config,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            metrics,
            next_conn_id: AtomicU64::new(1),
            ready: AtomicBool::new(false),
        })
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The cluster-wide id of a local connection.
    pub fn conn_label(&self, conn_id: u64) -> String {
        format!("{}-{}", self.id, conn_id)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.shutdown.is_cancelled()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Sends `op` to the owner of its room: an in-process call when that is this node.
    /// `Err(unavailable)` when the owner cannot be reached; the op was not applied.
    pub fn route(&self, op: OwnerOp) -> Result<(), ReplyError> {
        match self.ring.owner(op.room().as_str()) {
            Some(owner) if owner == &self.id => {
                self.owner.handle(self, op);
                Ok(())
            }
            _ => Err(ReplyError::new(ErrorCode::Unavailable, "owner unreachable")),
        }
    }
}

impl EdgeSink for Node {
    fn send_to_edge(&self, node: &NodeId, msg: EdgeMsg) {
        if node == &self.id {
            self.hub.handle(msg);
        } else {
            tracing::warn!(node = %node, "no link to edge node, message dropped");
        }
    }
}
