//! An owner's answer to a request waits for the deliveries the request caused: a publisher
//! is acknowledged only once every node its message was fanned out to has handled it (put
//! it in its connections' queues), as the peer links' receipts tell (`ringcast-cluster`'s
//! `Mark`). Without this an owner that is cut off (a partition, before anyone notices) or
//! dies right after its answer would have acknowledged a message that subscribers on other
//! nodes never get.
//!
//! While the router applies one op ([`scoped`]), every `Deliver` it sends over a link is
//! marked; a `Reply` sent after them waits in [`Receipts`] until each mark is handled, or its
//! link is gone (the node died, or was cut off and has closed its clients since: a node
//! without a majority fences itself well before a silent link is declared broken), or
//! [`RECEIPT_LIMIT`] passed.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ringcast_cluster::{Cluster, Handled, Mark, NodeId};

use crate::ops::EdgeMsg;

/// The longest an answer waits for receipts (a link that neither answers nor breaks).
pub const RECEIPT_LIMIT: Duration = Duration::from_secs(5);

thread_local! {
    /// The marks of the deliveries of the op being applied on this thread.
    static SCOPE: RefCell<Option<Vec<(NodeId, Mark)>>> = const { RefCell::new(None) };
}

/// Runs `apply` (one op of an owner) with its deliveries marked.
pub fn scoped<R>(apply: impl FnOnce() -> R) -> R {
    let outer = SCOPE.with(|scope| scope.borrow_mut().replace(Vec::new()));
    let result = apply();
    SCOPE.with(|scope| *scope.borrow_mut() = outer);
    result
}

/// A delivery of the current op went out on a link at `mark`.
pub fn record(node: &NodeId, mark: Mark) {
    SCOPE.with(|scope| {
        if let Some(marks) = scope.borrow_mut().as_mut() {
            marks.push((node.clone(), mark));
        }
    });
}

/// The marks an answer of the current op must wait for (`None`: none).
pub fn pending() -> Option<Vec<(NodeId, Mark)>> {
    SCOPE.with(|scope| scope.borrow().as_ref().filter(|marks| !marks.is_empty()).cloned())
}

struct Waiting {
    marks: Vec<(NodeId, Mark)>,
    node: NodeId,
    msg: EdgeMsg,
    since: Instant,
}

impl Waiting {
    fn conn(&self) -> Option<crate::ids::ConnId> {
        match &self.msg {
            EdgeMsg::Reply { conn_id, .. } => Some(*conn_id),
            _ => None,
        }
    }
}

/// Answers waiting for receipts.
#[derive(Default)]
pub struct Receipts {
    waiting: Mutex<Vec<Waiting>>,
}

impl Receipts {
    pub fn defer(&self, marks: Vec<(NodeId, Mark)>, node: NodeId, msg: EdgeMsg) {
        self.waiting.lock().push(Waiting { marks, node, msg, since: Instant::now() });
    }

    /// Sends with `send` the answers whose deliveries are all handled (or can no longer
    /// be), in the order they came. Under the lock: two threads releasing at once would
    /// otherwise reorder one connection's answers.
    pub fn release(&self, cluster: &Cluster, mut send: impl FnMut(&NodeId, EdgeMsg)) {
        let mut waiting = self.waiting.lock();
        if waiting.is_empty() {
            return;
        }
        let now = Instant::now();
        let receipts = cluster.receipts();
        let mut kept: Vec<Waiting> = Vec::with_capacity(waiting.len());
        for entry in waiting.drain(..) {
            // One connection's answers leave in the order they came, behind a waiting one (an
            // earlier answer may wait for another node than a later one).
            let behind = kept.iter().any(|earlier| earlier.node == entry.node && earlier.conn() == entry.conn());
            let handled =
                !behind && entry.marks.iter().all(|(node, mark)| receipts.handled(node, *mark) != Handled::NotYet);
            if handled || now.duration_since(entry.since) >= RECEIPT_LIMIT {
                if !handled {
                    tracing::debug!(node = %entry.node, "answer sent without every delivery's receipt");
                }
                send(&entry.node, entry.msg);
            } else {
                kept.push(entry);
            }
        }
        *waiting = kept;
    }
}
