//! A multi-process cluster for tests: `ringcast` nodes on loopback with gossip and links.

use std::net::SocketAddr;
use std::time::Duration;

use ringcast_cluster::{NodeId, Ring};
use serde_json::Value;

use super::*;

pub const CLUSTER_SECRET: &str = "cluster-secret-for-tests";

/// A free port for both TCP (links) and UDP (gossip), below the kernel's ephemeral range
/// (32768–60999 here): a port picked from that range could be taken by any outgoing
/// connection (a client, a Redis connection) between the pick and the node's bind.
///
/// A port is handed out at most once per test process: tests run in parallel, and two of
/// them picking the same free port before either node bound it made a node exit 64 in CI.
pub fn free_cluster_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        ^ ((std::process::id() as u64) << 32);
    for attempt in 0..1000u64 {
        let mut x = seed ^ NEXT.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ attempt;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 20_000 + (x % 12_000) as u16;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut handed_out = HANDED_OUT.lock().unwrap();
        if handed_out.contains(&port) {
            continue;
        }
        if let Ok(tcp) = std::net::TcpListener::bind(addr) {
            if std::net::UdpSocket::bind(addr).is_ok() {
                drop(tcp);
                handed_out.insert(port);
                return addr;
            }
        }
    }
    panic!("no free port for a cluster node in 20000-32000");
}

pub struct TestCluster {
    pub ids: Vec<String>,
    pub cluster_addrs: Vec<SocketAddr>,
    pub nodes: Vec<Option<Server>>,
    pub extra: Vec<String>,
    /// The cluster's Redis when the suite runs over Redis.
    _redis: Option<super::redis::RedisServer>,
}

impl TestCluster {
    pub fn args(&self, index: usize, secret: &str) -> Vec<String> {
        let seeds: Vec<String> = self.cluster_addrs.iter().map(|addr| addr.to_string()).collect();
        vec![
            "--node-id".into(),
            self.ids[index].clone(),
            "--cluster-listen".into(),
            self.cluster_addrs[index].to_string(),
            "--cluster-secret".into(),
            secret.into(),
            "--seeds".into(),
            seeds.join(","),
            "--drain-timeout-secs".into(),
            "10".into(),
        ]
        .into_iter()
        .chain(self.extra.iter().cloned())
        .collect()
    }

    /// Starts `ids.len()` nodes at once, each seeded with all the others.
    pub async fn start(ids: &[&str]) -> TestCluster {
        TestCluster::start_with(ids, &[]).await
    }

    /// Like [`TestCluster::start`], every node with `extra` flags.
    pub async fn start_with(ids: &[&str], extra: &[&str]) -> TestCluster {
        let cluster = TestCluster::spawn_with(ids, extra);
        cluster.wait_settled(ids.len()).await;
        cluster
    }

    /// Starts the nodes without waiting for them to form a cluster.
    pub fn spawn_with(ids: &[&str], extra: &[&str]) -> TestCluster {
        let mut cluster = TestCluster {
            ids: ids.iter().map(|id| id.to_string()).collect(),
            cluster_addrs: ids.iter().map(|_| free_cluster_addr()).collect(),
            nodes: Vec::new(),
            extra: extra.iter().map(|arg| arg.to_string()).collect(),
            _redis: None,
        };
        if over_redis() && !cluster.extra.iter().any(|arg| arg.starts_with("--redis-url")) {
            let redis = super::redis::RedisServer::start();
            cluster.extra.extend(["--redis-url".to_string(), redis.url()]);
            cluster._redis = Some(redis);
        }
        let handles: Vec<_> = (0..ids.len())
            .map(|index| {
                let args = cluster.args(index, CLUSTER_SECRET);
                std::thread::spawn(move || Server::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>()))
            })
            .collect();
        cluster.nodes = handles.into_iter().map(|handle| Some(handle.join().expect("node started"))).collect();
        cluster
    }

    pub fn node(&self, index: usize) -> &Server {
        self.nodes[index].as_ref().expect("node is running")
    }

    /// Restarts node `index` (same id and ports, a new generation).
    pub async fn restart(&mut self, index: usize) {
        let args = self.args(index, CLUSTER_SECRET);
        let server = tokio::task::spawn_blocking(move || {
            Server::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .unwrap();
        self.nodes[index] = Some(server);
    }

    /// Waits until every running node is ready with a ring of `expected` members.
    pub async fn wait_settled(&self, expected: usize) {
        for server in self.nodes.iter().flatten() {
            let settled = eventually(Duration::from_secs(15), || async {
                let view = cluster_view(server).await;
                server.get("/ready").await.status == 200 && view["ring"].as_array().map(Vec::len) == Some(expected)
            })
            .await;
            assert!(
                settled,
                "node {} did not settle on a ring of {expected}: {}",
                server.addr,
                cluster_view(server).await
            );
        }
    }

    /// The index of the node that owns `room` (default tenant) on the full ring.
    pub fn owner_of(&self, room: &str) -> usize {
        let ring = Ring::new(self.ids.iter().map(NodeId::new));
        let owner = ring.owner(&format!("default/{room}")).unwrap().as_str().to_string();
        self.ids.iter().position(|id| *id == owner).unwrap()
    }

    /// A room name whose owner is node `index`.
    pub fn room_owned_by(&self, index: usize, prefix: &str) -> String {
        (0..).map(|k| format!("{prefix}-{k}")).find(|room| self.owner_of(room) == index).unwrap()
    }
}

pub fn admin_token() -> String {
    Token::new("root").roles(&["admin"]).sign()
}

pub async fn cluster_view(server: &Server) -> Value {
    let request = format!(
        "GET /v1/cluster HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        admin_token()
    );
    let response = http_raw(server.addr, &request).await;
    assert_eq!(response.status, 200, "GET /v1/cluster: {}", response.body);
    response.json()
}

/// Where the clients connect: one node for all, or node i of a cluster.
pub enum Setup {
    Single(Server),
    Cluster(TestCluster),
}

impl Setup {
    /// One node, or a 3-node cluster; every node with `extra` flags.
    pub async fn new(clustered: bool, extra: &[&str]) -> Setup {
        if clustered {
            Setup::Cluster(TestCluster::start_with(&["s1", "s2", "s3"], extra).await)
        } else {
            Setup::Single(Server::start_with(extra))
        }
    }

    pub fn node(&self, index: usize) -> &Server {
        match self {
            Setup::Single(server) => server,
            Setup::Cluster(cluster) => cluster.node(index % 3),
        }
    }
}
