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
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ringcast_cluster::{Mark, NodeId};

use crate::frames;
use crate::ids::ConnId;
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

/// Where answers queue up in order: an edge node's connection.
type Line = (NodeId, Option<ConnId>);

struct Answer {
    line: Line,
    msg: EdgeMsg,
    /// Links whose receipts have not yet reached this answer's last frame on them.
    waits: usize,
    /// A delivery can no longer be confirmed (or the time ran out): goes as `unavailable`.
    failed: bool,
}

impl Answer {
    fn settled(&self) -> bool {
        self.failed || self.waits == 0
    }
}

/// Answers waiting for receipts, indexed so that each receipt, broken link and expiry
/// touches only the answers it settles: under load thousands wait at once, and a scan of
/// all of them per receipt grows quadratically with the rate (and collapsed a 3-node
/// cluster at 50,000 publishes/s).
///
/// Invariant: the first answer of every line is unsettled (a settled one goes out at once,
/// with the settled ones queued behind it).
#[derive(Default)]
struct Waiting {
    next_id: u64,
    answers: HashMap<u64, Answer>,
    /// By link (peer, link id): the answers waiting on it, smallest frame number first. An
    /// answer already gone (settled by another link or by time) is skipped when popped.
    links: HashMap<(NodeId, u64), BinaryHeap<Reverse<(u64, u64)>>>,
    /// By connection: its queued answers in the order they came.
    lines: HashMap<Line, VecDeque<u64>>,
    /// Unsettled answers by age, for [`RECEIPT_LIMIT`].
    by_age: VecDeque<(Instant, u64)>,
}

/// Answers waiting for receipts. `handled(peer, link id)` tells how many frames `peer` has
/// handled on that link (`None`: the link is gone or replaced; see `Cluster::handled`).
/// Answers are sent under the lock: two threads releasing at
/// once would otherwise reorder one connection's answers.
#[derive(Default)]
pub struct Receipts {
    waiting: Mutex<Waiting>,
}

fn line_of(node: &NodeId, msg: &EdgeMsg) -> Line {
    match msg {
        EdgeMsg::Reply { conn_id, .. } => (node.clone(), Some(*conn_id)),
        _ => (node.clone(), None),
    }
}

impl Receipts {
    /// Sends `msg` (an answer after deliveries at `marks`) once every delivery is handled,
    /// at once when they already are and no earlier answer to its connection waits.
    pub fn defer(
        &self,
        handled: impl Fn(&NodeId, u64) -> Option<u64>,
        marks: Vec<(NodeId, Mark)>,
        node: &NodeId,
        msg: EdgeMsg,
        mut send: impl FnMut(&NodeId, EdgeMsg),
    ) {
        // The last frame per link is the one to wait for (frames on a link are handled in order).
        let mut last: Vec<(NodeId, Mark)> = Vec::with_capacity(marks.len());
        for (peer, mark) in marks {
            match last.iter_mut().find(|(p, m)| p == &peer && m.link_id == mark.link_id) {
                Some((_, m)) => m.seq = m.seq.max(mark.seq),
                None => last.push((peer, mark)),
            }
        }
        let mut waiting = self.waiting.lock();
        let id = waiting.next_id;
        waiting.next_id += 1;
        let mut answer = Answer { line: line_of(node, &msg), msg, waits: 0, failed: false };
        for (peer, mark) in last {
            if mark == Mark::NOT_SENT {
                answer.failed = true;
                break;
            }
            match handled(&peer, mark.link_id) {
                None => {
                    answer.failed = true;
                    break;
                }
                Some(handled) if handled >= mark.seq => {}
                Some(_) => {
                    answer.waits += 1;
                    waiting.links.entry((peer, mark.link_id)).or_default().push(Reverse((mark.seq, id)));
                }
            }
        }
        if answer.settled() && !waiting.lines.contains_key(&answer.line) {
            return send_answer(&mut send, answer);
        }
        if !answer.settled() {
            waiting.by_age.push_back((Instant::now(), id));
        }
        waiting.lines.entry(answer.line.clone()).or_default().push_back(id);
        waiting.answers.insert(id, answer);
    }

    /// Queues `msg` behind an earlier answer to the same connection that still waits, and
    /// tells whether it did (then it goes out in its turn).
    pub fn queue_behind(&self, node: &NodeId, msg: EdgeMsg) -> Result<(), EdgeMsg> {
        let line = line_of(node, &msg);
        let mut waiting = self.waiting.lock();
        if !waiting.lines.contains_key(&line) {
            return Err(msg);
        }
        let id = waiting.next_id;
        waiting.next_id += 1;
        waiting.lines.entry(line.clone()).or_default().push_back(id);
        waiting.answers.insert(id, Answer { line, msg, waits: 0, failed: false });
        Ok(())
    }

    /// `peer` sent a receipt, or a link to it broke: the answers this settles go out (those
    /// whose deliveries can no longer be confirmed as `unavailable`), in their lines' order.
    pub fn on_peer(
        &self,
        handled: impl Fn(&NodeId, u64) -> Option<u64>,
        peer: &NodeId,
        mut send: impl FnMut(&NodeId, EdgeMsg),
    ) {
        let mut waiting = self.waiting.lock();
        let Waiting { answers, links, .. } = &mut *waiting;
        let mut settled = Vec::new();
        links.retain(|(node, link_id), heap| {
            if node != peer {
                return true;
            }
            let handled = handled(node, *link_id);
            while let Some(&Reverse((seq, id))) = heap.peek() {
                if handled.is_some_and(|handled| handled < seq) {
                    break;
                }
                heap.pop();
                let Some(answer) = answers.get_mut(&id) else { continue };
                match handled {
                    Some(_) => answer.waits -= 1,
                    None => answer.failed = true,
                }
                if answer.settled() {
                    settled.push(id);
                }
            }
            !heap.is_empty()
        });
        for id in settled {
            waiting.flush(id, &mut send);
        }
    }

    /// Answers that waited [`RECEIPT_LIMIT`] for a receipt go out as `unavailable`.
    pub fn expire(&self, now: Instant, mut send: impl FnMut(&NodeId, EdgeMsg)) {
        let mut waiting = self.waiting.lock();
        while let Some(&(since, id)) = waiting.by_age.front() {
            if now.duration_since(since) < RECEIPT_LIMIT {
                break;
            }
            waiting.by_age.pop_front();
            if let Some(answer) = waiting.answers.get_mut(&id) {
                if !answer.settled() {
                    answer.failed = true;
                    waiting.flush(id, &mut send);
                }
            }
        }
    }
}

impl Waiting {
    /// Answer `id` just settled: if it heads its line, it and the settled answers behind it
    /// go out.
    fn flush(&mut self, id: u64, send: &mut impl FnMut(&NodeId, EdgeMsg)) {
        let Some(line) = self.answers.get(&id).map(|answer| answer.line.clone()) else { return };
        let Some(queue) = self.lines.get_mut(&line) else { return };
        while let Some(&front) = queue.front() {
            if !self.answers.get(&front).is_some_and(Answer::settled) {
                break;
            }
            queue.pop_front();
            if let Some(answer) = self.answers.remove(&front) {
                send_answer(send, answer);
            }
        }
        if queue.is_empty() {
            self.lines.remove(&line);
        }
    }
}

fn send_answer(send: &mut impl FnMut(&NodeId, EdgeMsg), answer: Answer) {
    let (node, _) = &answer.line;
    if answer.failed {
        tracing::debug!(node = %node, "answer without every delivery's receipt: unavailable");
        send(node, unconfirmed(answer.msg));
    } else {
        send(node, answer.msg);
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell as Cell;
    use std::collections::HashMap;

    use bytes::Bytes;

    use super::*;

    /// Peers' receipts: frames handled per (peer, link id); a missing link is gone.
    #[derive(Default)]
    struct Links(Cell<HashMap<(NodeId, u64), u64>>);

    impl Links {
        fn set(&self, peer: &NodeId, link: u64, handled: u64) {
            self.0.borrow_mut().insert((peer.clone(), link), handled);
        }
        fn drop_link(&self, peer: &NodeId, link: u64) {
            self.0.borrow_mut().remove(&(peer.clone(), link));
        }
        fn handled(&self) -> impl Fn(&NodeId, u64) -> Option<u64> + '_ {
            |peer, link| self.0.borrow().get(&(peer.clone(), link)).copied()
        }
    }

    fn ack(conn_id: ConnId, op: &str) -> EdgeMsg {
        let frame = Bytes::from(format!(r#"{{"type":"ack","op_id":"{op}","data":{{}}}}"#));
        EdgeMsg::Reply { conn_id, request_id: 0, frame, is_error: false }
    }

    /// What went out, as (conn, type, op_id).
    fn sent(out: &[(NodeId, EdgeMsg)]) -> Vec<(ConnId, String, String)> {
        out.iter()
            .map(|(_, msg)| {
                let EdgeMsg::Reply { conn_id, frame, .. } = msg else { panic!("not a reply") };
                let value: serde_json::Value = serde_json::from_slice(frame).unwrap();
                (*conn_id, value["type"].as_str().unwrap().to_string(), value["op_id"].as_str().unwrap().to_string())
            })
            .collect()
    }

    fn mark(link_id: u64, seq: u64) -> Mark {
        Mark { link_id, seq }
    }

    #[test]
    fn an_answer_waits_for_the_receipt_of_its_last_frame_on_each_link() {
        let (edge, b, c) = (NodeId::new("a"), NodeId::new("b"), NodeId::new("c"));
        let links = Links::default();
        links.set(&b, 1, 4);
        links.set(&c, 2, 0);
        let receipts = Receipts::default();
        let mut out = Vec::new();
        let marks = vec![(b.clone(), mark(1, 5)), (b.clone(), mark(1, 6)), (c.clone(), mark(2, 1))];
        receipts.defer(links.handled(), marks, &edge, ack(7, "x"), |n, m| out.push((n.clone(), m)));
        assert!(out.is_empty());
        links.set(&b, 1, 5);
        receipts.on_peer(links.handled(), &b, |n, m| out.push((n.clone(), m)));
        assert!(out.is_empty(), "frame 6 on b's link is not handled yet");
        links.set(&b, 1, 6);
        receipts.on_peer(links.handled(), &b, |n, m| out.push((n.clone(), m)));
        assert!(out.is_empty(), "c has not handled its frame");
        links.set(&c, 2, 1);
        receipts.on_peer(links.handled(), &c, |n, m| out.push((n.clone(), m)));
        assert_eq!(sent(&out), vec![(7, "ack".into(), "x".into())]);
        assert_eq!(out[0].0, edge);
    }

    #[test]
    fn an_answer_already_handled_goes_at_once() {
        let (edge, b) = (NodeId::new("a"), NodeId::new("b"));
        let links = Links::default();
        links.set(&b, 1, 9);
        let receipts = Receipts::default();
        let mut out = Vec::new();
        receipts
            .defer(links.handled(), vec![(b.clone(), mark(1, 9))], &edge, ack(1, "x"), |n, m| out.push((n.clone(), m)));
        assert_eq!(sent(&out), vec![(1, "ack".into(), "x".into())]);
        assert!(receipts.waiting.lock().answers.is_empty());
    }

    #[test]
    fn a_connections_answers_leave_in_order_and_others_do_not_wait() {
        let (edge, b) = (NodeId::new("a"), NodeId::new("b"));
        let links = Links::default();
        links.set(&b, 1, 0);
        let receipts = Receipts::default();
        let mut out = Vec::new();
        let mut push = |n: &NodeId, m| out.push((n.clone(), m));
        receipts.defer(links.handled(), vec![(b.clone(), mark(1, 1))], &edge, ack(1, "first"), &mut push);
        // Nothing to wait for, but behind "first".
        let second = receipts.queue_behind(&edge, ack(1, "second"));
        assert!(second.is_ok());
        // Waits for a frame that is handled before "first"'s: still behind it.
        links.set(&b, 1, 0);
        receipts.defer(links.handled(), vec![(b.clone(), mark(1, 1))], &edge, ack(1, "third"), &mut push);
        // Another connection, and the same connection number on another edge node: not held.
        assert!(receipts.queue_behind(&edge, ack(2, "other")).is_err());
        assert!(receipts.queue_behind(&NodeId::new("z"), ack(1, "elsewhere")).is_err());
        links.set(&b, 1, 1);
        receipts.on_peer(links.handled(), &b, &mut push);
        assert_eq!(
            sent(&out),
            vec![
                (1, "ack".into(), "first".into()),
                (1, "ack".into(), "second".into()),
                (1, "ack".into(), "third".into())
            ]
        );
        let waiting = receipts.waiting.lock();
        assert!(waiting.answers.is_empty() && waiting.lines.is_empty() && waiting.links.is_empty());
    }

    #[test]
    fn a_broken_or_replaced_link_turns_the_ack_into_unavailable_and_releases_the_line() {
        let (edge, b, c) = (NodeId::new("a"), NodeId::new("b"), NodeId::new("c"));
        let links = Links::default();
        links.set(&b, 1, 0);
        links.set(&c, 3, 0);
        let receipts = Receipts::default();
        let out = Cell::new(Vec::new());
        let push = |n: &NodeId, m| out.borrow_mut().push((n.clone(), m));
        let marks = vec![(b.clone(), mark(1, 1)), (c.clone(), mark(3, 1))];
        receipts.defer(links.handled(), marks, &edge, ack(1, "lost"), push);
        assert!(receipts.queue_behind(&edge, ack(1, "after")).is_ok());
        // b's link is replaced by link 2: what link 1 carried is never known.
        links.drop_link(&b, 1);
        links.set(&b, 2, 0);
        receipts.on_peer(links.handled(), &b, push);
        let got = sent(&out.borrow());
        assert_eq!(got[0], (1, "error".into(), "lost".into()));
        assert_eq!(got[1], (1, "ack".into(), "after".into()));
        let error: serde_json::Value = match &out.borrow()[0].1 {
            EdgeMsg::Reply { frame, .. } => serde_json::from_slice(frame).unwrap(),
            _ => unreachable!(),
        };
        assert_eq!(error["data"]["code"], "unavailable");
        assert_eq!(error["data"]["message"], "delivery not confirmed");
        // c's late receipt finds the answer gone: nothing more goes out.
        links.set(&c, 3, 1);
        receipts.on_peer(links.handled(), &c, push);
        assert_eq!(out.borrow().len(), 2);
        assert!(receipts.waiting.lock().links.is_empty());
    }

    #[test]
    fn a_delivery_never_sent_or_on_a_gone_link_is_unavailable_at_once() {
        let (edge, b) = (NodeId::new("a"), NodeId::new("b"));
        let links = Links::default();
        let receipts = Receipts::default();
        let mut out = Vec::new();
        receipts.defer(links.handled(), vec![(b.clone(), Mark::NOT_SENT)], &edge, ack(1, "x"), |n, m| {
            out.push((n.clone(), m))
        });
        receipts
            .defer(links.handled(), vec![(b.clone(), mark(4, 1))], &edge, ack(2, "y"), |n, m| out.push((n.clone(), m)));
        assert_eq!(sent(&out), vec![(1, "error".into(), "x".into()), (2, "error".into(), "y".into())]);
    }

    #[test]
    fn an_answer_without_a_receipt_in_time_is_unavailable() {
        let (edge, b) = (NodeId::new("a"), NodeId::new("b"));
        let links = Links::default();
        links.set(&b, 1, 0);
        let receipts = Receipts::default();
        let mut out = Vec::new();
        receipts.defer(links.handled(), vec![(b.clone(), mark(1, 1))], &edge, ack(1, "slow"), |n, m| {
            out.push((n.clone(), m))
        });
        let start = Instant::now();
        receipts.expire(start, |n, m| out.push((n.clone(), m)));
        assert!(out.is_empty(), "not yet expired");
        receipts.expire(start + RECEIPT_LIMIT + Duration::from_millis(1), |n, m| out.push((n.clone(), m)));
        assert_eq!(sent(&out), vec![(1, "error".into(), "slow".into())]);
        // The receipt coming after changes nothing.
        links.set(&b, 1, 1);
        receipts.on_peer(links.handled(), &b, |n, m| out.push((n.clone(), m)));
        assert_eq!(out.len(), 1);
    }
}
