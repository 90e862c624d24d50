//! Peer links under overload: with a tiny `--peer-queue-frames`, pipelined publishers on one
//! node flood a room owned by another. Forwards that find the queue full are answered
//! `unavailable`, publishes to a congested node are refused before they take a seq, and
//! nothing the owner sends back is dropped: every request gets an answer, and watchers on
//! the publishers' node and on a third node see every seq the room gave out, in order.
//!
//! Before: an owner's answers and deliveries that found the link queue full were dropped:
//! requests went unanswered and subscribers saw seq gaps. And the owner's refusals counted
//! towards the connection's error limit, so publishers were closed with 1008.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use serde_json::{json, Value};

const PUBLISHERS: usize = 8;
const SENDS: usize = 200;

/// Sends `SENDS` pipelined `chat.send`s, then reads every answer: the acked (id, seq) pairs
/// and the count answered `unavailable`.
async fn flood(mut client: Client, room: String, name: usize) -> (Vec<(String, u64)>, usize) {
    let mut pending = HashSet::new();
    for n in 0..SENDS {
        pending.insert(client.send_request("chat.send", json!({"room": room, "text": format!("p{name}-{n}")})).await);
    }
    let (mut acked, mut refused) = (Vec::new(), 0);
    while !pending.is_empty() {
        let frame = match client.next_event(Duration::from_secs(10)).await {
            Event::Json(frame) => frame,
            other => panic!("publisher {name}: {other:?} with {} requests unanswered", pending.len()),
        };
        let Some(op_id) = frame["op_id"].as_str() else { continue };
        if !pending.remove(op_id) {
            continue;
        }
        match frame["type"].as_str() {
            Some("ack") => {
                acked.push((frame["data"]["id"].as_str().unwrap().to_string(), frame["data"]["seq"].as_u64().unwrap()))
            }
            _ => {
                assert_eq!(frame["data"]["code"], "unavailable", "publisher {name}: {frame}");
                refused += 1;
            }
        }
    }
    (acked, refused)
}

/// Joins `room`, retrying while its owner is unreachable (a queue of 16 frames is full for a
/// moment while the cluster forms); returns the join's seq.
async fn join(client: &mut Client, room: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = client.request("room.join", json!({"room": room})).await;
        if reply["type"] == "ack" {
            return reply["data"]["seq"].as_u64().unwrap();
        }
        assert_eq!(reply["data"]["code"], "unavailable", "{reply}");
        assert!(Instant::now() < deadline, "{room} stayed unreachable");
        eprintln!("join retried: {reply}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the room's messages until `last_seq`: their seqs, in order, and their ids.
async fn watch(client: &mut Client, room: &str, last_seq: u64) -> (Vec<u64>, HashSet<String>) {
    let (mut seqs, mut ids) = (Vec::new(), HashSet::new());
    let deadline = Instant::now() + Duration::from_secs(15);
    while seqs.last().copied().unwrap_or(0) < last_seq && Instant::now() < deadline {
        let frame: Value = match client.next_event(Duration::from_secs(5)).await {
            Event::Json(frame) => frame,
            Event::Timeout => break,
            other => panic!("watcher: {other:?}"),
        };
        if frame["type"] == "chat.message" && frame["data"]["room"] == room {
            seqs.push(frame["data"]["seq"].as_u64().unwrap());
            ids.insert(frame["data"]["id"].as_str().unwrap().to_string());
        }
    }
    (seqs, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_flood_through_full_peer_queues_leaves_no_request_unanswered_and_no_seq_unseen() {
    // `--error-limit 1`: `unavailable` is the server's condition and never counts towards
    // the 1008 close (it did when the owner refused a publish to a congested node).
    let extra = ["--peer-queue-frames", "16", "--error-limit", "1", "--queue-frames", "8192"];
    let cluster = TestCluster::start_with(&["o1", "o2", "o3"], &extra).await;
    let room = cluster.room_owned_by(0, "flood");
    let mut watchers = Vec::new();
    let mut joined_at = Vec::new();
    for node in [1, 2] {
        let mut watcher = cluster.node(node).client(&format!("w{node}")).await;
        joined_at.push(join(&mut watcher, &room).await);
        watchers.push(watcher);
    }
    let mut publishers = Vec::new();
    for name in 0..PUBLISHERS {
        let mut client = cluster.node(1).client(&format!("p{name}")).await;
        join(&mut client, &room).await;
        publishers.push(tokio::spawn(flood(client, room.clone(), name)));
    }
    let (mut acked, mut refused) = (HashMap::new(), 0);
    for publisher in publishers {
        let (acks, unavailable) = publisher.await.unwrap();
        acked.extend(acks);
        refused += unavailable;
    }
    eprintln!("{} acked, {refused} answered unavailable of {}", acked.len(), PUBLISHERS * SENDS);
    assert!(refused > 0, "the flood overflowed the 16-frame queues (else this test proves nothing)");
    assert!(!acked.is_empty(), "some sends were acked");
    let last_seq = *acked.values().max().unwrap();
    for (watcher, first) in watchers.iter_mut().zip(joined_at) {
        let (seqs, ids) = watch(watcher, &room, last_seq).await;
        // Every seq the room gave out after the join, once, in order: a send refused for a
        // congested link never took one, and no delivery was dropped.
        let expected: Vec<u64> = (first + 1..=seqs.last().copied().unwrap_or(first).max(last_seq)).collect();
        assert_eq!(seqs, expected, "the watcher saw every seq in order");
        let missing: Vec<&String> = acked.keys().filter(|id| !ids.contains(*id)).collect();
        assert!(missing.is_empty(), "acked but not delivered: {missing:?}");
    }
}
