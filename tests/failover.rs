//! The owner of a room dies under traffic (issue 12's defect): client X on node 2 keeps
//! sending, client Y on node 3 watches, the rooms' owner (node 1) is SIGKILLed. Every
//! message acknowledged to X must reach Y, once, in order: the new owner may serve the
//! rooms only once Y's node resubscribed there. Without a durable store the rooms restart
//! under a new epoch, and Y (like X) must get `room.reset` before the first message of the
//! new epoch; over Redis the rooms go on (same epoch, seqs continue) and nobody is reset.
//!
//! Before the fix, the new owner's first acknowledged message was lost to Y in most runs.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use serde_json::{json, Value};

/// What a connection saw of one room, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    /// A message (Y) or the ack of one (X): its id and seq.
    Message(String, u64),
    /// `room.reset`: the new epoch and its seq.
    Reset(String, u64),
}

/// What X learnt from its sends, per room: acks and resets in order, the time of each
/// ack, the count of `unavailable` answers, and the texts whose first try was answered
/// `unavailable` (their outcome was unknown until a retry was acked).
#[derive(Default)]
struct Sent {
    seen: HashMap<String, Vec<Seen>>,
    acked_at: Vec<Instant>,
    refused: usize,
    unsure: HashMap<String, Vec<String>>,
}

/// Sends `rounds` rounds of one `chat.send` per room, `interval` apart, the way a client
/// should: every send carries a `client_id`, and a send answered `unavailable` is retried
/// with the same `client_id` until it is acked (the retry gets the first ack if the first
/// try was stored after all).
async fn send_rounds(client: &mut Client, rooms: &[String], rounds: usize, interval: Duration) -> Sent {
    let mut sent = Sent::default();
    for round in 0..rounds {
        for room in rooms {
            let text = format!("m{round}");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                assert!(Instant::now() < deadline, "room {room}: {text} never acked");
                let request = json!({"room": room, "text": text, "client_id": format!("{room}-{text}")});
                let op_id = client.send_request("chat.send", request).await;
                let frame = loop {
                    let frame = match client.next_event(Duration::from_secs(10)).await {
                        Event::Json(frame) => frame,
                        other => panic!("sender: {other:?}"),
                    };
                    let data = &frame["data"];
                    if frame["type"] == "room.reset" {
                        let reset = Seen::Reset(data["epoch"].as_str().unwrap().into(), data["seq"].as_u64().unwrap());
                        sent.seen.entry(data["room"].as_str().unwrap().into()).or_default().push(reset);
                    } else if frame["op_id"] == op_id.as_str() {
                        break frame;
                    }
                };
                let data = &frame["data"];
                if frame["type"] == "ack" {
                    let message = Seen::Message(data["id"].as_str().unwrap().into(), data["seq"].as_u64().unwrap());
                    sent.seen.entry(room.clone()).or_default().push(message);
                    sent.acked_at.push(Instant::now());
                    break;
                }
                assert_eq!(data["code"], "unavailable", "only unavailable while the owner is away: {frame}");
                sent.refused += 1;
                let unsure = sent.unsure.entry(room.clone()).or_default();
                if unsure.last() != Some(&text) {
                    unsure.push(text.clone());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        tokio::time::sleep(interval).await;
    }
    sent
}

/// Reads what Y gets until it has seen, in every room, the message `last` names; returns
/// what it saw per room and the text of every message by id.
async fn watch_until(
    client: &mut Client,
    last: &HashMap<String, String>,
) -> (HashMap<String, Vec<Seen>>, HashMap<String, String>) {
    let mut seen: HashMap<String, Vec<Seen>> = HashMap::new();
    let mut texts = HashMap::new();
    let mut missing: Vec<&String> = last.keys().collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !missing.is_empty() && Instant::now() < deadline {
        let frame = match client.next_event(Duration::from_secs(3)).await {
            Event::Json(frame) => frame,
            Event::Timeout => break,
            other => panic!("watcher: {other:?}"),
        };
        let data = &frame["data"];
        let Some(room) = data["room"].as_str() else { continue };
        let entry = match frame["type"].as_str() {
            Some("chat.message") => {
                let id = data["id"].as_str().unwrap();
                missing.retain(|room_name| last.get(*room_name).map(String::as_str) != Some(id));
                texts.insert(id.to_string(), data["text"].as_str().unwrap().to_string());
                Seen::Message(id.into(), data["seq"].as_u64().unwrap())
            }
            Some("room.reset") => Seen::Reset(data["epoch"].as_str().unwrap().into(), data["seq"].as_u64().unwrap()),
            _ => continue,
        };
        seen.entry(room.into()).or_default().push(entry);
    }
    (seen, texts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_every_message_acknowledged_after_the_owner_dies_reaches_a_watcher_on_a_third_node() {
    let mut cluster = TestCluster::start(&["f1", "f2", "f3"]).await;
    let rooms: Vec<String> = (0..4).map(|k| cluster.room_owned_by(0, &format!("failover{k}"))).collect();
    let mut sender = cluster.node(1).client("x").await;
    let mut watcher = cluster.node(2).client("y").await;
    let mut epochs = HashMap::new();
    for room in &rooms {
        let joined = sender.join(room).await;
        epochs.insert(room.clone(), joined["epoch"].as_str().unwrap().to_string());
        watcher.join(room).await;
    }

    let sending = {
        let rooms = rooms.clone();
        tokio::spawn(async move {
            let seen = send_rounds(&mut sender, &rooms, 45, Duration::from_millis(100)).await;
            (sender, seen)
        })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    let killed_at = Instant::now();
    cluster.nodes[0] = None; // SIGKILL of the rooms' owner
    let (_sender, outcome) = sending.await.unwrap();
    let Sent { seen: acked, acked_at, refused, unsure } = outcome;
    let first_ack_after = acked_at.iter().filter(|at| **at > killed_at).map(|at| at.duration_since(killed_at)).min();
    eprintln!("first ack {first_ack_after:?} after SIGKILL of the owner; {refused} sends answered unavailable");

    let last: HashMap<String, String> = acked
        .iter()
        .filter_map(|(room, seen)| {
            seen.iter().rev().find_map(|entry| match entry {
                Seen::Message(id, _) => Some((room.clone(), id.clone())),
                Seen::Reset(..) => None,
            })
        })
        .collect();
    assert_eq!(last.len(), rooms.len(), "every room answered again after the kill: {acked:?}");
    let (watched, texts) = watch_until(&mut watcher, &last).await;

    for room in &rooms {
        let sent = &acked[room];
        let all = watched.get(room).cloned().unwrap_or_default();
        // A send whose first try was answered `unavailable` may have been stored anyway (the
        // owner died between storing and acking). Over Redis the retry gets that first ack;
        // in memory mode the old epoch's copy is gone with its owner and the retry is stored
        // again in the new epoch. So Y may see, before the reset, a message X never had
        // acked, and only one whose outcome X was told was unknown.
        let acked_ids: Vec<&String> =
            sent.iter().filter_map(|entry| if let Seen::Message(id, _) = entry { Some(id) } else { None }).collect();
        let reset_at = all.iter().position(|entry| matches!(entry, Seen::Reset(..)));
        let mut got = Vec::new();
        for (at, entry) in all.iter().enumerate() {
            match entry {
                Seen::Message(id, _) if !acked_ids.contains(&id) => {
                    let text = &texts[id];
                    assert!(
                        !over_redis(),
                        "room {room}: over Redis a retry gets the first ack; {text} was seen unacked"
                    );
                    assert!(
                        unsure.get(room).is_some_and(|texts| texts.contains(text)),
                        "room {room}: Y saw {text}, never acked nor answered unavailable: {all:?}"
                    );
                    assert!(
                        reset_at.is_some_and(|reset_at| at < reset_at),
                        "room {room}: unacked {text} after the reset"
                    );
                }
                _ => got.push(entry.clone()),
            }
        }
        // Y sees exactly what X was acknowledged, in the same order, resets included: none
        // lost, none twice, none reordered, no restart unannounced.
        assert_eq!(&got, sent, "room {room}: what the watcher on the third node saw differs from what was acked");
        let resets: Vec<&Seen> = sent.iter().filter(|entry| matches!(entry, Seen::Reset(..))).collect();
        if over_redis() {
            assert!(resets.is_empty(), "room {room}: over Redis the room goes on, no reset: {sent:?}");
        } else {
            // The room restarted under a new epoch, announced once, before its first message.
            assert_eq!(resets.len(), 1, "room {room}: one room.reset: {sent:?}");
            let Seen::Reset(epoch, _) = resets[0] else { unreachable!() };
            assert_ne!(epoch, &epochs[room], "room {room}: the reset names a new epoch");
        }
        // Seqs climb by one within an epoch, and from the reset's seq after it.
        let mut expected = None;
        for entry in &all {
            match entry {
                Seen::Reset(_, seq) => expected = Some(seq + 1),
                Seen::Message(id, seq) => {
                    if let Some(expected) = expected {
                        assert_eq!(*seq, expected, "room {room}: message {id} out of sequence: {all:?}");
                    }
                    expected = Some(seq + 1);
                }
            }
        }
        eprintln!(
            "room {room}: {} acked messages, all delivered in order, {} reset",
            sent.len() - resets.len(),
            resets.len()
        );
    }
}

/// The client side of the same guarantee: a reset room answers a `since` of its old epoch
/// with `recovered:false` (memory mode), or replays what was missed (over Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_client_rejoining_after_the_owner_died_learns_whether_it_missed_messages() {
    let mut cluster = TestCluster::start(&["g1", "g2", "g3"]).await;
    let room = cluster.room_owned_by(0, "rejoin");
    let mut sender = cluster.node(1).client("x").await;
    let joined = sender.join(&room).await;
    let epoch = joined["epoch"].as_str().unwrap().to_string();
    sender.say(&room, "before").await;
    cluster.nodes[0] = None; // SIGKILL
    let mut after = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while after.is_none() && Instant::now() < deadline {
        let reply = sender.request("chat.send", json!({"room": room, "text": "after"})).await;
        if reply["type"] == "ack" {
            after = Some(reply["data"].clone());
        } else {
            assert_eq!(reply["data"]["code"], "unavailable", "{reply}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let after = after.expect("the room answered again");
    let mut late = cluster.node(2).client("late").await;
    let (replayed, ack) = late.join_since(&room, 1, &epoch).await;
    if over_redis() {
        assert_eq!(ack["recovered"], true, "{ack}");
        assert_eq!(ack["epoch"], epoch.as_str());
        let ids: Vec<&Value> = replayed.iter().map(|frame| &frame["data"]["id"]).collect();
        assert_eq!(ids, [&after["id"]], "the message sent after the failover is replayed");
    } else {
        assert_eq!(ack["recovered"], false, "{ack}");
        assert_ne!(ack["epoch"], epoch.as_str(), "a new epoch");
        assert!(replayed.is_empty(), "{replayed:?}");
    }
}

/// A publisher is acknowledged only once the nodes its message was fanned out to have
/// handled it: with the watcher's node frozen (SIGSTOP, shorter than the failure timeout),
/// the ack waits; once it runs again, the watcher gets the message and the publisher its ack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_an_ack_waits_until_the_subscribers_node_has_the_message() {
    let cluster = TestCluster::start(&["h1", "h2", "h3"]).await;
    let (room, mut sender, mut watcher) = sender_and_watcher(&cluster, 1, "receipt").await;
    let frozen = cluster.node(2).pid();
    signal(frozen, "-STOP");
    let op_id = sender.send_request("chat.send", json!({"room": room, "text": "while frozen"})).await;
    let early = sender.next_event(Duration::from_millis(600)).await;
    signal(frozen, "-CONT");
    assert!(matches!(early, Event::Timeout), "no ack while the watcher's node cannot have the message: {early:?}");
    let ack = sender.reply(&op_id).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let message = watcher.recv_message(&room).await;
    assert_eq!(message["id"], ack["data"]["id"]);
}

/// A subscriber's node that stays silent past the link timeout (frozen, or behind a
/// partition) never confirms the delivery: the publisher is answered `unavailable`, not
/// acknowledged, and may send again with the same `client_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_an_ack_whose_delivery_cannot_be_confirmed_is_unavailable() {
    // The link timeout (3 s) must end the wait, not the failure detector: with the default
    // 1.5 s, a loaded machine can be slow enough to publish after the frozen node was declared
    // dead, when its subscribers are rightly no longer waited for.
    let cluster = TestCluster::start_with(&["u1", "u2", "u3"], &["--failure-timeout-ms", "20000"]).await;
    let (room, mut sender, _watcher) = sender_and_watcher(&cluster, 0, "unconfirmed").await;
    let frozen = cluster.node(2).pid();
    signal(frozen, "-STOP");
    let payload = json!({"room": room, "text": "while frozen", "client_id": "c-1"});
    let op_id = sender.send_request("chat.send", payload.clone()).await;
    let answer = sender.reply(&op_id).await;
    signal(frozen, "-CONT");
    assert_eq!(answer["type"], "error", "no ack for a delivery that was never confirmed: {answer}");
    assert_eq!(answer["data"]["code"], "unavailable", "{answer}");
    assert_eq!(answer["data"]["message"], "delivery not confirmed", "{answer}");

    // The same client_id once the cluster is whole again: one message, acknowledged.
    cluster.wait_settled(3).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let retried = loop {
        let op_id = sender.send_request("chat.send", payload.clone()).await;
        let reply = sender.reply(&op_id).await;
        if reply["type"] == "ack" || Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(retried["type"], "ack", "{retried}");
    let history = sender.request("room.history", json!({"room": room})).await;
    let texts: Vec<&Value> =
        history["data"]["messages"].as_array().unwrap().iter().filter(|m| m["text"] == "while frozen").collect();
    assert_eq!(texts.len(), 1, "the retry applied once: {history}");
    assert_eq!(texts[0]["id"], retried["data"]["id"]);
}

/// A room owned by node `owner`, a sender on node 0 and a watcher on node 2 in it, and the
/// links warm (the first receipts have arrived).
async fn sender_and_watcher(cluster: &TestCluster, owner: usize, prefix: &str) -> (String, Client, Client) {
    let room = cluster.room_owned_by(owner, prefix);
    let mut sender = cluster.node(0).client("x").await;
    let mut watcher = cluster.node(2).client("y").await;
    sender.join(&room).await;
    watcher.join(&room).await;
    sender.say(&room, "warm").await;
    assert_eq!(watcher.recv_message(&room).await["text"], "warm");
    (room, sender, watcher)
}

/// An owner that stood still (SIGSTOP) past the failure timeout was declared dead and its
/// rooms served elsewhere, but its links outlived the pause: when it runs again it must not
/// answer as the owner (its acks would come from a second copy of the room), and its clients
/// are sent elsewhere to resume. The watcher on a third node sees one unbroken stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_an_owner_that_stood_still_does_not_answer_as_owner_when_it_runs_again() {
    let cluster = TestCluster::start(&["w1", "w2", "w3"]).await;
    let room = cluster.room_owned_by(1, "stood-still");
    let mut sender = cluster.node(0).client("x").await;
    let mut stalled_side = cluster.node(1).client("s").await;
    let mut watcher = cluster.node(2).client("y").await;
    for client in [&mut sender, &mut stalled_side, &mut watcher] {
        client.join(&room).await;
    }
    sender.say(&room, "warm").await;
    assert_eq!(watcher.recv_message(&room).await["text"], "warm");
    assert_eq!(stalled_side.recv_message(&room).await["text"], "warm");

    let paused = cluster.node(1).pid();
    signal(paused, "-STOP");
    // Past the failure timeout (1.5 s), short of the links' read timeout (3 s).
    tokio::time::sleep(Duration::from_millis(2000)).await;
    signal(paused, "-CONT");
    // A request that was waiting in the paused owner's socket, and one sent right after.
    let op_id = stalled_side
        .send_request("chat.send", json!({"room": room, "text": "from the stalled node", "client_id": "s-1"}))
        .await;
    let (frames, code) = stalled_side.frames_until_close(Duration::from_secs(10)).await;
    assert!(
        !frames.iter().any(|frame| frame["op_id"] == op_id.as_str() && frame["type"] == "ack"),
        "the stalled node answered as the owner: {frames:?}"
    );
    assert_eq!(code, Some(1012), "{frames:?}");
    let reconnect = frames.iter().find(|frame| frame["type"] == "reconnect").expect("a reconnect frame");
    assert_eq!(reconnect["data"]["reason"], "stalled", "{reconnect}");

    // The room goes on at its new owner; every acknowledged message reaches the watcher, in
    // order (a restarted room announces itself with room.reset first).
    let mut acked = Vec::new();
    for i in 0..5 {
        let text = format!("after {i}");
        let payload = json!({"room": room, "text": text, "client_id": format!("a-{i}")});
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let reply = sender.request("chat.send", payload.clone()).await;
            if reply["type"] == "ack" {
                acked.push(text);
                break;
            }
            assert_eq!(reply["data"]["code"], "unavailable", "{reply}");
            assert!(Instant::now() < deadline, "no ack for {text}: {reply}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let mut last: Option<(String, u64)> = None;
    let mut seen = Vec::new();
    while seen.len() < acked.len() {
        let frame = watcher
            .recv_where("a message or a reset", Duration::from_secs(10), |v| {
                (v["type"] == "chat.message" || v["type"] == "room.reset") && v["data"]["room"] == room
            })
            .await;
        let data = &frame["data"];
        let epoch = data["epoch"].as_str().map(str::to_string);
        let seq = data["seq"].as_u64().expect("seq");
        if frame["type"] == "room.reset" {
            last = Some((epoch.expect("a reset's epoch"), seq));
            continue;
        }
        if let Some((_, last_seq)) = &last {
            assert_eq!(seq, last_seq + 1, "the watcher's stream broke at {frame}");
        }
        let epoch = last.as_ref().map(|(epoch, _)| epoch.clone()).unwrap_or_default();
        last = Some((epoch, seq));
        let text = data["text"].as_str().unwrap().to_string();
        assert_ne!(text, "from the stalled node", "a message the stalled owner applied reached the watcher");
        if text != "warm" {
            seen.push(text);
        }
    }
    assert_eq!(seen, acked);
}
