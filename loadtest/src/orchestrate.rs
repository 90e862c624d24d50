//! The parent process: resolves the plan, starts servers (`--spawn-cluster`) and workers
//! (in-process, or `--processes N` children), releases barriers, samples the servers,
//! prints progress, merges everything into the [`Report`] and applies the thresholds.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write as _};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cli::{Command, Common};
use crate::plan::{Plan, Scenario};
use crate::procfs;
use crate::promscrape::{self, Endpoint};
use crate::proto::now_micros;
use crate::report::{
    counted_errors, encode_hist, evaluate, latency_buckets, Aggregate, ConnectionSummary, MetricsSummary, Percentiles,
    Report, RunSummary, ServerSummary, Thresholds, TimelinePoint, WorkerMsg,
};
use crate::rng::Rng;
use crate::spawn;
use crate::worker::{self, WorkerIo};

/// Exit codes.
pub const EXIT_PASS: i32 = 0;
pub const EXIT_THRESHOLD: i32 = 1;
pub const EXIT_ERROR: i32 = 2;

enum Event {
    Msg(WorkerMsg),
    Exited(String),
}

enum Control {
    InProcess(mpsc::UnboundedSender<String>),
    Child(tokio::process::ChildStdin),
}

impl Control {
    async fn release(&mut self, name: &str) -> Result<()> {
        match self {
            Control::InProcess(tx) => tx.send(name.to_string()).ok().context("worker is gone"),
            Control::Child(stdin) => {
                stdin.write_all(format!("{name}\n").as_bytes()).await?;
                stdin.flush().await?;
                Ok(())
            }
        }
    }
}

/// What the parent learned about the servers around the barriers.
#[derive(Default)]
struct ServerWatch {
    pids: Vec<u32>,
    rss_before: u64,
    rss_after: u64,
    rss_peak: u64,
    open_at_stop: i64,
    cpu_go: f64,
    cpu_stop: f64,
    t_go: Option<Instant>,
    t_stop: Option<Instant>,
    samples: BTreeMap<u32, (u64, Option<f64>)>,
    last_cpu: Option<(Instant, f64)>,
}

impl ServerWatch {
    fn rss(&self) -> u64 {
        self.pids.iter().filter_map(|&pid| procfs::rss_bytes(pid)).sum()
    }

    fn cpu(&self) -> f64 {
        self.pids.iter().filter_map(|&pid| procfs::cpu_seconds(Some(pid))).sum()
    }

    fn sample(&mut self, second: u32) {
        if self.pids.is_empty() {
            return;
        }
        let rss = self.rss();
        self.rss_peak = self.rss_peak.max(rss);
        let now = Instant::now();
        let cpu = self.cpu();
        let cores = self.last_cpu.map(|(at, before)| (cpu - before) / now.duration_since(at).as_secs_f64().max(1e-3));
        self.last_cpu = Some((now, cpu));
        self.samples.insert(second, (rss, cores));
    }
}

/// Runs a scenario command end to end; returns the exit code.
pub async fn run(command: Command) -> Result<i32> {
    let common = command.common().context("no scenario given")?.clone();
    let mut plan = Plan::from_command(&command)?;
    procfs::raise_nofile_limit();
    let mut cluster = None;
    if let Some(nodes) = common.spawn_cluster {
        if !common.urls.is_empty() {
            bail!("--spawn-cluster starts its own nodes: drop --url");
        }
        let bin = common.server_bin.clone().context("--spawn-cluster needs --server-bin PATH")?;
        if plan.jwt_secret.is_none() && !plan.raw {
            plan.jwt_secret = Some(Rng::from_time(7).hex_id(32));
        }
        let started = spawn::spawn(
            nodes,
            &bin,
            plan.raw,
            plan.jwt_secret.as_deref(),
            &common.server_args,
            common.server_log.as_deref(),
        )
        .await?;
        plan.urls = started.urls();
        eprintln!("ringcast-loadtest: started {} node(s): {}", started.nodes.len(), plan.urls.join(" "));
        cluster = Some(started);
    }
    let mut pids = common.server_pids.clone();
    if let Some(cluster) = &cluster {
        pids.extend(cluster.pids());
    }
    let result = run_plan(plan, &common, pids).await;
    let mut stop_notes = Vec::new();
    if let Some(cluster) = cluster {
        stop_notes = cluster.stop(Duration::from_secs(15)).await;
    }
    let mut report = result?;
    report.notes.extend(stop_notes);
    finish(report, &common)
}

async fn run_plan(mut plan: Plan, common: &Common, pids: Vec<u32>) -> Result<Report> {
    let targets = plan.finish()?;
    let mut endpoints: Vec<Endpoint> = Vec::new();
    if !plan.raw && !common.no_metrics {
        // /metrics of a wss:// node would be https: not scraped.
        for target in targets.iter().filter(|target| !target.tls) {
            if !endpoints.iter().any(|e| e.addr == target.addr) {
                endpoints.push(Endpoint {
                    addr: target.addr,
                    authority: target.authority.clone(),
                    path: "/metrics".into(),
                });
            }
        }
    }
    let workers = plan.worker_count;
    plan.start_at_unix_ms = now_micros() / 1000 + 200;
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Event)>();
    let mut controls = Vec::with_capacity(workers);
    let mut children = Vec::new();
    if workers == 1 {
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        let (rel_tx, rel_rx) = mpsc::unbounded_channel();
        let io = Arc::new(WorkerIo { out: out_tx, releases: tokio::sync::Mutex::new(rel_rx) });
        tokio::spawn(worker::run(plan.for_worker(0), io));
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(msg) = out_rx.recv().await {
                let _ = tx.send((0, Event::Msg(msg)));
            }
            let _ = tx.send((0, Event::Exited("ended".into())));
        });
        controls.push(Control::InProcess(rel_tx));
    } else {
        let exe = std::env::current_exe().context("cannot find my own executable")?;
        for index in 0..workers {
            let mut child = tokio::process::Command::new(&exe)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("cannot start a worker process")?;
            let mut stdin = child.stdin.take().context("worker stdin")?;
            let stdout = child.stdout.take().context("worker stdout")?;
            let mut line = serde_json::to_string(&plan.for_worker(index))?;
            line.push('\n');
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await?;
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<WorkerMsg>(&line) {
                        Ok(msg) => {
                            let _ = tx.send((index, Event::Msg(msg)));
                        }
                        Err(err) => eprintln!("ringcast-loadtest: worker {index} said something odd ({err}): {line}"),
                    }
                }
                let _ = tx.send((index, Event::Exited("stdout closed".into())));
            });
            controls.push(Control::Child(stdin));
            children.push(child);
        }
    }
    drop(tx);

    let mut agg = Aggregate::default();
    let mut watch = ServerWatch { pids, ..Default::default() };
    let mut barriers: HashMap<String, (usize, i64)> = HashMap::new();
    let mut finished = vec![false; workers];
    let mut metrics_before: Option<BTreeMap<String, f64>> = None;
    let mut metrics = MetricsSummary { endpoints: endpoints.iter().map(Endpoint::url).collect(), ..Default::default() };
    let mut after: Option<BTreeMap<String, f64>> = None;
    let progress = Progress::new(common.quiet);
    let start = Instant::now() + Duration::from_millis(200);
    let mut sampler = tokio::time::interval_at(start, Duration::from_secs(1));
    let limit = Duration::from_secs_f64(plan.scenario.connections() as f64 / plan.connect_rate)
        + Duration::from_millis(plan.duration_ms + plan.drain_ms + 2 * plan.connect_timeout_ms)
        + Duration::from_secs(120);
    let hard_deadline = Instant::now() + limit;
    watch.sample(0);
    let mut second_of_sampler = 0u32;
    let mut worker_errors = Vec::new();
    loop {
        tokio::select! {
            event = rx.recv() => {
                let Some((index, event)) = event else { break };
                match event {
                    Event::Msg(WorkerMsg::Tick(tick)) => {
                        if agg.absorb_tick(&tick, workers)? {
                            if let Some(second) = agg.seconds.get(&tick.second) {
                                progress.line(tick.second, second, &agg.latency);
                            }
                        }
                    }
                    Event::Msg(WorkerMsg::Barrier { name, open }) => {
                        let entry = barriers.entry(name.clone()).or_insert((0, 0));
                        entry.0 += 1;
                        entry.1 += open;
                        if entry.0 == workers {
                            let open_total = entry.1;
                            match name.as_str() {
                                "go" => {
                                    watch.rss_before = watch.rss();
                                    watch.cpu_go = watch.cpu();
                                    watch.t_go = Some(Instant::now());
                                    metrics_before = Some(scrape_all(&endpoints, &mut metrics.errors).await);
                                }
                                "stop" => {
                                    watch.rss_after = watch.rss();
                                    watch.rss_peak = watch.rss_peak.max(watch.rss_after);
                                    watch.cpu_stop = watch.cpu();
                                    watch.t_stop = Some(Instant::now());
                                    watch.open_at_stop = open_total;
                                    after = Some(scrape_all(&endpoints, &mut metrics.errors).await);
                                }
                                _ => {}
                            }
                            for control in &mut controls {
                                control.release(&name).await?;
                            }
                        }
                    }
                    Event::Msg(WorkerMsg::Final(fin)) => {
                        if let Some(error) = &fin.error {
                            worker_errors.push(format!("worker {index}: {error}"));
                        }
                        finished[index] = true;
                        agg.absorb_final(fin);
                        if finished.iter().all(|f| *f) {
                            break;
                        }
                    }
                    Event::Exited(how) => {
                        if !finished[index] {
                            bail!("worker {index} ended before reporting ({how})");
                        }
                    }
                }
            }
            _ = sampler.tick() => {
                watch.sample(second_of_sampler);
                second_of_sampler += 1;
            }
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            _ = tokio::time::sleep_until(hard_deadline) => bail!("the run exceeded its time limit of {limit:?}"),
        }
    }
    progress.done();
    for mut child in children {
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    }

    // The report.
    let counts = agg.counts.clone();
    let mut report = Report {
        tool: "ringcast-loadtest".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        scenario: plan.scenario.name().into(),
        mode: if plan.raw { "raw".into() } else { "ringcast".into() },
        command: std::env::args()
            .map(|a| if a.contains(' ') { format!("{a:?}") } else { a })
            .collect::<Vec<_>>()
            .join(" "),
        started_at_unix_ms: plan.start_at_unix_ms,
        machine: serde_json::json!({
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "processes": plan.worker_count,
            "threads_per_process": plan.threads,
        }),
        params: serde_json::to_value(&plan.scenario)?,
        targets: plan.urls.clone(),
        run: RunSummary::of(agg.run_window()),
        connections: ConnectionSummary {
            requested: agg.finals.iter().map(|f| f.connections_requested).sum(),
            connected: counts.connects_ok,
            failed: counts.connects_failed,
            peak_open: agg.peak_open(),
            connect_time_ms: Percentiles::of(&agg.connect),
        },
        latency_ms: Percentiles::of(&agg.latency),
        reply_ms: Percentiles::of(&agg.reply),
        violations: counts.violations,
        errors: counted_errors(&counts),
        counts,
        tallies: agg.tallies.clone(),
        harness_cpu_seconds: agg.finals.iter().map(|f| f.cpu_secs).sum::<f64>()
            + if workers > 1 { procfs::cpu_seconds(None).unwrap_or(0.0) } else { 0.0 },
        latency_buckets: latency_buckets(&agg.latency),
        latency_hdr: (!agg.latency.is_empty()).then(|| encode_hist(&agg.latency)),
        ..Default::default()
    };
    count_undelivered(&mut report, &plan.scenario, plan.raw);
    if !watch.pids.is_empty() {
        let secs = match (watch.t_go, watch.t_stop) {
            (Some(go), Some(stop)) => stop.duration_since(go).as_secs_f64(),
            _ => 0.0,
        };
        let cpu = (watch.cpu_stop - watch.cpu_go).max(0.0);
        report.server = Some(ServerSummary {
            pids: watch.pids.clone(),
            rss_before_bytes: watch.rss_before,
            rss_after_bytes: watch.rss_after,
            rss_peak_bytes: watch.rss_peak,
            // Only the connect scenario samples "before" ahead of its connections.
            rss_per_connection_bytes: (watch.open_at_stop > 0 && plan.scenario.name() == "connect")
                .then(|| (watch.rss_after as f64 - watch.rss_before as f64) / watch.open_at_stop as f64),
            connections_at_sample: watch.open_at_stop,
            cpu_seconds: cpu,
            cpu_avg_cores: if secs > 0.0 { cpu / secs } else { 0.0 },
            cpu_us_per_delivery: (report.run.delivered > 0)
                .then(|| cpu * 1e6 / (report.counts.delivered.max(report.run.delivered)) as f64),
        });
    }
    if !endpoints.is_empty() {
        if let (Some(before), Some(after)) = (&metrics_before, &after) {
            metrics.deltas = promscrape::deltas(before, after);
            metrics.deliveries = metrics.deltas.get("ringcast_deliveries_total").copied();
            metrics.frames_rendered = metrics.deltas.get("ringcast_frames_rendered_total").copied();
            if let (Some(d), Some(r)) = (metrics.deliveries, metrics.frames_rendered) {
                metrics.deliveries_per_render = (r > 0.0).then(|| d / r);
            }
            let acked = report.counts.acked as f64;
            metrics.renders_per_publish = metrics.frames_rendered.filter(|_| acked > 0.0).map(|r| r / acked);
        }
        report.metrics = Some(metrics);
    }
    report.timeline = agg
        .seconds
        .iter()
        .map(|(&t, s)| {
            let q = |p: f64| (!s.latency.is_empty()).then(|| s.latency.value_at_quantile(p) as f64 / 1000.0);
            let sample = watch.samples.get(&t);
            TimelinePoint {
                t,
                phase: s.phase.clone(),
                open: s.open,
                sent: s.counts.sent,
                acked: s.counts.acked,
                delivered: s.counts.delivered,
                errors: counted_errors(&s.counts),
                violations: s.counts.violations,
                p50_ms: q(0.5),
                p99_ms: q(0.99),
                max_ms: (!s.latency.is_empty()).then(|| s.latency.max() as f64 / 1000.0),
                server_rss_bytes: sample.map(|s| s.0),
                server_cpu_cores: sample.and_then(|s| s.1),
            }
        })
        .collect();
    for fin in &agg.finals {
        report.notes.extend(fin.notes.iter().cloned());
    }
    report.notes.extend(worker_errors.iter().cloned());
    if !worker_errors.is_empty() {
        report.notes.push("a worker failed: the run is incomplete".into());
    }
    Ok(report)
}

/// Fan-out's end-to-end check: every acknowledged publish must reach every other member of
/// its room (`subscribers + publishers - 1` connections) before the drain ends. A message
/// whose deliveries stop short leaves no gap in the seq check when it is among the last of
/// its room, so the shortfall is counted here as `undelivered` violations. Only for complete
/// runs: a failed connection or a close by the server explains a shortfall by itself.
fn count_undelivered(report: &mut Report, scenario: &Scenario, raw: bool) {
    let Scenario::Fanout { subscribers, publishers, .. } = scenario else { return };
    if raw || report.counts.connects_failed > 0 || !report.tallies.close_codes.is_empty() {
        return;
    }
    let expected = report.counts.acked * (subscribers + publishers - 1);
    let undelivered = expected.saturating_sub(report.counts.delivered);
    if undelivered > 0 {
        report.violations += undelivered;
        *report.tallies.violations.entry("undelivered".into()).or_default() += undelivered;
        report.notes.push(format!(
            "undelivered: {undelivered} of {expected} deliveries of acknowledged publishes never arrived"
        ));
    }
}

async fn scrape_all(endpoints: &[Endpoint], errors: &mut Vec<String>) -> BTreeMap<String, f64> {
    let mut sum: BTreeMap<String, f64> = BTreeMap::new();
    for endpoint in endpoints {
        match promscrape::scrape(endpoint).await {
            Ok(values) => {
                for (name, value) in values {
                    *sum.entry(name).or_insert(0.0) += value;
                }
            }
            Err(err) => errors.push(format!("{}: {err:#}", endpoint.url())),
        }
    }
    sum
}

/// Thresholds, output files, the table; returns the exit code.
fn finish(mut report: Report, common: &Common) -> Result<i32> {
    let thresholds = Thresholds {
        max_p99_ms: common.max_p99_ms,
        min_deliveries_per_sec: common.min_deliveries_per_sec,
        max_violations: common.max_violations,
        max_errors: common.max_errors,
    };
    report.checks = evaluate(&report, &thresholds);
    let incomplete = report.notes.iter().any(|n| n.contains("a worker failed"));
    report.passed = report.checks.iter().all(|c| c.passed) && !incomplete;
    print!("{}", report.table());
    let _ = std::io::stdout().flush();
    if let Some(path) = &common.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &common.html_out {
        std::fs::write(path, crate::html::render(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if incomplete {
        EXIT_ERROR
    } else if report.passed {
        EXIT_PASS
    } else {
        EXIT_THRESHOLD
    })
}

/// The live progress line on stderr.
struct Progress {
    quiet: bool,
    tty: bool,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        Progress { quiet, tty: std::io::stderr().is_terminal() }
    }

    fn line(&self, second: u32, s: &crate::report::Second, all: &hdrhistogram::Histogram<u64>) {
        if self.quiet {
            return;
        }
        let p99_all = if all.is_empty() {
            "-".to_string()
        } else {
            format!("{:.2}ms", all.value_at_quantile(0.99) as f64 / 1000.0)
        };
        let p99 = if s.latency.is_empty() {
            "-".to_string()
        } else {
            format!("{:.2}ms", s.latency.value_at_quantile(0.99) as f64 / 1000.0)
        };
        let rate = |n: u64| {
            if n >= 1_000_000 {
                format!("{:.2}M", n as f64 / 1e6)
            } else if n >= 10_000 {
                format!("{:.1}k", n as f64 / 1e3)
            } else {
                n.to_string()
            }
        };
        let text = format!(
            "[{:>4}s {:<8}] conns {:>6} | sent/s {:>7} | acked/s {:>7} | recv/s {:>7} | p99 {:>8} (all {}) | err {} | viol {}",
            second + 1,
            s.phase,
            s.open,
            rate(s.counts.sent),
            rate(s.counts.acked),
            rate(s.counts.delivered),
            p99,
            p99_all,
            counted_errors(&s.counts),
            s.counts.violations
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[K{text}");
        } else {
            let _ = writeln!(err, "{text}");
        }
        let _ = err.flush();
    }

    fn done(&self) {
        if self.tty && !self.quiet {
            eprintln!();
        }
    }
}

/// `ringcast-loadtest worker`: the plan on stdin's first line, barrier releases after it,
/// JSON lines on stdout.
pub fn worker_main() -> Result<i32> {
    let mut first = String::new();
    std::io::stdin().read_line(&mut first).context("reading the plan")?;
    let plan: Plan = serde_json::from_str(&first).context("bad plan")?;
    procfs::raise_nofile_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(plan.threads).enable_all().build()?;
    runtime.block_on(async move {
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<WorkerMsg>();
        let (rel_tx, rel_rx) = mpsc::unbounded_channel();
        let io = Arc::new(WorkerIo { out: out_tx, releases: tokio::sync::Mutex::new(rel_rx) });
        let writer = tokio::spawn(async move {
            let mut stdout = tokio::io::stdout();
            while let Some(msg) = out_rx.recv().await {
                let last = matches!(msg, WorkerMsg::Final(_));
                let mut line = serde_json::to_string(&msg).unwrap_or_default();
                line.push('\n');
                if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() || last {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if rel_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let fin = worker::run(plan, io).await;
        // The writer ends after writing the final message.
        let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
        Ok(if fin.error.is_some() { EXIT_ERROR } else { EXIT_PASS })
    })
}
