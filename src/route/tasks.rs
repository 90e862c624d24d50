//! The router's background work: follow-up ops of owners, the durable store's loads and
//! answers, and the sweep of requests that waited too long.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

use super::pending::PENDING_TIMEOUT;
use super::Router;
use crate::ops::OwnerOp;
use crate::room::RoomKey;

/// Ops owners asked this node to route ([`crate::ops::EdgeMsg::Route`]), taken by
/// [`Router::run_deferred`].
///
/// Unbounded on purpose: the sender is an owner holding a shard lock, which must never wait;
/// every op queued is the follow-up of one client request (a DM's copy for the sender's other
/// connections), which the edge's per-connection rate limit already bounds, and the task
/// drains it without waiting on anything but the router.
pub(super) struct Deferred {
    tx: mpsc::UnboundedSender<OwnerOp>,
    rx: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<OwnerOp>>>,
}

impl Deferred {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Deferred { tx, rx: parking_lot::Mutex::new(Some(rx)) }
    }

    pub fn push(&self, op: OwnerOp) {
        let _ = self.tx.send(op);
    }
}

/// What a durable store feeds back: rooms the owner asked to load and the store's answers to
/// finished jobs. Taken by [`Router::run_store`].
pub struct StoreFeed {
    pub loads: mpsc::UnboundedReceiver<RoomKey>,
    pub completions: crate::store::redis_store::Completions,
}

impl Router {
    /// Routes the ops owners asked this node to route, until the router goes away.
    pub async fn run_deferred(self: Arc<Self>) {
        let Some(mut deferred_rx) = self.deferred.rx.lock().take() else { return };
        let weak = Arc::downgrade(&self);
        drop(self);
        while let Some(op) = deferred_rx.recv().await {
            let Some(router) = weak.upgrade() else { return };
            if let Err(err) = router.route(op) {
                tracing::debug!(error = %err.message, "deferred op not routed");
            }
        }
    }

    /// Serves a durable store: loads rooms the owner asked for and answers the jobs the
    /// store finished, until the router goes away.
    pub async fn run_store(self: Arc<Self>, feed: StoreFeed) {
        let StoreFeed { mut loads, mut completions } = feed;
        let weak = Arc::downgrade(&self);
        drop(self);
        let loader = {
            let weak = weak.clone();
            async move {
                while let Some(key) = loads.recv().await {
                    let Some(router) = weak.upgrade() else { return };
                    let load = router.owner.store().load(&key);
                    drop(router);
                    let weak = weak.clone();
                    tokio::spawn(async move {
                        let result = load.await;
                        if let Some(router) = weak.upgrade() {
                            super::receipts::scoped(|| {
                                router.owner.loaded(&*router, &key, result, |key| router.owns(key))
                            });
                        }
                    });
                }
            }
        };
        let answers = async move {
            while let Some((job, ok)) = completions.recv().await {
                let Some(router) = weak.upgrade() else { return };
                super::receipts::scoped(|| router.owner.written(&*router, job, ok));
            }
        };
        tokio::join!(loader, answers);
    }

    /// Once a second: answers `unavailable` to requests and presence queries that waited
    /// longer than the timeout, and sends owners' answers whose receipts ran out of time,
    /// until the router goes away.
    pub async fn run_sweep(router: Weak<Router>) {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        loop {
            interval.tick().await;
            let Some(router) = router.upgrade() else { return };
            router.fail_requests(|pending| pending.sent_at.elapsed() > PENDING_TIMEOUT, "owner did not answer");
            router.expire_queries();
            // Answers whose receipts ran out of time (see `receipts.rs`).
            router.expire_answers();
        }
    }
}
