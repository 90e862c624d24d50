//! Multi-process cluster tests: real `ringcast` nodes on loopback, gossip over UDP, peer
//! links over TCP, real WebSocket clients on different nodes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use serde_json::{json, Value};

async fn metric(server: &Server, name: &str) -> f64 {
    let body = server.get("/metrics").await.body;
    body.lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#'))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_clients_on_three_nodes_see_every_message_once_in_seq_order() {
    let cluster = TestCluster::start(&["a1", "a2", "a3"]).await;
    let mut clients = Vec::new();
    for index in 0..6 {
        let mut client = cluster.node(index % 3).client(&format!("u{index}")).await;
        client.join("lobby").await;
        clients.push(client);
    }
    let mut own: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); clients.len()];
    for round in 0..10 {
        for (index, client) in clients.iter_mut().enumerate() {
            let ack = client.say("lobby", &format!("m{round}-{index}")).await;
            own[index].insert(ack["seq"].as_u64().unwrap());
        }
    }
    let all: BTreeSet<u64> = own.iter().flatten().copied().collect();
    assert_eq!(all, (1..=60).collect(), "seq is 1..60 without gap or reuse");
    for (index, client) in clients.iter_mut().enumerate() {
        let mut seen = Vec::new();
        while seen.len() < 50 {
            seen.push(client.recv_message("lobby").await["seq"].as_u64().unwrap());
        }
        let extra: Vec<Value> = client.take_pending().into_iter().filter(|f| f["type"] == "chat.message").collect();
        assert!(extra.is_empty(), "client {index} got more messages: {extra:?}");
        client.expect_no_frame(QUIET).await;
        let expected: Vec<u64> = all.difference(&own[index]).copied().collect();
        assert_eq!(seen, expected, "client {index} sees every other message once, in seq order");
    }
    // The owner rendered each message once and sent it once per subscribed node.
    let owner = cluster.owner_of("lobby");
    assert!(metric(cluster.node(owner), "ringcast_frames_rendered_total").await as u64 >= 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_thousand_rooms_spread_over_three_owners_by_the_ring() {
    let cluster = TestCluster::start(&["b1", "b2", "b3"]).await;
    let mut clients = Vec::new();
    for index in 0..3 {
        clients.push(cluster.node(index).client(&format!("v{index}")).await);
    }
    for room in 0..1000 {
        clients[room % 3].join(&format!("room-{room}")).await;
    }
    let mut expected = [0usize; 3];
    for room in 0..1000 {
        expected[cluster.owner_of(&format!("room-{room}"))] += 1;
    }
    for index in 0..3 {
        let personal = (0..3).filter(|user| cluster.owner_of(&format!("user:v{user}")) == index).count();
        let owned = metric(cluster.node(index), "ringcast_rooms_owned").await as usize;
        assert_eq!(owned, expected[index] + personal, "node {index} owns what the ring says");
        let deviation = (expected[index] as f64 - 1000.0 / 3.0).abs() / (1000.0 / 3.0);
        assert!(deviation <= 0.10, "node {index} owns {} of 1000 rooms", expected[index]);
    }
    let view = cluster_view(cluster.node(0)).await;
    for member in view["members"].as_array().unwrap() {
        let share = member["share"].as_f64().unwrap();
        assert!((share - 1.0 / 3.0).abs() <= 0.1 / 3.0, "ring share {share} of {}", member["node_id"]);
    }
}

/// Sends `count` messages from `client` to `room`, one every `interval`, and returns for each
/// the reply type ("ack" or an error code) with its time.
async fn send_series(
    client: &mut Client,
    room: &str,
    count: usize,
    interval: Duration,
) -> Vec<(Instant, String, Value)> {
    let mut replies = Vec::new();
    for index in 0..count {
        let reply = client.request("chat.send", json!({"room": room, "text": format!("s{index}")})).await;
        let kind = if reply["type"] == "ack" {
            "ack".to_string()
        } else {
            reply["data"]["code"].as_str().unwrap_or("?").to_string()
        };
        replies.push((Instant::now(), kind, reply["data"].clone()));
        tokio::time::sleep(interval).await;
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_sigkill_of_the_owner_fails_over_within_three_seconds() {
    let mut cluster = TestCluster::start(&["c1", "c2", "c3"]).await;
    let room = cluster.room_owned_by(2, "busy");
    let mut sender = cluster.node(0).client("sender").await;
    let mut watcher = cluster.node(1).client("watcher").await;
    sender.join(&room).await;
    watcher.join(&room).await;

    let sending = {
        let room = room.clone();
        tokio::spawn(async move {
            let replies = send_series(&mut sender, &room, 160, Duration::from_millis(25)).await;
            (sender, replies)
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let killed_at = Instant::now();
    cluster.nodes[2] = None; // SIGKILL
    let (_sender, replies) = sending.await.unwrap();

    // Every send got an answer: an ack, or unavailable.
    assert_eq!(replies.len(), 160);
    for (_, kind, data) in &replies {
        assert!(kind == "ack" || kind == "unavailable", "unexpected reply {kind}: {data}");
    }
    // The outage ends with the first ack after the first refusal (an ack that was already on
    // its way when the owner died does not count).
    let first_refusal = replies.iter().position(|(at, kind, _)| *at > killed_at && kind != "ack");
    let first_ack_after = replies[first_refusal.unwrap_or(0)..]
        .iter()
        .filter(|(at, kind, _)| *at > killed_at && kind == "ack")
        .map(|(at, _, _)| at.duration_since(killed_at))
        .min()
        .expect("the room answered again after the kill");
    eprintln!("first ack {first_ack_after:?} after SIGKILL of the owner");
    let errors = replies.iter().filter(|(_, kind, _)| kind != "ack").count();
    eprintln!("{errors} of {} sends answered unavailable", replies.len());
    assert!(first_ack_after <= Duration::from_secs(3), "failover took {first_ack_after:?}");
    // The watcher on a surviving node keeps receiving on the new owner.
    let last_acked = replies.iter().rev().find(|(_, kind, _)| kind == "ack").unwrap().2["id"].clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut found = false;
    while !found && Instant::now() < deadline {
        found = watcher.recv_message(&room).await["id"] == last_acked;
    }
    assert!(found, "the watcher got the last acked message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_drain_under_traffic_loses_no_acknowledged_message() {
    let mut cluster = TestCluster::start(&["d1", "d2", "d3"]).await;
    let room = cluster.room_owned_by(2, "drain");
    let mut sender = cluster.node(0).client("sender").await;
    let mut watcher = cluster.node(1).client("watcher").await;
    let mut leaver = cluster.node(2).client("leaver").await;
    sender.join(&room).await;
    watcher.join(&room).await;
    let joined = leaver.join(&room).await;
    let epoch = joined["epoch"].as_str().unwrap().to_string();

    let sending = {
        let room = room.clone();
        tokio::spawn(async move {
            let replies = send_series(&mut sender, &room, 120, Duration::from_millis(20)).await;
            (sender, replies)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.node(2).terminate();

    // The client of the draining node is told to reconnect, then closed with 1012.
    let (frames, code) = leaver.frames_until_close(Duration::from_secs(10)).await;
    assert_eq!(code, Some(1012), "drain closes with 1012");
    let reconnect =
        frames.iter().find(|frame| frame["type"] == "reconnect").expect("a reconnect frame before the close");
    assert!(reconnect["data"]["after_ms"].is_u64());
    let last_seen = frames
        .iter()
        .filter(|frame| frame["type"] == "chat.message")
        .map(|frame| frame["data"]["seq"].as_u64().unwrap())
        .max()
        .unwrap_or(0);
    let status = tokio::task::spawn_blocking(move || {
        let mut server = cluster.nodes[2].take().unwrap();
        let status = server.wait_exit(Duration::from_secs(12));
        (cluster, status)
    });
    let (cluster, status) = status.await.unwrap();
    assert_eq!(status.and_then(|status| status.code()), Some(0), "the drained node exits 0");

    // It resumes on another node without losing anything.
    let mut resumed = cluster.node(0).client("leaver").await;
    let rejoin = resumed.ack("room.join", json!({"room": room, "since": {"seq": last_seen, "epoch": epoch}})).await;
    assert_eq!(rejoin["recovered"], true, "history moved with the room: {rejoin}");
    assert_eq!(rejoin["epoch"], epoch.as_str(), "same epoch after a drain");

    let (_sender, replies) = sending.await.unwrap();
    let acked: BTreeSet<u64> =
        replies.iter().filter(|(_, kind, _)| kind == "ack").map(|(_, _, data)| data["seq"].as_u64().unwrap()).collect();
    assert!(!acked.is_empty());
    for (_, kind, data) in &replies {
        assert!(kind == "ack" || kind == "unavailable", "unexpected reply {kind}: {data}");
    }
    // The watcher (on a node that stayed) saw every acknowledged message exactly once, in order.
    let mut seen = Vec::new();
    let max_acked = *acked.iter().max().unwrap();
    while seen.last().copied().unwrap_or(0) < max_acked {
        seen.push(watcher.recv_message(&room).await["seq"].as_u64().unwrap());
    }
    let seen_set: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(seen.len(), seen_set.len(), "no duplicates: {seen:?}");
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "in seq order: {seen:?}");
    let lost: Vec<u64> = acked.difference(&seen_set).copied().collect();
    assert!(lost.is_empty(), "acknowledged messages lost: {lost:?}");
    // The resumed client got the ones it missed (recovered) and the ones after.
    let mut resumed_seen = BTreeSet::new();
    while resumed_seen.iter().next_back().copied().unwrap_or(0) < max_acked {
        resumed_seen.insert(resumed.recv_message(&room).await["seq"].as_u64().unwrap());
    }
    let missing: Vec<u64> =
        acked.iter().filter(|seq| **seq > last_seen && !resumed_seen.contains(seq)).copied().collect();
    assert!(missing.is_empty(), "the resumed client misses {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_restarted_node_rejoins_with_a_higher_generation() {
    let mut cluster = TestCluster::start(&["e1", "e2", "e3"]).await;
    let generation_of = |view: &Value, id: &str| {
        view["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["node_id"] == id)
            .map(|m| m["generation"].as_u64().unwrap())
    };
    let before = generation_of(&cluster_view(cluster.node(0)).await, "e2").unwrap();
    cluster.nodes[1] = None; // SIGKILL
    let gone = eventually(Duration::from_secs(5), || async {
        cluster_view(cluster.node(0)).await["ring"].as_array().map(Vec::len) == Some(2)
    })
    .await;
    assert!(gone, "the killed node left the ring");
    cluster.restart(1).await;
    cluster.wait_settled(3).await;
    let after = generation_of(&cluster_view(cluster.node(0)).await, "e2").unwrap();
    assert!(after > before, "generation {after} > {before}");
    // Chat across the restarted node works.
    let mut on_restarted = cluster.node(1).client("r1").await;
    let mut on_other = cluster.node(2).client("r2").await;
    on_restarted.join("after-restart").await;
    on_other.join("after-restart").await;
    on_restarted.say("after-restart", "hello again").await;
    assert_eq!(on_other.recv_message("after-restart").await["text"], "hello again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_node_with_a_wrong_secret_stays_out() {
    let cluster = TestCluster::start(&["f1", "f2"]).await;
    let intruder_addr = free_cluster_addr();
    let seeds: Vec<String> = cluster.cluster_addrs.iter().map(|addr| addr.to_string()).collect();
    let intruder = Server::start_with(&[
        "--node-id",
        "intruder",
        "--cluster-listen",
        &intruder_addr.to_string(),
        "--cluster-secret",
        "not-the-right-secret",
        "--seeds",
        &seeds.join(","),
    ]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for index in 0..2 {
        let view = cluster_view(cluster.node(index)).await;
        let ids: Vec<&str> =
            view["members"].as_array().unwrap().iter().map(|m| m["node_id"].as_str().unwrap()).collect();
        assert!(!ids.contains(&"intruder"), "the intruder is not a member: {view}");
    }
    let view = cluster_view(&intruder).await;
    assert_eq!(view["members"].as_array().unwrap().len(), 1, "the intruder sees only itself: {view}");
    // A peer that knows the cluster id but not the secret is refused on the link port too.
    let mut stream = tokio::net::TcpStream::connect(cluster.cluster_addrs[0]).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(&[40, 0, 0, 0, 0x43, 0x52, 1, 1, 0, 0, 0, 0]).await.unwrap();
    stream.write_all(&[0u8; 40]).await.unwrap();
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(8), stream.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "a peer without the secret is disconnected");
    // The cluster still works.
    let mut a = cluster.node(0).client("a").await;
    let mut b = cluster.node(1).client("b").await;
    a.join("safe").await;
    b.join("safe").await;
    a.say("safe", "still here").await;
    assert_eq!(b.recv_message("safe").await["text"], "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_garbage_on_the_cluster_port_does_not_hurt() {
    use tokio::io::AsyncWriteExt;
    let cluster = TestCluster::start(&["g1", "g2"]).await;
    let target = cluster.cluster_addrs[0];
    let mut payloads: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0xff; 4096],
        // A valid length and magic, then the connection ends mid-frame.
        vec![200, 0, 0, 0, 0x43, 0x52, 1, 1],
        // A frame of a future protocol version.
        vec![24, 0, 0, 0, 0x43, 0x52, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ];
    let mut state = 0x2545f4914f6cdd1du64;
    for _ in 0..20 {
        let bytes = (0..256)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        payloads.push(bytes);
    }
    for payload in payloads {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(target).await {
            let _ = stream.write_all(&payload).await;
            let _ = stream.shutdown().await;
        }
        // And the same bytes as a gossip datagram.
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let _ = socket.send_to(&payload, target).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.wait_settled(2).await;
    let view = cluster_view(cluster.node(0)).await;
    let links: BTreeMap<String, String> = view["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["node_id"].as_str().unwrap().to_string(), m["link"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(links.get("g2").map(String::as_str), Some("up"), "{view}");
    let mut a = cluster.node(0).client("a").await;
    let mut b = cluster.node(1).client("b").await;
    a.join("calm").await;
    b.join("calm").await;
    b.say("calm", "fine").await;
    assert_eq!(a.recv_message("calm").await["text"], "fine");
}

async fn metric_labeled(server: &Server, name: &str, label: &str) -> f64 {
    let body = server.get("/metrics").await.body;
    body.lines()
        .filter(|line| line.starts_with(name) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_one_peer_frame_per_subscribed_node_and_one_render_per_message() {
    let cluster = TestCluster::start(&["h1", "h2", "h3"]).await;
    let room = cluster.room_owned_by(0, "fanout");
    let mut publisher = cluster.node(0).client("pub").await;
    publisher.join(&room).await;
    // Two subscribers on h2, one on h3: three connections on two remote nodes.
    let mut subscribers = Vec::new();
    for (index, node) in [1, 1, 2].into_iter().enumerate() {
        let mut subscriber = cluster.node(node).client(&format!("sub{index}")).await;
        subscriber.join(&room).await;
        subscribers.push(subscriber);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let owner = cluster.node(0);
    let frames_before = metric_labeled(owner, "ringcast_peer_frames_total", "direction=\"out\"").await;
    let rendered_before = metric(owner, "ringcast_frames_rendered_total").await;
    let edge_rendered_before = metric(cluster.node(1), "ringcast_frames_rendered_total").await;
    let edge_deliveries_before = metric(cluster.node(1), "ringcast_deliveries_total").await;
    const MESSAGES: usize = 200;
    for index in 0..MESSAGES {
        publisher.say(&room, &format!("f{index}")).await;
    }
    for subscriber in &mut subscribers {
        for _ in 0..MESSAGES {
            subscriber.recv_message(&room).await;
        }
    }
    let frames = metric_labeled(owner, "ringcast_peer_frames_total", "direction=\"out\"").await - frames_before;
    let rendered = metric(owner, "ringcast_frames_rendered_total").await - rendered_before;
    let edge_rendered = metric(cluster.node(1), "ringcast_frames_rendered_total").await - edge_rendered_before;
    let edge_deliveries = metric(cluster.node(1), "ringcast_deliveries_total").await - edge_deliveries_before;
    eprintln!("{MESSAGES} messages: {frames} peer frames out of the owner, {rendered} frames rendered by it, {edge_rendered} by an edge, {edge_deliveries} deliveries on that edge");
    // One frame per message per subscribed remote node (2), plus a few keepalives at most.
    assert!(frames >= (2 * MESSAGES) as f64 && frames <= (2 * MESSAGES + 8) as f64, "peer frames: {frames}");
    // The owner rendered each message once (plus its ack); the edges render nothing and
    // deliver the owner's bytes to both local subscribers.
    assert_eq!(rendered, (2 * MESSAGES) as f64);
    assert_eq!(edge_rendered, 0.0);
    assert_eq!(edge_deliveries, (2 * MESSAGES) as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_drain_hands_over_inboxes_and_bans() {
    let mut cluster = TestCluster::start(&["i1", "i2", "i3"]).await;
    // A user whose personal room, and a room whose key, are owned by the node that drains.
    let offline_user =
        (0..).map(|k| format!("away{k}")).find(|user| cluster.owner_of(&format!("user:{user}")) == 2).unwrap();
    let room = cluster.room_owned_by(2, "guarded");
    let mut sender = cluster.node(0).client("sender").await;
    sender.ack("dm.send", json!({"to": offline_user, "text": "kept for you"})).await;
    let mut moderator = cluster.node(1).client_with(&Token::new("mod").roles(&["moderator"]).sign()).await;
    moderator.join(&room).await;
    moderator.ack("room.ban", json!({"room": room, "user_id": "eve"})).await;

    cluster.node(2).terminate();
    let status = tokio::task::spawn_blocking(move || {
        let mut server = cluster.nodes[2].take().unwrap();
        let status = server.wait_exit(Duration::from_secs(12));
        (cluster, status)
    });
    let (cluster, status) = status.await.unwrap();
    assert_eq!(status.and_then(|status| status.code()), Some(0));
    cluster.wait_settled(2).await;

    // The inbox moved: the user gets the message on its next connection, on any node.
    let mut away = cluster.node(1).client(&offline_user).await;
    let message = away.recv_type("dm.message").await["data"].clone();
    assert_eq!((message["text"].as_str(), message["offline"].as_bool()), (Some("kept for you"), Some(true)));
    // The ban moved too.
    let mut eve = cluster.node(0).client("eve").await;
    assert_eq!(eve.error("room.join", json!({"room": room})).await, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_unavailable_during_a_failover_does_not_count_towards_the_error_threshold() {
    // With a threshold of 5, a client sending through an owner's failover gets many
    // `unavailable` answers and stays connected: the failure is the server's, not the client's.
    let mut cluster = TestCluster::start_with(&["u1", "u2", "u3"], &["--error-limit", "5"]).await;
    let room = cluster.room_owned_by(2, "failing");
    let mut sender = cluster.node(0).client("sender").await;
    sender.join(&room).await;
    cluster.nodes[2] = None; // SIGKILL of the owner
    let mut unavailable = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while unavailable <= 5 && Instant::now() < deadline {
        let reply = sender.request("chat.send", json!({"room": room, "text": "during the failover"})).await;
        if reply["type"] == "error" {
            assert_eq!(reply["data"]["code"], "unavailable", "{reply}");
            unavailable += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(unavailable > 5, "the failover was seen: {unavailable} unavailable answers");
    sender.ping().await;
    // Errors of the client's own doing still count.
    for _ in 0..5 {
        sender.error("room.join", json!({"room": ""})).await;
    }
    assert_eq!(sender.expect_close().await, Some(1008));
}
