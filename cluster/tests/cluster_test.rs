//! Multi-node tests of membership, the ring and peer links, each node a `Cluster` on its own
//! loopback port (real UDP gossip, real TCP links).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use ringcast_cluster::{
    Cluster, ClusterConfig, FrameHandler, MemberState, NodeId, PeerFrame, SendError, STREAM_QUEUE_FACTOR,
    STREAM_QUEUE_MIN,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Default)]
struct Recorder {
    frames: Mutex<Vec<(NodeId, PeerFrame)>>,
    downs: Mutex<Vec<NodeId>>,
}

impl FrameHandler for Recorder {
    fn on_frame(&self, from: &NodeId, frame: PeerFrame) {
        self.frames.lock().push((from.clone(), frame));
    }
    fn on_link_down(&self, node: &NodeId) {
        self.downs.lock().push(node.clone());
    }
}

fn free_addr() -> SocketAddr {
    // Bind TCP and UDP on the same port to be sure both are free.
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        if std::net::UdpSocket::bind(addr).is_ok() {
            return addr;
        }
    }
}

async fn start(name: &str, addr: SocketAddr, seeds: &[SocketAddr], secret: &[u8]) -> (Cluster, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let mut config = ClusterConfig::for_test(name, addr, seeds.iter().map(|s| s.to_string()).collect());
    config.secret = secret.to_vec();
    let cluster = Cluster::start(config, recorder.clone()).await.unwrap();
    (cluster, recorder)
}

async fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_three_nodes_form_a_ring_and_exchange_frames() {
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let mut nodes = Vec::new();
    for (index, addr) in addrs.iter().enumerate() {
        nodes.push(start(&format!("n{index}"), *addr, &addrs[..1], b"s").await);
    }
    for (cluster, _) in &nodes {
        assert!(cluster.wait_for(Duration::from_secs(10), |view| view.members.len() == 3).await);
        cluster.set_state(MemberState::Ready).await;
    }
    for (cluster, _) in &nodes {
        assert!(cluster.wait_for(Duration::from_secs(10), |view| view.ring.members().len() == 3).await);
    }
    assert!(wait_until(Duration::from_secs(10), || nodes.iter().all(|(c, _)| c.links_complete())).await);
    // A change stream opened now replays the members first, as Add.
    let mut changes = nodes[0].0.changes();
    let mut replayed = Vec::new();
    while let Ok(change) = changes.try_recv() {
        replayed.push(change);
    }
    assert_eq!(replayed.len(), 3);
    assert!(replayed
        .iter()
        .all(|change| matches!(change, ringcast_cluster::ClusterChange::Add(member) if member.is_ready())));
    // Every node computes the same owner for every key.
    let views: Vec<_> = nodes.iter().map(|(c, _)| c.view()).collect();
    for i in 0..1000 {
        let key = format!("default/room-{i}");
        let owner = views[0].ring.owner(&key).unwrap();
        assert!(views.iter().all(|view| view.ring.owner(&key).unwrap() == owner));
    }
    // Frames cross every link in both directions, payloads intact.
    for (from_index, (from, _)) in nodes.iter().enumerate() {
        for (to_index, (to, _)) in nodes.iter().enumerate() {
            if from_index != to_index {
                let mut frame = PeerFrame::with_tail(20, Bytes::from(vec![7u8; 400]), Bytes::from(vec![7u8; 600]));
                frame.flags = 1;
                frame.id_a = from_index as u64;
                frame.id_b = to_index as u64;
                from.send(to.node_id(), frame).unwrap();
            }
        }
    }
    assert!(wait_until(Duration::from_secs(5), || nodes.iter().all(|(_, r)| r.frames.lock().len() == 2)).await);
    for (index, (_, recorder)) in nodes.iter().enumerate() {
        for (from, frame) in recorder.frames.lock().iter() {
            assert_eq!(frame.id_b, index as u64);
            assert_eq!(from.as_str(), format!("n{}", frame.id_a));
            assert_eq!(&frame.payload[..], &[7u8; 1000][..]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_dead_node_leaves_the_ring_within_three_seconds() {
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let mut nodes = Vec::new();
    for (index, addr) in addrs.iter().enumerate() {
        nodes.push(start(&format!("d{index}"), *addr, &addrs[..1], b"s").await);
    }
    for (cluster, _) in &nodes {
        assert!(cluster.wait_for(Duration::from_secs(10), |view| view.members.len() == 3).await);
        cluster.set_state(MemberState::Ready).await;
    }
    for (cluster, _) in &nodes {
        assert!(cluster.wait_for(Duration::from_secs(10), |view| view.ring.members().len() == 3).await);
    }
    let (dead, _) = nodes.pop().unwrap();
    let dead_id = dead.node_id().clone();
    let started = Instant::now();
    dead.shutdown().await;
    drop(dead);
    for (cluster, recorder) in &nodes {
        assert!(
            cluster.wait_for(Duration::from_secs(3), |view| !view.ring.contains(&dead_id)).await,
            "still in the ring after 3 s"
        );
        assert!(wait_until(Duration::from_secs(1), || recorder.downs.lock().contains(&dead_id)).await);
    }
    eprintln!("dead node left the ring after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_wrong_secret_gets_no_link() {
    let addrs: Vec<SocketAddr> = (0..2).map(|_| free_addr()).collect();
    let (good, _) = start("a", addrs[0], &[], b"right").await;
    let (bad, _) = start("b", addrs[1], &addrs[..1], b"wrong").await;
    assert!(good.wait_for(Duration::from_secs(10), |view| view.members.len() == 2).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!good.is_connected(bad.node_id()));
    assert!(!bad.is_connected(good.node_id()));
    assert!(bad.send(good.node_id(), PeerFrame::new(20, Bytes::new())).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_garbage_on_the_peer_port_is_dropped() {
    let addrs: Vec<SocketAddr> = (0..2).map(|_| free_addr()).collect();
    let (a, _) = start("g0", addrs[0], &[], b"s").await;
    let (b, recorder_b) = start("g1", addrs[1], &addrs[..1], b"s").await;
    assert!(wait_until(Duration::from_secs(10), || a.is_connected(b.node_id())).await);
    for garbage in [&b"GET / HTTP/1.1\r\n\r\n"[..], &[0xff; 64][..], &[30, 0, 0, 0, 0x43, 0x52, 1][..]] {
        let mut stream = tokio::net::TcpStream::connect(addrs[0]).await.unwrap();
        stream.write_all(garbage).await.unwrap();
        let _ = stream.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(6), stream.read_to_end(&mut sink)).await;
    }
    // The real link still works.
    a.send(b.node_id(), PeerFrame::new(21, Bytes::from_static(b"ok"))).unwrap();
    assert!(wait_until(Duration::from_secs(5), || recorder_b.frames.lock().iter().any(|(_, f)| f.kind == 21)).await);
}

/// A full link queue refuses plain frames but takes a stream's frames up to
/// `STREAM_QUEUE_FACTOR` times its bound, at least `STREAM_QUEUE_MIN` (an owner's answers and
/// deliveries: one dropped would be a request unanswered or a seq its subscribers never see),
/// and every frame taken arrives, in order. A stream frame past that resets the link.
#[tokio::test(flavor = "current_thread")]
async fn test_a_full_queue_refuses_plain_frames_takes_a_streams_frames_and_resets_past_them() {
    let addrs = [free_addr(), free_addr()];
    let mut nodes = Vec::new();
    for (index, addr) in addrs.iter().enumerate() {
        let recorder = Arc::new(Recorder::default());
        let mut config = ClusterConfig::for_test(&format!("q{index}"), *addr, vec![addrs[0].to_string()]);
        config.link_queue_frames = 16;
        nodes.push((Cluster::start(config, recorder.clone()).await.unwrap(), recorder));
    }
    for (cluster, _) in &nodes {
        assert!(cluster.wait_for(Duration::from_secs(10), |view| view.members.len() == 2).await);
        cluster.set_state(MemberState::Ready).await;
    }
    assert!(wait_until(Duration::from_secs(10), || nodes.iter().all(|(c, _)| c.links_complete())).await);
    let (from, to) = (&nodes[0].0, nodes[1].0.node_id().clone());
    let frame = |n: u64| {
        let mut frame = PeerFrame::new(20, Bytes::from_static(b"x"));
        frame.id_a = n;
        frame
    };
    let stream_limit = (16 * STREAM_QUEUE_FACTOR).max(STREAM_QUEUE_MIN) as u64;
    // No await from here on: on this one-thread runtime the link's writer cannot drain.
    let mut next = 0;
    while next < 16 {
        from.send(&to, frame(next)).unwrap();
        next += 1;
    }
    assert!(from.congested(&to), "16 of 16 queued");
    assert_eq!(from.send(&to, frame(u64::MAX)).unwrap_err(), SendError::QueueFull, "a plain frame is refused");
    while next < stream_limit {
        from.send_stream(&to, frame(next)).unwrap();
        next += 1;
    }
    let received = &nodes[1].1;
    assert!(wait_until(Duration::from_secs(5), || received.frames.lock().len() == next as usize).await);
    let ids: Vec<u64> = received.frames.lock().iter().map(|(_, frame)| frame.id_a).collect();
    assert_eq!(ids, (0..next).collect::<Vec<_>>(), "all taken, in order, none refused");
    assert!(!from.congested(&to), "drained");
    assert!(nodes[0].1.downs.lock().is_empty(), "the link stood");

    // Past the stream's limit the link is reset, not holed.
    for n in 0..stream_limit {
        from.send_stream(&to, frame(n)).unwrap();
    }
    assert_eq!(from.send_stream(&to, frame(u64::MAX)).unwrap_err(), SendError::QueueFull);
    assert!(wait_until(Duration::from_secs(5), || !nodes[0].1.downs.lock().is_empty()).await, "the link was reset");
}
