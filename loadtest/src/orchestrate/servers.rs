//! What the parent watches on the servers: their RSS and CPU from `/proc` (every second
//! and at the `go` and `stop` barriers) and their Prometheus counters; and the harness's
//! own CPU between the barriers, so a saturated generator shows.

use std::collections::BTreeMap;

use tokio::time::Instant;

use crate::plan::Scenario;
use crate::procfs;
use crate::promscrape::{self, Endpoint};
use crate::report::{HarnessWindow, MetricsSummary, Report, ServerSummary};
use crate::urls::Target;

/// What the parent learned about the servers around the barriers.
#[derive(Default)]
pub struct ServerWatch {
    pub pids: Vec<u32>,
    rss_before: u64,
    rss_after: u64,
    rss_peak: u64,
    open_at_stop: i64,
    cpu_go: f64,
    cpu_stop: f64,
    written_go: u64,
    written_stop: u64,
    /// (write system calls, context switches) of the servers at `go` and at `stop`.
    kernel_go: (u64, u64),
    kernel_stop: (u64, u64),
    t_go: Option<Instant>,
    t_stop: Option<Instant>,
    pub samples: BTreeMap<u32, (u64, Option<f64>)>,
    last_cpu: Option<(Instant, f64)>,
    /// The harness's processes (this one and its workers) and their CPU at `go` and `stop`.
    harness_pids: Vec<u32>,
    harness_cpu_go: f64,
    harness_cpu_stop: f64,
}

impl ServerWatch {
    pub fn new(pids: Vec<u32>, harness_pids: Vec<u32>) -> ServerWatch {
        ServerWatch { pids, harness_pids, ..Default::default() }
    }

    fn harness_cpu(&self) -> f64 {
        self.harness_pids.iter().filter_map(|&pid| procfs::cpu_seconds(Some(pid))).sum()
    }

    /// Seconds from `go` to `stop`; 0 when either barrier was not reached.
    fn window_secs(&self) -> f64 {
        match (self.t_go, self.t_stop) {
            (Some(go), Some(stop)) => stop.duration_since(go).as_secs_f64(),
            _ => 0.0,
        }
    }

    /// The harness's CPU from `go` to `stop`: the load itself, without connecting and
    /// joining before it or closing after it.
    pub fn harness_window(&self, report: &Report) -> Option<HarnessWindow> {
        let secs = self.window_secs();
        if self.harness_pids.is_empty() || secs <= 0.0 {
            return None;
        }
        let cpu = (self.harness_cpu_stop - self.harness_cpu_go).max(0.0);
        Some(HarnessWindow {
            cpu_seconds: cpu,
            cpu_avg_cores: cpu / secs,
            cpu_us_per_delivery: per_delivery(report, cpu * 1e6),
        })
    }

    fn rss(&self) -> u64 {
        self.pids.iter().filter_map(|&pid| procfs::rss_bytes(pid)).sum()
    }

    fn written(&self) -> u64 {
        self.pids.iter().filter_map(|&pid| procfs::written_bytes(pid)).sum()
    }

    fn cpu(&self) -> f64 {
        self.pids.iter().filter_map(|&pid| procfs::cpu_seconds(Some(pid))).sum()
    }

    fn kernel(&self) -> (u64, u64) {
        let writes = self.pids.iter().filter_map(|&pid| procfs::write_syscalls(pid)).sum();
        let switches = self.pids.iter().filter_map(|&pid| procfs::context_switches(pid)).sum();
        (writes, switches)
    }

    pub fn sample(&mut self, second: u32) {
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

    /// Every worker reached `go`: the "before" sample.
    pub fn at_go(&mut self) {
        self.rss_before = self.rss();
        self.cpu_go = self.cpu();
        self.written_go = self.written();
        self.kernel_go = self.kernel();
        self.harness_cpu_go = self.harness_cpu();
        self.t_go = Some(Instant::now());
    }

    /// Every worker reached `stop` with `open_total` connections open: the "after" sample.
    pub fn at_stop(&mut self, open_total: i64) {
        self.rss_after = self.rss();
        self.rss_peak = self.rss_peak.max(self.rss_after);
        self.cpu_stop = self.cpu();
        self.written_stop = self.written();
        self.kernel_stop = self.kernel();
        self.harness_cpu_stop = self.harness_cpu();
        self.t_stop = Some(Instant::now());
        self.open_at_stop = open_total;
    }

    /// The servers' part of the report (`report` has its counts already).
    pub fn summary(&self, scenario: &Scenario, report: &Report) -> ServerSummary {
        let secs = self.window_secs();
        let cpu = (self.cpu_stop - self.cpu_go).max(0.0);
        ServerSummary {
            pids: self.pids.clone(),
            rss_before_bytes: self.rss_before,
            rss_after_bytes: self.rss_after,
            rss_peak_bytes: self.rss_peak,
            // Only the connect scenario samples "before" ahead of its connections.
            rss_per_connection_bytes: (self.open_at_stop > 0 && scenario.name() == "connect")
                .then(|| (self.rss_after as f64 - self.rss_before as f64) / self.open_at_stop as f64),
            connections_at_sample: self.open_at_stop,
            cpu_seconds: cpu,
            cpu_avg_cores: if secs > 0.0 { cpu / secs } else { 0.0 },
            cpu_us_per_delivery: per_delivery(report, cpu * 1e6),
            written_bytes_per_delivery: per_delivery(report, self.written_stop.saturating_sub(self.written_go) as f64)
                .filter(|_| self.written_stop > 0),
            write_syscalls_per_delivery: per_delivery(
                report,
                self.kernel_stop.0.saturating_sub(self.kernel_go.0) as f64,
            ),
            context_switches_per_delivery: per_delivery(
                report,
                self.kernel_stop.1.saturating_sub(self.kernel_go.1) as f64,
            ),
        }
    }
}

/// `amount` per delivered frame; none when nothing was delivered in the measured window.
fn per_delivery(report: &Report, amount: f64) -> Option<f64> {
    (report.run.delivered > 0).then(|| amount / report.counts.delivered.max(report.run.delivered) as f64)
}

/// The `/metrics` endpoints of the targets, one per address.
pub fn metrics_endpoints(targets: &[Target]) -> Vec<Endpoint> {
    let mut endpoints: Vec<Endpoint> = Vec::new();
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
    endpoints
}

pub async fn scrape_all(endpoints: &[Endpoint], errors: &mut Vec<String>) -> BTreeMap<String, f64> {
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

/// Fills in what the servers' counters say between `before` and `after` the run.
pub fn metrics_deltas(
    metrics: &mut MetricsSummary,
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    acked: u64,
) {
    metrics.deltas = promscrape::deltas(before, after);
    metrics.deliveries = metrics.deltas.get("ringcast_deliveries_total").copied();
    metrics.frames_rendered = metrics.deltas.get("ringcast_frames_rendered_total").copied();
    if let (Some(d), Some(r)) = (metrics.deliveries, metrics.frames_rendered) {
        metrics.deliveries_per_render = (r > 0.0).then(|| d / r);
    }
    let acked = acked as f64;
    metrics.renders_per_publish = metrics.frames_rendered.filter(|_| acked > 0.0).map(|r| r / acked);
}
