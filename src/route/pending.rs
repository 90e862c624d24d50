//! Requests in flight over peer links: client requests waiting for a remote owner's answer,
//! and admin queries waiting for other nodes' answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use ringcast_cluster::NodeId;
use tokio::sync::oneshot;

use crate::ids::ConnId;

/// How long a remote owner may take to answer before the client gets `unavailable`.
pub(super) const PENDING_TIMEOUT: Duration = Duration::from_secs(10);

/// A request sent to a remote owner and not answered yet.
pub(super) struct Pending {
    pub node: NodeId,
    pub conn_id: ConnId,
    pub op_id: String,
    pub sent_at: Instant,
    pub publish: bool,
}

/// The requests in flight, by request id.
#[derive(Default)]
pub(super) struct Requests(Mutex<HashMap<u64, Pending>>);

impl Requests {
    pub fn insert(&self, request_id: u64, pending: Pending) {
        self.0.lock().insert(request_id, pending);
    }

    pub fn remove(&self, request_id: u64) -> Option<Pending> {
        self.0.lock().remove(&request_id)
    }

    /// Takes out every request `filter` picks.
    pub fn take_where(&self, filter: impl Fn(&Pending) -> bool) -> Vec<Pending> {
        let mut pending = self.0.lock();
        let ids: Vec<u64> = pending.iter().filter(|(_, p)| filter(p)).map(|(id, _)| *id).collect();
        ids.into_iter().filter_map(|id| pending.remove(&id)).collect()
    }
}

/// Answers awaited from other nodes (admin queries), by request id.
#[derive(Default)]
pub struct Awaiting {
    waiting: Mutex<HashMap<u64, oneshot::Sender<Bytes>>>,
    next_id: AtomicU64,
}

impl Awaiting {
    /// A new request id and where its answer will arrive.
    pub fn register(&self) -> (u64, oneshot::Receiver<Bytes>) {
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(request_id, tx);
        (request_id, rx)
    }

    /// Stops waiting for `request_id` (not sent, or timed out).
    pub fn cancel(&self, request_id: u64) {
        self.waiting.lock().remove(&request_id);
    }

    /// The answer to `request_id` came: hand it to its waiter, if still there.
    pub fn answer(&self, request_id: u64, answer: Bytes) {
        if let Some(waiter) = self.waiting.lock().remove(&request_id) {
            let _ = waiter.send(answer);
        }
    }
}
