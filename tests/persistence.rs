//! Persistence with a real Redis (issue 6): what was acknowledged survives restarts of every
//! node, a SIGKILL of a room's owner and a rolling restart, and Redis going away is answered
//! `unavailable`, never with a false ack.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::cluster::*;
use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};

/// A 3-node cluster persisting to `redis`.
async fn cluster_on(redis: &RedisServer, prefix: &str) -> TestCluster {
    let ids: Vec<String> = (1..=3).map(|index| format!("{prefix}{index}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    TestCluster::start_with(&ids, &["--redis-url", &redis.url(), "--history-size", "1000"]).await
}

/// `room.join{since}`: the messages of `room` replayed before the ack (in order), and the ack.
async fn join_since(client: &mut Client, room: &str, seq: u64, epoch: &str) -> (Vec<Value>, Value) {
    let (before, ack) = client.join_since(room, seq, epoch).await;
    let replayed = before
        .into_iter()
        .filter(|frame| frame["type"] == "chat.message" && frame["data"]["room"] == room)
        .map(|frame| frame["data"].clone())
        .collect();
    (replayed, ack)
}

async fn moderator(server: &Server) -> Client {
    server.client_with(&Token::new("mod").roles(&["moderator"]).sign()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_history_versions_bans_inbox_and_idempotency_survive_a_restart_of_every_node() {
    let redis = RedisServer::start();
    let mut cluster = cluster_on(&redis, "r").await;
    let room = "persist";
    let mut alice = cluster.node(0).client("alice").await;
    let mut moderator_client = moderator(cluster.node(1)).await;
    let joined = alice.join(room).await;
    let epoch = joined["epoch"].as_str().unwrap().to_string();
    moderator_client.join(room).await;
    let first = alice.ack("chat.send", json!({"room": room, "text": "one", "client_id": "c-1"})).await;
    let edited = alice.say(room, "two").await;
    let deleted = alice.say(room, "three").await;
    let redacted = alice.say(room, "four").await;
    alice.ack("chat.edit", json!({"room": room, "id": edited["id"], "text": "two, edited"})).await;
    alice.ack("chat.react", json!({"room": room, "id": first["id"], "emoji": "👍", "add": true})).await;
    alice.ack("chat.delete", json!({"room": room, "id": deleted["id"]})).await;
    moderator_client.ack("chat.redact", json!({"room": room, "id": redacted["id"], "reason": "spam"})).await;
    moderator_client.ack("room.ban", json!({"room": room, "user_id": "eve"})).await;
    alice.ack("dm.send", json!({"to": "carol", "text": "while you were away", "client_id": "d-1"})).await;
    drop(alice);
    drop(moderator_client);

    // Every node dies at once (SIGKILL: nothing is handed over), then all come back.
    for index in 0..3 {
        cluster.nodes[index] = None;
    }
    for index in 0..3 {
        cluster.restart(index).await;
    }
    cluster.wait_settled(3).await;

    // History with its changes, from a node that is not the one the client used before.
    let mut alice = cluster.node(2).client("alice").await;
    let (replayed, ack) = join_since(&mut alice, room, 0, &epoch).await;
    assert_eq!(ack["recovered"], true, "{ack}");
    assert_eq!(ack["epoch"], epoch.as_str(), "the epoch continues: {ack}");
    assert_eq!(ack["seq"], 4, "{ack}");
    let seqs: Vec<u64> = replayed.iter().map(|message| message["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "{replayed:?}");
    assert_eq!(replayed[0]["reactions"], json!({"👍": 1}), "{}", replayed[0]);
    assert_eq!(replayed[1]["text"], "two, edited");
    assert_eq!(replayed[1]["version"], 2);
    assert_eq!(replayed[2]["deleted"], true);
    assert_eq!(replayed[2]["text"], "");
    assert_eq!(replayed[3]["redacted"], true);
    assert_eq!(replayed[3]["text"], "");
    let versions = alice.ack("chat.versions", json!({"room": room, "id": edited["id"]})).await;
    let texts: Vec<&str> =
        versions["versions"].as_array().unwrap().iter().map(|v| v["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["two", "two, edited"]);

    // The idempotency key of the first send: its first ack again, nothing stored twice.
    let retry = alice.ack("chat.send", json!({"room": room, "text": "one", "client_id": "c-1"})).await;
    assert_eq!((retry["id"].clone(), retry["seq"].clone()), (first["id"].clone(), first["seq"].clone()));
    // The seq continues without reuse.
    assert_eq!(alice.say(room, "five").await["seq"], 5);

    // The ban holds.
    let mut eve = cluster.node(1).client("eve").await;
    assert_eq!(eve.error("room.join", json!({"room": room})).await, "forbidden");
    eve.ping().await;

    // The DM waits in the inbox; its idempotency key holds too.
    let mut carol = cluster.node(0).client("carol").await;
    let dm = carol.recv_type("dm.message").await["data"].clone();
    assert_eq!((dm["text"].as_str(), dm["offline"].as_bool()), (Some("while you were away"), Some(true)), "{dm}");
    let dm_retry =
        alice.ack("dm.send", json!({"to": "carol", "text": "while you were away", "client_id": "d-1"})).await;
    assert_eq!(dm_retry["id"], dm["id"], "{dm_retry}");
    carol.expect_no_frame(Duration::from_millis(300)).await;
}

/// Sends `count` messages (each with a client id), one every `interval`: the acks by seq,
/// and how many sends were answered with an error instead.
async fn send_acked(
    client: &mut Client,
    room: &str,
    count: usize,
    interval: Duration,
) -> (BTreeMap<u64, String>, usize) {
    let mut acked = BTreeMap::new();
    let mut refused = 0;
    for index in 0..count {
        let data = json!({"room": room, "text": format!("m{index}"), "client_id": format!("k{index}")});
        let op_id = client.send_request("chat.send", data).await;
        // Requests to an owner that died are answered `unavailable` within 10 s at most.
        let reply =
            client.recv_where("the send's reply", Duration::from_secs(12), |v| v["op_id"] == op_id.as_str()).await;
        if reply["type"] == "ack" {
            let seq = reply["data"]["seq"].as_u64().unwrap();
            let id = reply["data"]["id"].as_str().unwrap().to_string();
            assert!(acked.insert(seq, id).is_none(), "seq {seq} acknowledged twice: {reply}");
        } else {
            assert_eq!(reply["data"]["code"], "unavailable", "{reply}");
            refused += 1;
        }
        tokio::time::sleep(interval).await;
    }
    (acked, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_sigkill_of_a_busy_owner_continues_seq_without_gap_or_reuse() {
    let redis = RedisServer::start();
    let mut cluster = cluster_on(&redis, "k").await;
    let room = cluster.room_owned_by(2, "busy");
    let mut sender = cluster.node(0).client("sender").await;
    let mut watcher = cluster.node(1).client("watcher").await;
    let epoch = sender.join(&room).await["epoch"].as_str().unwrap().to_string();
    watcher.join(&room).await;

    let sending = {
        let room = room.clone();
        tokio::spawn(async move { send_acked(&mut sender, &room, 200, Duration::from_millis(15)).await })
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.nodes[2] = None; // SIGKILL of the owner
    let (acked, refused) = sending.await.unwrap();
    eprintln!("{} of 200 sends acked, {refused} answered unavailable", acked.len());
    assert!(acked.len() >= 100, "the room kept serving after the failover: {} acked", acked.len());

    // A client resuming from the start gets everything stored: seq 1..=last without a gap,
    // and every acknowledged message among them (ids match).
    let mut reader = cluster.node(1).client("reader").await;
    let (replayed, ack) = join_since(&mut reader, &room, 0, &epoch).await;
    assert_eq!(ack["recovered"], true, "same epoch after the kill: {ack}");
    let stored: BTreeMap<u64, String> = replayed
        .iter()
        .map(|message| (message["seq"].as_u64().unwrap(), message["id"].as_str().unwrap().to_string()))
        .collect();
    let last = *stored.keys().last().unwrap();
    assert_eq!(stored.keys().copied().collect::<Vec<_>>(), (1..=last).collect::<Vec<_>>(), "no gap");
    let lost: Vec<_> = acked.iter().filter(|(seq, id)| stored.get(seq) != Some(id)).collect();
    eprintln!("acknowledged messages lost: {}", lost.len());
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");

    // The watcher saw messages in seq order, none twice (live delivery from an owner that
    // dies may stop short); a resume from its last seq without a gap fills what it missed.
    let mut seen = BTreeSet::new();
    let mut last_seen = 0;
    while let Event::Json(frame) = watcher.next_event(Duration::from_millis(500)).await {
        if frame["type"] == "chat.message" {
            let seq = frame["data"]["seq"].as_u64().unwrap();
            assert!(seq > last_seen, "watcher got seq {seq} after {last_seen}");
            last_seen = seq;
            seen.insert(seq);
        }
    }
    let contiguous = (1..).take_while(|seq| seen.contains(seq)).last().unwrap_or(0);
    eprintln!("watcher: {} messages live, contiguous up to {contiguous} of {last_seen}", seen.len());
    let (missed, ack) = join_since(&mut watcher, &room, contiguous, &epoch).await;
    assert_eq!(ack["recovered"], true, "{ack}");
    seen.extend(missed.iter().map(|message| message["seq"].as_u64().unwrap()));
    assert!(acked.keys().all(|seq| seen.contains(seq)), "the watcher has every acknowledged message after resuming");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rolling_restart_under_load_loses_no_acknowledged_message() {
    let redis = RedisServer::start();
    let mut cluster = cluster_on(&redis, "g").await;
    let room = "rolling";
    let mut reader = cluster.node(0).client("reader").await;
    let epoch = reader.join(room).await["epoch"].as_str().unwrap().to_string();
    drop(reader);

    // The sender retries a refused or interrupted send with the same client id, on whichever
    // node is up; a drained node is restarted before the next one drains.
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    let mut next = 0usize;
    for drained in 0..3 {
        let via = (drained + 1) % 3;
        let mut sender = cluster.node(via).client("sender").await;
        sender.join(room).await;
        let draining = {
            let server_pid = cluster.node(drained).pid();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let status = std::process::Command::new("kill").args(["-TERM", &server_pid.to_string()]).status();
                assert!(status.unwrap().success());
            })
        };
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            let client_id = format!("r{next}");
            let data = json!({"room": room, "text": format!("m{next}"), "client_id": client_id});
            let reply = sender.request("chat.send", data).await;
            if reply["type"] == "ack" {
                acked.insert(client_id, reply["data"]["seq"].as_u64().unwrap());
                next += 1;
            } else {
                assert_eq!(reply["data"]["code"], "unavailable", "{reply}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        draining.await.unwrap();
        let exited = cluster.nodes[drained].as_mut().unwrap().wait_exit(Duration::from_secs(15));
        assert!(exited.is_some_and(|status| status.success()), "node {drained} drained and exited 0");
        cluster.restart(drained).await;
        cluster.wait_settled(3).await;
    }
    let mut reader = cluster.node(2).client("reader").await;
    let (replayed, ack) = join_since(&mut reader, room, 0, &epoch).await;
    assert_eq!(ack["recovered"], true, "{ack}");
    let stored: BTreeMap<u64, String> = replayed
        .iter()
        .map(|message| (message["seq"].as_u64().unwrap(), message["text"].as_str().unwrap().to_string()))
        .collect();
    let lost: Vec<_> = acked
        .iter()
        .filter(|(client_id, seq)| stored.get(seq).map(String::as_str) != Some(&format!("m{}", &client_id[1..])))
        .collect();
    eprintln!("{} messages acknowledged over 3 drains; lost: {}", acked.len(), lost.len());
    assert!(acked.len() >= 30, "traffic went on: {} acked", acked.len());
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    let texts: BTreeSet<&String> = stored.values().collect();
    assert_eq!(texts.len(), stored.len(), "no message stored twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_redis_stopped_mid_run_answers_unavailable_and_recovers() {
    let mut redis = RedisServer::start();
    let server = Server::start_with(&["--redis-url", &redis.url()]);
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let epoch = alice.join("outage").await["epoch"].as_str().unwrap().to_string();
    bob.join("outage").await;
    assert_eq!(alice.say("outage", "before").await["seq"], 1);
    bob.recv_message("outage").await;
    assert!(eventually(Duration::from_secs(5), || async { server.get("/ready").await.status == 200 }).await);
    let metrics = server.get("/metrics").await.body;
    assert!(
        metrics.lines().any(|line| line == r#"ringcast_errors_total{code="unavailable"} 0"#),
        "no unavailable counted while the store answers"
    );

    redis.stop();
    // A send needs Redis: a clear unavailable (after the store's timeout at most), no ack.
    let reply = alice.request("chat.send", json!({"room": "outage", "text": "during"})).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["data"]["code"], "unavailable", "{reply}");
    // Live traffic that needs no store keeps flowing in the loaded room.
    alice.ack("chat.typing", json!({"room": "outage", "typing": true})).await;
    let typing = bob.recv_type("chat.typing.user").await;
    assert_eq!(typing["data"]["user_id"], "alice", "{typing}");
    // The node says so: not ready, store down.
    assert!(eventually(Duration::from_secs(5), || async { server.get("/ready").await.status == 503 }).await);
    let metrics = server.get("/metrics").await.body;
    assert!(metrics.lines().any(|line| line == "ringcast_store_up 0"), "store_up 0 in /metrics");
    // A new connection works; joining a room it must load waits for the store.
    let mut carol = server.client("carol").await;
    carol.ping().await;
    assert_eq!(carol.error("room.join", json!({"room": "elsewhere"})).await, "unavailable");

    redis.start_again();
    assert!(eventually(Duration::from_secs(10), || async { server.get("/ready").await.status == 200 }).await);
    // The room goes on: same epoch; the seq given to the refused send is not given again
    // (a gap, never a second message under one seq).
    let after = alice.say("outage", "after").await;
    assert_eq!(after["seq"], 3, "{after}");
    let message = bob
        .recv_where("the message after the outage", RECV_TIMEOUT, |frame| {
            frame["type"] == "chat.message" && frame["data"]["text"] == "after"
        })
        .await;
    assert_eq!(message["data"]["seq"], 3);
    carol.join("elsewhere").await;
    let (replayed, ack) = join_since(&mut carol, "outage", 0, &epoch).await;
    assert_eq!(ack["recovered"], true, "{ack}");
    let texts: Vec<&str> = replayed.iter().map(|message| message["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["before", "after"], "the refused send was not stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rejoins_during_a_burst_see_every_message_once_in_order() {
    // Answers wait for the writes before them: a join acked at seq N never meets N again
    // live, and its replay joins the live stream without a gap.
    let redis = RedisServer::start();
    let cluster = cluster_on(&redis, "b").await;
    let room = cluster.room_owned_by(1, "burst");
    let mut publisher = cluster.node(0).client("publisher").await;
    let mut joiner = cluster.node(2).client("joiner").await;
    // Another member on the joiner's node keeps that node subscribed while the joiner is out,
    // so deliveries of writes in flight reach the node when the joiner comes back.
    let mut keeper = cluster.node(2).client("keeper").await;
    keeper.join(&room).await;
    publisher.join(&room).await;
    let first = joiner.join(&room).await;
    let epoch = first["epoch"].as_str().unwrap().to_string();
    let mut last = first["seq"].as_u64().unwrap();

    let sending = {
        let room = room.clone();
        tokio::spawn(async move {
            for index in 0..400 {
                publisher
                    .send_json(&json!({"type": "chat.send", "data": {"room": room, "text": format!("b{index}")}}))
                    .await;
                // Bursts of 10 back to back (writes in flight), then a pause.
                if index % 10 == 9 {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
            }
            publisher
        })
    };
    let mut rejoins = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while last < 400 && Instant::now() < deadline {
        // Live for a moment: each message the next seq.
        while let Event::Json(frame) = joiner.next_event(Duration::from_millis(20)).await {
            if frame["type"] == "chat.message" {
                let seq = frame["data"]["seq"].as_u64().unwrap();
                assert_eq!(seq, last + 1, "live message after {last}: {frame}");
                last = seq;
            }
        }
        // Out and back in with `since`.
        let op_id = joiner.send_request("room.leave", json!({"room": room})).await;
        loop {
            let frame = joiner.recv_json().await;
            if frame["op_id"] == op_id.as_str() {
                break;
            }
            if frame["type"] == "chat.message" {
                let seq = frame["data"]["seq"].as_u64().unwrap();
                assert_eq!(seq, last + 1, "message before the leave ack after {last}: {frame}");
                last = seq;
            }
        }
        let (before, ack) = joiner.join_since(&room, last, &epoch).await;
        assert_eq!(ack["recovered"], true, "{ack}");
        for frame in before.iter().filter(|frame| frame["type"] == "chat.message") {
            let seq = frame["data"]["seq"].as_u64().unwrap();
            assert_eq!(seq, last + 1, "replayed message after {last}: {frame}");
            last = seq;
        }
        assert_eq!(ack["seq"].as_u64(), Some(last), "the replay reaches the ack's seq: {ack}");
        rejoins += 1;
    }
    let _publisher = sending.await.unwrap();
    eprintln!("{rejoins} rejoins during the burst, {last} messages seen in order");
    assert_eq!(last, 400, "every message seen once");
    assert!(rejoins >= 5, "rejoined during the burst: {rejoins}");
}
