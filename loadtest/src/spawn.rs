//! `--spawn-cluster N --server-bin PATH`: start local nodes for a one-command benchmark and
//! stop them (SIGTERM, then SIGKILL after a grace period) at the end.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Node {
    pub child: Child,
    pub pid: u32,
    pub url: String,
    /// How it was started (to start it again).
    pub spec: NodeSpec,
}

/// How to start one node: the program and its arguments (a node in a network namespace is
/// started through `ip netns exec`, which execs it: the pid is the node's).
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub program: std::path::PathBuf,
    pub args: Vec<String>,
    /// File the node's stderr is appended to.
    pub log: Option<std::path::PathBuf>,
    pub raw: bool,
    pub tls: bool,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
}

/// Starts `count` nodes: one ringcast (or raw-broadcast) node, or a ringcast cluster on
/// loopback (free cluster ports, every node seeded with all, a fresh cluster secret), and
/// waits until every node answers `/ready`.
pub async fn spawn(
    count: usize,
    bin: &Path,
    raw: bool,
    jwt_secret: Option<&str>,
    extra_args: &[String],
    log: Option<&Path>,
) -> Result<Cluster> {
    if count == 0 {
        bail!("--spawn-cluster needs at least 1 node");
    }
    if raw && count > 1 {
        bail!("raw-broadcast has no cluster: use --spawn-cluster 1 with --raw");
    }
    if !bin.exists() {
        bail!(
            "--server-bin {}: no such file (build it: cargo build --release -p ringcast -p ringcast-loadtest)",
            bin.display()
        );
    }
    let tls = extra_args.iter().any(|arg| arg.starts_with("--tls-cert"));
    if tls && count > 1 {
        bail!("a spawned tls cluster is not supported: use --spawn-cluster 1, or --url wss://… with nodes started by hand");
    }
    let mut args_per_node: Vec<Vec<String>> = Vec::new();
    if raw {
        args_per_node.push(vec!["--listen".into(), "127.0.0.1:0".into(), "--queue-frames".into(), "4096".into()]);
    } else {
        let secret = jwt_secret.context("spawning ringcast needs a JWT secret")?;
        let base = serve_args("127.0.0.1:0", secret);
        if count == 1 {
            args_per_node.push(base);
        } else {
            let cluster_addrs = free_cluster_addrs(count)?;
            let cluster_secret =
                format!("loadtest-{}-{}", std::process::id(), crate::rng::Rng::from_time(0).next_u64());
            for (index, addr) in cluster_addrs.iter().enumerate() {
                let mut args = base.clone();
                args.extend([
                    "--node-id".to_string(),
                    format!("lt-{}", index + 1),
                    "--cluster-listen".to_string(),
                    addr.clone(),
                    "--seeds".to_string(),
                    cluster_addrs.join(","),
                    "--cluster-secret".to_string(),
                    cluster_secret.clone(),
                ]);
                args_per_node.push(args);
            }
        }
    }
    let starts = args_per_node.into_iter().enumerate().map(|(index, mut args)| {
        args.extend(extra_args.iter().cloned());
        let log =
            log.map(
                |path| if count == 1 { path.to_path_buf() } else { path.with_extension(format!("{}.log", index + 1)) },
            );
        spawn_one(NodeSpec { program: bin.to_path_buf(), args, log, raw, tls })
    });
    let handles: Vec<_> = starts.map(tokio::spawn).collect();
    let mut nodes = Vec::new();
    for handle in handles {
        nodes.push(handle.await.context("spawn task failed")??);
    }
    if count > 1 {
        for node in &nodes {
            wait_ready(&node.url, count, Duration::from_secs(30)).await?;
        }
    }
    Ok(Cluster { nodes })
}

/// `count` distinct loopback ports, each free for both TCP (peer links) and UDP (gossip).
/// Every listener is held until all are picked, so no port is handed out twice.
pub fn free_cluster_addrs(count: usize) -> Result<Vec<String>> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count * 100 {
        if held.len() == count {
            break;
        }
        let tcp = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = tcp.local_addr()?;
        if let Ok(udp) = std::net::UdpSocket::bind(addr) {
            held.push((addr, tcp, udp));
        }
    }
    if held.len() < count {
        bail!("no free loopback port for a cluster node");
    }
    Ok(held.into_iter().map(|(addr, _, _)| addr.to_string()).collect())
}

/// Polls the node behind `url` until `GET /ready` answers 200 and, in a cluster of
/// `members`, its `/metrics` count that many ready members: the cluster has formed, so the
/// run does not start in the middle of ring changes.
pub async fn wait_ready(url: &str, members: usize, timeout: Duration) -> Result<()> {
    let host = url.trim_start_matches("ws://").split('/').next().unwrap_or_default().to_string();
    let formed = format!("ringcast_cluster_members{{state=\"ready\"}} {members}\n");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let ready = match http_get(&host, "/ready").await {
            Some(response) if response.starts_with("HTTP/1.1 200") => {
                members <= 1 || http_get(&host, "/metrics").await.is_some_and(|metrics| metrics.contains(&formed))
            }
            _ => false,
        };
        if ready {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("spawned node {host} was not ready within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A plain HTTP/1.1 GET: the whole response, or `None` on any failure within 2 s.
pub async fn http_get(host: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(host).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), attempt).await.ok()?.ok()
}

/// Starts one node and waits for its listen line.
pub async fn spawn_one(spec: NodeSpec) -> Result<Node> {
    let (bin, raw, tls) = (&spec.program, spec.raw, spec.tls);
    let mut command = Command::new(bin);
    command.args(&spec.args);
    command.stdin(Stdio::null()).stdout(Stdio::piped()).kill_on_drop(true);
    // SAFETY: prctl in the forked child before exec, async-signal-safe. The node dies with
    // the harness even when the harness is killed outright.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    match &spec.log {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            command.stderr(file);
        }
        None => {
            command.stderr(Stdio::null());
        }
    }
    let mut child = command.spawn().with_context(|| format!("cannot start {}", bin.display()))?;
    let pid = child.id().context("spawned server has no pid")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("spawned server did not print its listen line within 30 s")?
        .context("reading the spawned server's stdout")?;
    let Some(first) = first else {
        let status = child.wait().await.ok();
        bail!("spawned server exited before listening ({status:?}); see --server-log");
    };
    let addr = first
        .split("listening on ")
        .nth(1)
        .map(str::trim)
        .with_context(|| format!("unexpected first line from the server: {first:?}"))?
        .to_string();
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let scheme = if tls { "wss" } else { "ws" };
    let url = if raw { format!("{scheme}://{addr}/") } else { format!("{scheme}://{addr}/v1/ws") };
    Ok(Node { child, pid, url, spec })
}

impl Cluster {
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.pid).collect()
    }

    /// SIGTERM every node, wait up to `grace`, then SIGKILL what is left.
    pub async fn stop(mut self, grace: Duration) -> Vec<String> {
        let mut notes = Vec::new();
        for node in &self.nodes {
            // SAFETY: kill(2) with a pid we started and still own.
            unsafe {
                libc::kill(node.pid as libc::pid_t, libc::SIGTERM);
            }
        }
        for node in &mut self.nodes {
            match tokio::time::timeout(grace, node.child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => notes.push(format!("server {} exited with {status}", node.pid)),
                Ok(Err(err)) => notes.push(format!("server {}: {err}", node.pid)),
                Err(_) => {
                    let _ = node.child.kill().await;
                    notes.push(format!("server {} did not stop within {grace:?} of SIGTERM: killed", node.pid));
                }
            }
        }
        notes
    }
}

/// `ringcast serve` on `listen` with the harness's JWT secret, without the limits that would
/// measure the harness instead of the server (rate limits off, a deep outbound queue).
pub fn serve_args(listen: &str, jwt_secret: &str) -> Vec<String> {
    [
        "serve",
        "--listen",
        listen,
        "--jwt-secret",
        jwt_secret,
        "--rate-per-second",
        "1000000",
        "--rate-burst",
        "1000000",
        "--queue-frames",
        "4096",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect()
}

/// A Redis server started for a run (chaos `--spawn-redis`, the suite's Redis scenarios).
pub struct Redis {
    child: Child,
    pub url: String,
}

/// Starts `redis-server` without persistence on a free port of `bind` and waits for its PONG.
pub async fn spawn_redis(bin: &Path, bind: &str) -> Result<Redis> {
    let port = free_cluster_addrs(1)?
        .first()
        .and_then(|a| a.rsplit(':').next().map(str::to_string))
        .context("no free port for redis")?;
    let child = Command::new(bin)
        .args(["--port", &port, "--bind", bind, "--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {} (install redis-server or give --redis-url)", bin.display()))?;
    let host = format!("{bind}:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(&host).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = [0u8; 16];
            if stream.write_all(b"PING\r\n").await.is_ok()
                && matches!(tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await, Ok(Ok(n)) if buf[..n].starts_with(b"+PONG"))
            {
                break;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("redis-server on {host} did not answer within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Redis { child, url: format!("redis://{host}/") })
}

impl Redis {
    /// SIGTERM, then SIGKILL after 5 s; returns a note when it had to kill.
    pub async fn stop(mut self) -> Option<String> {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on a pid this process started and has not reaped yet.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
            return Some("redis-server did not stop within 5 s of sigterm: killed".into());
        }
        None
    }
}
