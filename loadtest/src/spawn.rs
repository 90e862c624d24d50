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
}

pub struct Cluster {
    pub nodes: Vec<Node>,
}

/// Starts `count` nodes. ringcast is single-node today, so only `count == 1` is served.
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
    if count > 1 {
        bail!("multi-node spawn needs cluster support (ringcast is single-node for now): use --spawn-cluster 1");
    }
    if !bin.exists() {
        bail!(
            "--server-bin {}: no such file (build it: cargo build --release -p ringcast -p ringcast-loadtest)",
            bin.display()
        );
    }
    let mut command = Command::new(bin);
    if raw {
        command.args(["--listen", "127.0.0.1:0", "--queue-frames", "4096"]);
    } else {
        let secret = jwt_secret.context("spawning ringcast needs a JWT secret")?;
        command.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--jwt-secret",
            secret,
            "--rate-per-second",
            "1000000",
            "--rate-burst",
            "1000000",
            "--queue-frames",
            "4096",
        ]);
    }
    command.args(extra_args);
    command.stdin(Stdio::null()).stdout(Stdio::piped()).kill_on_drop(true);
    match log {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
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
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .context("spawned server did not print its listen line within 20 s")?
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
    let url = if raw { format!("ws://{addr}/") } else { format!("ws://{addr}/v1/ws") };
    Ok(Cluster { nodes: vec![Node { child, pid, url }] })
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
