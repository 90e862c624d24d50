//! `chaos` (parent side): spawns the nodes (on fixed loopback ports, or in network
//! namespaces when partitions are asked for and possible), optionally a Redis server, runs
//! the worker, and meanwhile injects one fault at a time — kill, drain, restart, partition —
//! waiting until the cluster is whole again before the next. At the end it merges the fault
//! events with what the worker's ledger found into the report's chaos section.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use super::collect::Hooks;
use crate::cli::{ChaosArgs, FaultKind};
use crate::plan::Plan;
use crate::proto::now_micros;
use crate::report::{ChaosData, ChaosReport, FaultEvent, Report};
use crate::rng::Rng;
use crate::spawn::{self, Node, NodeSpec};

mod netlab;

use netlab::NetLab;

/// One node's place: its spec, and the process while it runs.
struct Slot {
    id: String,
    spec: NodeSpec,
    url: String,
    node: Option<Node>,
}

/// The spawned cluster, faults applied to it one at a time.
struct Cluster {
    slots: Vec<Slot>,
    lab: Option<NetLab>,
    pids: Vec<u32>,
}

impl Cluster {
    async fn start(&mut self, i: usize) -> Result<()> {
        // A restarted node's ports may be held a moment longer by the old process: retry.
        let mut last = None;
        for _ in 0..50 {
            match spawn::spawn_one(self.slots[i].spec.clone()).await {
                Ok(node) => {
                    self.pids.push(node.pid);
                    self.slots[i].node = Some(node);
                    return Ok(());
                }
                Err(err) => last = Some(err),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt")))
            .with_context(|| format!("restarting {}", self.slots[i].id))
    }

    async fn kill(&mut self, i: usize) {
        if let Some(mut node) = self.slots[i].node.take() {
            signal(node.pid, libc::SIGKILL);
            let _ = tokio::time::timeout(Duration::from_secs(10), node.child.wait()).await;
        }
    }

    /// SIGTERM and wait for the exit (the node drains); SIGKILL after `grace`.
    async fn term(&mut self, i: usize, grace: Duration) -> Option<String> {
        let mut node = self.slots[i].node.take()?;
        signal(node.pid, libc::SIGTERM);
        match tokio::time::timeout(grace, node.child.wait()).await {
            Ok(Ok(status)) if status.success() => None,
            Ok(Ok(status)) => Some(format!("{} exited with {status} after sigterm", self.slots[i].id)),
            Ok(Err(err)) => Some(format!("{}: {err}", self.slots[i].id)),
            Err(_) => {
                signal(node.pid, libc::SIGKILL);
                let _ = node.child.wait().await;
                Some(format!("{} did not exit within {grace:?} of sigterm: killed", self.slots[i].id))
            }
        }
    }

    /// Waits until every node answers `/ready` and counts every member ready.
    async fn whole(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for slot in &self.slots {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
            spawn::wait_ready(&slot.url, self.slots.len(), left).await?;
        }
        Ok(())
    }

    /// Stops every node (SIGTERM, SIGKILL after `grace`).
    async fn stop(&mut self, grace: Duration) -> Vec<String> {
        let mut notes = Vec::new();
        for slot in &self.slots {
            if let Some(node) = &slot.node {
                signal(node.pid, libc::SIGTERM);
            }
        }
        for i in 0..self.slots.len() {
            if let Some(note) = self.term(i, grace).await {
                notes.push(note);
            }
        }
        notes
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a pid this process started and has not reaped yet.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Runs the chaos scenario end to end; returns the exit code.
pub async fn run(args: &ChaosArgs, mut plan: Plan) -> Result<i32> {
    let common = &args.common;
    let bin = common.server_bin.clone().context("chaos needs --server-bin PATH (target/debug/ringcast)")?;
    if !bin.exists() {
        bail!("--server-bin {}: no such file", bin.display());
    }
    let mut faults = args.faults.clone();
    faults.dedup();
    let mut skipped = Vec::new();
    let mut lab = None;
    if faults.contains(&FaultKind::Partition) {
        match NetLab::build(args.nodes) {
            Ok(built) => lab = Some(built),
            Err(reason) => {
                skipped.push(format!("partition skipped: {reason:#}"));
                eprintln!("ringcast-loadtest: partition skipped: {reason:#}");
                faults.retain(|f| *f != FaultKind::Partition);
            }
        }
    }
    if faults.is_empty() {
        bail!("no fault left to inject");
    }
    let secret = plan.jwt_secret.clone().unwrap_or_else(|| Rng::from_time(7).hex_id(32));
    plan.jwt_secret = Some(secret.clone());
    let mut redis = None;
    let redis_url = match (&args.redis_url, args.spawn_redis) {
        (Some(url), _) => Some(url.clone()),
        (None, true) => {
            let bind = lab.as_ref().map(|l| l.hub_ip()).unwrap_or_else(|| "127.0.0.1".into());
            let started = spawn::spawn_redis(&args.redis_bin, &bind).await?;
            let url = started.url.clone();
            redis = Some(started);
            Some(url)
        }
        (None, false) => None,
    };
    let specs = node_specs(args, &bin, &secret, redis_url.as_deref(), lab.as_ref())?;
    let mut cluster = Cluster { slots: specs, lab, pids: Vec::new() };
    let outcome = run_with_cluster(args, plan, &mut cluster, faults, skipped, redis_url.clone()).await;
    // Whatever happened: stop every node, then Redis, then the network.
    let mut notes = cluster.stop(Duration::from_secs(40)).await;
    if let Some(redis) = redis.take() {
        notes.extend(redis.stop().await);
    }
    drop(cluster.lab.take());
    let mut report = outcome?;
    report.notes.extend(notes);
    if let Some(chaos) = &mut report.chaos {
        chaos.pids_started = cluster.pids.clone();
    }
    super::finish(report, common)
}

/// Every node's spec: fixed ports (a restarted node comes back where its clients and peers
/// expect it), ids `lt-1`, `lt-2`, …
fn node_specs(
    args: &ChaosArgs,
    bin: &std::path::Path,
    secret: &str,
    redis_url: Option<&str>,
    lab: Option<&NetLab>,
) -> Result<Vec<Slot>> {
    let n = args.nodes;
    let (listen, cluster): (Vec<String>, Vec<String>) = match lab {
        Some(lab) => (0..n).map(|i| (format!("{}:8080", lab.node_ip(i)), format!("{}:7946", lab.node_ip(i)))).unzip(),
        None => {
            let ports = spawn::free_cluster_addrs(2 * n)?;
            (ports[..n].to_vec(), ports[n..].to_vec())
        }
    };
    let cluster_secret = format!("chaos-{}-{}", std::process::id(), Rng::from_time(3).hex_id(8));
    let mut slots = Vec::new();
    for i in 0..n {
        let id = format!("lt-{}", i + 1);
        let mut node_args = spawn::serve_args(&listen[i], secret);
        node_args.extend(
            [
                "--node-id",
                &id,
                "--cluster-listen",
                &cluster[i],
                "--seeds",
                &cluster.join(","),
                "--cluster-secret",
                &cluster_secret,
                "--drain-timeout-secs",
                "20",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        if let Some(url) = redis_url {
            node_args.extend(["--redis-url".to_string(), url.to_string()]);
        }
        node_args.extend(args.common.server_args.iter().cloned());
        let (program, all_args) = match lab {
            Some(lab) => {
                let mut full = vec!["netns".to_string(), "exec".into(), lab.ns(i), bin.display().to_string()];
                full.extend(node_args);
                (std::path::PathBuf::from("ip"), full)
            }
            None => (bin.to_path_buf(), node_args),
        };
        let log = args.common.server_log.as_ref().map(|p| p.with_extension(format!("{}.log", i + 1)));
        slots.push(Slot {
            id,
            spec: NodeSpec { program, args: all_args, log, raw: false, tls: false },
            url: format!("ws://{}/v1/ws", listen[i]),
            node: None,
        });
    }
    Ok(slots)
}

/// What the fault injector needs besides the cluster.
struct Schedule {
    faults: Vec<FaultKind>,
    interval: Duration,
    max_faults: u64,
    down_for: Duration,
    partition_for: Duration,
    pause_for: Duration,
    settle: Duration,
    run_for: Duration,
    seed: u64,
}

async fn run_with_cluster(
    args: &ChaosArgs,
    mut plan: Plan,
    cluster: &mut Cluster,
    faults: Vec<FaultKind>,
    skipped: Vec<String>,
    redis_url: Option<String>,
) -> Result<Report> {
    for i in 0..cluster.slots.len() {
        cluster.start(i).await?;
    }
    cluster.whole(Duration::from_secs(30)).await.context("the cluster did not form")?;
    plan.urls = cluster.slots.iter().map(|s| s.url.clone()).collect();
    // Nodes in the namespaces made for this run sit on 198.18.x addresses of a bridge that
    // exists only on this machine: the loopback-only rule does not apply to them.
    plan.allow_remote |= cluster.lab.is_some();
    eprintln!("ringcast-loadtest: started {} node(s): {}", plan.urls.len(), plan.urls.join(" "));
    let pids: Vec<u32> = cluster.slots.iter().filter_map(|s| s.node.as_ref().map(|n| n.pid)).collect();
    let (go_tx, go_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let count = Arc::new(AtomicU64::new(0));
    let events = Arc::new(Mutex::new(Vec::<FaultEvent>::new()));
    let schedule = Schedule {
        faults: faults.clone(),
        interval: args.fault_interval,
        max_faults: args.max_faults,
        down_for: args.down_for,
        partition_for: args.partition_for,
        pause_for: args.pause_for,
        settle: args.settle_timeout,
        run_for: args.common.duration,
        seed: args.seed.unwrap_or_else(|| Rng::from_time(11).next_u64()),
    };
    let hooks = Hooks { go: Some(go_tx), faults: Some(count.clone()) };
    // The injector borrows the cluster while the worker runs; both end before it is used again.
    let injector = inject(cluster, schedule, go_rx, stop_rx, count.clone(), events.clone());
    let run = async {
        let result = super::run_plan_with(plan.clone(), &args.common, pids, hooks).await;
        let _ = stop_tx.send(true);
        result
    };
    let (report, ()) = tokio::join!(run, injector);
    let mut report = report?;
    let events = std::mem::take(&mut *events.lock());
    let data = merge_chaos_data(&report);
    report.chaos = Some(chaos_section(args, &report, events, faults, skipped, redis_url, data, cluster));
    Ok(report)
}

/// The worker's ledger findings (one worker in chaos).
fn merge_chaos_data(report: &Report) -> ChaosData {
    report.chaos_data.clone().unwrap_or_default()
}

/// Injects faults from `go` until the run's time is nearly up, the fault budget is spent, or
/// `stop`; one at a time, each followed by a wait until the cluster is whole.
async fn inject(
    cluster: &mut Cluster,
    schedule: Schedule,
    mut go: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    count: Arc<AtomicU64>,
    events: Arc<Mutex<Vec<FaultEvent>>>,
) {
    // Wait for the start of the measured phase (or the end of the run).
    tokio::select! {
        _ = go.wait_for(|g| *g) => {}
        _ = stop.wait_for(|s| *s) => return,
    }
    let started = Instant::now();
    let start_unix_ms = now_micros() / 1000;
    let mut rng = Rng::new(schedule.seed);
    let n = cluster.slots.len();
    let mut injected = 0u64;
    // Bounded: at most max_faults iterations, each waiting at least `interval`.
    while injected < schedule.max_faults {
        let next = started + schedule.interval.mul_f64(injected as f64 + 1.0);
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // Leave time for the fault to end and the cluster to heal before sending stops.
        let left = (started + schedule.run_for).saturating_duration_since(Instant::now());
        let partition_for =
            if schedule.faults.contains(&FaultKind::Partition) { schedule.partition_for } else { Duration::ZERO };
        let pause_for = if schedule.faults.contains(&FaultKind::Pause) { schedule.pause_for } else { Duration::ZERO };
        let needs = schedule.down_for.max(partition_for).max(pause_for) + Duration::from_secs(3);
        if left < needs {
            break;
        }
        let kind = schedule.faults[rng.below(schedule.faults.len() as u64) as usize];
        let i = rng.below(n as u64) as usize;
        injected += 1;
        let t0 = Instant::now();
        let at_unix_ms = now_micros() / 1000;
        let mut event = FaultEvent {
            n: injected as u32,
            kind: kind.as_str().into(),
            node: cluster.slots[i].id.clone(),
            at_s: (at_unix_ms.saturating_sub(start_unix_ms)) as f64 / 1000.0,
            at_unix_ms,
            ..Default::default()
        };
        count.store(injected, Ordering::Relaxed);
        let result = apply(cluster, i, kind, &schedule).await;
        event.down_ms = t0.elapsed().as_millis() as u64;
        match result {
            Ok(note) => {
                event.note = note;
                match cluster.whole(schedule.settle).await {
                    Ok(()) => event.whole_after_ms = Some(t0.elapsed().as_millis() as u64),
                    Err(err) => event.error = Some(format!("cluster not whole after {:?}: {err:#}", schedule.settle)),
                }
            }
            Err(err) => event.error = Some(format!("{err:#}")),
        }
        let failed = event.error.is_some();
        if let Some(error) = &event.error {
            eprintln!(
                "ringcast-loadtest: fault {} ({} {}) failed: {error}; no more faults",
                event.n, event.kind, event.node
            );
        }
        events.lock().push(event);
        if failed {
            break;
        }
    }
}

/// Applies one fault to node `i`; returns once the node runs again (or the partition healed).
async fn apply(cluster: &mut Cluster, i: usize, kind: FaultKind, schedule: &Schedule) -> Result<Option<String>> {
    match kind {
        FaultKind::Kill => {
            cluster.kill(i).await;
            tokio::time::sleep(schedule.down_for).await;
            cluster.start(i).await?;
            Ok(None)
        }
        FaultKind::Drain => {
            let note = cluster.term(i, Duration::from_secs(40)).await;
            tokio::time::sleep(schedule.down_for).await;
            cluster.start(i).await?;
            Ok(note)
        }
        FaultKind::Restart => {
            let note = cluster.term(i, Duration::from_secs(40)).await;
            cluster.start(i).await?;
            Ok(note)
        }
        FaultKind::Pause => {
            let pid = cluster.slots[i].node.as_ref().map(|node| node.pid).context("pausing a node that is down")?;
            signal(pid, libc::SIGSTOP);
            tokio::time::sleep(schedule.pause_for).await;
            signal(pid, libc::SIGCONT);
            Ok(None)
        }
        FaultKind::Partition => {
            let lab = cluster.lab.as_ref().context("partition without a network lab")?;
            lab.cut(i)?;
            tokio::time::sleep(schedule.partition_for).await;
            lab.heal(i)?;
            Ok(None)
        }
    }
}

/// The report's chaos section: faults with the violations of their window and the time
/// until every room had an ack again.
#[allow(clippy::too_many_arguments)]
fn chaos_section(
    args: &ChaosArgs,
    report: &Report,
    mut events: Vec<FaultEvent>,
    faults: Vec<FaultKind>,
    skipped: Vec<String>,
    redis_url: Option<String>,
    data: ChaosData,
    cluster: &Cluster,
) -> ChaosReport {
    let start_ms = report.started_at_unix_ms;
    let mut before = BTreeMap::new();
    let mut by_second: BTreeMap<u32, u64> = BTreeMap::new();
    for (ms, kind) in &data.violation_events {
        let second = (ms.saturating_sub(start_ms) / 1000) as u32;
        *by_second.entry(second).or_default() += 1;
        match events.iter_mut().rev().find(|e| e.at_unix_ms <= *ms) {
            Some(event) => *event.violations.entry(kind.clone()).or_default() += 1,
            None => *before.entry(kind.clone()).or_default() += 1,
        }
    }
    for event in &mut events {
        let mut slowest: Option<u64> = None;
        for (_, acks) in &data.acks_by_room {
            let first = acks.partition_point(|&t| t <= event.at_unix_ms);
            let after = acks.get(first).map(|t| t - event.at_unix_ms);
            slowest = match (slowest, after) {
                (_, None) => slowest,
                (None, Some(a)) => Some(a),
                (Some(s), Some(a)) => Some(s.max(a)),
            };
        }
        event.first_ack_after_ms = slowest;
    }
    ChaosReport {
        nodes: args.nodes,
        store: redis_url.unwrap_or_else(|| "memory".into()),
        network: if cluster.lab.is_some() { "netns".into() } else { "loopback".into() },
        faults_enabled: faults.iter().map(|f| f.as_str().to_string()).collect(),
        skipped,
        faults: events,
        min_faults: args.min_faults,
        violations_before_faults: before,
        violations_by_second: by_second,
        acked_checked: data.acked_checked,
        owed: data.owed,
        undelivered: data.undelivered,
        undelivered_examples: data.examples,
        resets_received: data.resets,
        reconnects: data.reconnects,
        pids_started: Vec::new(),
    }
}
