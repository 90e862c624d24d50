//! An owner's answer to a request waits for the deliveries the request caused: a publisher
//! is acknowledged only once every node its message was fanned out to has handled it (put
//! it in its connections' queues), as the peer links' receipts tell (`ringcast-cluster`'s
//! `Mark`). Without this an owner that is cut off (a partition, before anyone notices) or
//! dies right after its answer would have acknowledged a message that subscribers on other
//! nodes never get.
//!
//! While the router applies one op ([`scoped`]), every `Deliver` it sends over a link is
//! marked; a `Reply` sent after them waits in [`Receipts`] until each mark is handled. When
//! a mark can no longer be handled (its link broke or was replaced, or the delivery was never
//! queued) or [`RECEIPT_LIMIT`] passed, the ack becomes `unavailable` ("delivery not
//! confirmed"): a link that breaks may be a partition, whose far side keeps its subscribers
//! connected, and no node can tell that from a crash in time. The publisher may retry with
//! the same `client_id`. A connection's answers leave in the order they came, also those
//! that had nothing to wait for.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ringcast_cluster::{Cluster, Handled, Mark, NodeId};

use crate::frames;
use crate::metrics;
use crate::ops::EdgeMsg;
use crate::protocol::{ErrorCode, ReplyError};

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

/// A delivery of the current op went out on a link at `mark` (`Mark::NOT_SENT`: it could
/// not be queued).
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

    /// Queues `msg` behind an earlier answer to the same connection that still waits, and
    /// tells whether it did (then [`Receipts::release`] sends it in its turn).
    pub fn queue_behind(&self, node: &NodeId, msg: EdgeMsg) -> Result<(), EdgeMsg> {
        let mut waiting = self.waiting.lock();
        let conn = match &msg {
            EdgeMsg::Reply { conn_id, .. } => Some(*conn_id),
            _ => None,
        };
        if waiting.iter().any(|earlier| &earlier.node == node && earlier.conn() == conn) {
            waiting.push(Waiting { marks: Vec::new(), node: node.clone(), msg, since: Instant::now() });
            return Ok(());
        }
        Err(msg)
    }

    /// Sends with `send` the answers whose deliveries are all handled, and as `unavailable`
    /// those whose deliveries can no longer be confirmed, in the order they came. Under the
    /// lock: two threads releasing at once would otherwise reorder one connection's answers.
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
            if kept.iter().any(|earlier| earlier.node == entry.node && earlier.conn() == entry.conn()) {
                kept.push(entry);
                continue;
            }
            let mut outcome = Handled::Yes;
            for (node, mark) in &entry.marks {
                match receipts.handled(node, *mark) {
                    Handled::Yes => {}
                    Handled::NotYet => outcome = Handled::NotYet,
                    Handled::Unknown => {
                        outcome = Handled::Unknown;
                        break;
                    }
                }
            }
            if outcome == Handled::NotYet && now.duration_since(entry.since) >= RECEIPT_LIMIT {
                outcome = Handled::Unknown;
            }
            match outcome {
                Handled::Yes => send(&entry.node, entry.msg),
                Handled::NotYet => kept.push(entry),
                Handled::Unknown => {
                    tracing::debug!(node = %entry.node, "answer without every delivery's receipt: unavailable");
                    send(&entry.node, unconfirmed(entry.msg));
                }
            }
        }
        *waiting = kept;
    }
}

/// An ack whose deliveries were not all confirmed, as the `unavailable` error of its request
/// (a push without `op_id` goes as it is: it acknowledges nothing).
fn unconfirmed(msg: EdgeMsg) -> EdgeMsg {
    let EdgeMsg::Reply { conn_id, request_id, frame, is_error: false } = msg else { return msg };
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "type")]
        kind: String,
        op_id: Option<String>,
    }
    match serde_json::from_slice::<Head>(&frame) {
        Ok(Head { kind, op_id: Some(op_id) }) if kind == "ack" => {
            metrics::answer_unconfirmed();
            let error = ReplyError::new(ErrorCode::Unavailable, "delivery not confirmed");
            metrics::error_sent(error.code.as_str());
            // Not counted towards the client's error threshold: the cluster failed, not the client.
            EdgeMsg::Reply { conn_id, request_id, frame: frames::error(Some(&op_id), &error), is_error: false }
        }
        _ => EdgeMsg::Reply { conn_id, request_id, frame, is_error: false },
    }
}
