//! Results: the counters and tallies every worker keeps, the messages workers send to the
//! parent, their merging, the final [`Report`], threshold checks and the human table.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

mod table;

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, 3 significant digits.
pub const HIST_MAX_US: u64 = 600_000_000;

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

/// HDR V2 serialization, base64: how histograms travel from workers to the parent.
pub fn encode_hist(hist: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2Serializer::new().serialize(hist, &mut bytes).expect("serializing into a Vec cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn decode_hist(text: &str) -> Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).context("histogram is not base64")?;
    let hist: Histogram<u64> =
        Deserializer::new().deserialize(&mut &bytes[..]).map_err(|e| anyhow::anyhow!("bad histogram: {e:?}"))?;
    Ok(hist)
}

fn add_hist(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    // Both come from new_hist(): same bounds; values beyond them are clamped on record.
    let _ = into.add(from);
}

macro_rules! counts {
    ($($(#[$doc:meta])* $field:ident),* $(,)?) => {
        /// Monotonic counters of a worker (or of the whole run once merged).
        #[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct Counts { $($(#[$doc])* pub $field: u64,)* }
        impl Counts {
            pub fn add(&mut self, other: &Counts) { $(self.$field += other.$field;)* }
        }
    };
}

counts! {
    /// Connections established (upgrade done, `connected` received).
    connects_ok,
    connects_failed,
    /// Connections closed by the harness on purpose (churn).
    disconnects,
    /// Publishes sent (`chat.send`, or raw text frames).
    sent,
    /// `chat.send` acks received.
    acked,
    /// Requests sent (every type, publishes included).
    ops_sent,
    /// Requests answered (ack or typed reply such as `presence.pong`).
    ops_answered,
    /// `chat.message` (or raw) frames received, replays included.
    delivered,
    /// Of those, `recovered:true` replays.
    recovered_messages,
    /// `error` frames received (all codes).
    errors,
    /// Of those, `unsupported`.
    errors_unsupported,
    violations,
    /// Close frames received from the server.
    closes_received,
    /// Connections that ended without a close frame from the server while still in use.
    dropped,
    /// Rejoins with `since`, by outcome.
    recovered_true,
    recovered_false,
    /// Every frame received.
    frames,
}

/// Counters by label.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tallies {
    pub errors_by_code: BTreeMap<String, u64>,
    /// `type:code`, e.g. `chat.typing:unsupported`.
    pub errors_by_request: BTreeMap<String, u64>,
    /// Request types answered `unsupported` (what the server does not serve yet).
    pub unsupported_by_type: BTreeMap<String, u64>,
    pub requests_by_type: BTreeMap<String, u64>,
    pub answered_by_type: BTreeMap<String, u64>,
    pub close_codes: BTreeMap<String, u64>,
    pub violations: BTreeMap<String, u64>,
    pub connect_failures: BTreeMap<String, u64>,
    /// Frames received by `type` (`chat.message` excluded: see `delivered`).
    pub frames_by_type: BTreeMap<String, u64>,
}

fn add_map(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (key, value) in from {
        *into.entry(key.clone()).or_default() += value;
    }
}

pub fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(value) => *value += 1,
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

impl Tallies {
    pub fn add(&mut self, other: &Tallies) {
        add_map(&mut self.errors_by_code, &other.errors_by_code);
        add_map(&mut self.errors_by_request, &other.errors_by_request);
        add_map(&mut self.unsupported_by_type, &other.unsupported_by_type);
        add_map(&mut self.requests_by_type, &other.requests_by_type);
        add_map(&mut self.answered_by_type, &other.answered_by_type);
        add_map(&mut self.close_codes, &other.close_codes);
        add_map(&mut self.violations, &other.violations);
        add_map(&mut self.connect_failures, &other.connect_failures);
        add_map(&mut self.frames_by_type, &other.frames_by_type);
    }

    pub fn is_empty(&self) -> bool {
        *self == Tallies::default()
    }
}

// === worker → parent messages ===

/// One second of a worker: deltas of the counters and the latencies recorded in it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tick {
    pub second: u32,
    pub phase: String,
    /// Open connections at the end of the second (a gauge, not a delta).
    pub open: i64,
    pub counts: Counts,
    #[serde(default, skip_serializing_if = "Tallies::is_empty")]
    pub tallies: Tallies,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<String>,
}

/// Totals of the measured window (from the start barrier to the end of sending).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RunWindow {
    pub secs: f64,
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
}

/// The last message of a worker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Final {
    pub run: RunWindow,
    pub cpu_secs: f64,
    pub connections_requested: u64,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkerMsg {
    Tick(Box<Tick>),
    /// The worker waits at this barrier until the parent releases it; `open` is its number
    /// of open connections at that moment.
    Barrier {
        name: String,
        #[serde(default)]
        open: i64,
    },
    Final(Final),
}

// === merging ===

/// One second of the whole run.
#[derive(Debug, Clone)]
pub struct Second {
    pub phase: String,
    pub open: i64,
    pub counts: Counts,
    pub latency: Histogram<u64>,
    pub reported: usize,
}

/// Everything the parent merges from its workers.
#[derive(Debug)]
pub struct Aggregate {
    pub counts: Counts,
    pub tallies: Tallies,
    pub latency: Histogram<u64>,
    pub reply: Histogram<u64>,
    pub connect: Histogram<u64>,
    pub seconds: BTreeMap<u32, Second>,
    pub finals: Vec<Final>,
}

impl Default for Aggregate {
    fn default() -> Self {
        Aggregate {
            counts: Counts::default(),
            tallies: Tallies::default(),
            latency: new_hist(),
            reply: new_hist(),
            connect: new_hist(),
            seconds: BTreeMap::new(),
            finals: Vec::new(),
        }
    }
}

impl Aggregate {
    /// Adds one worker's second; returns true when every one of `workers` has reported it.
    pub fn absorb_tick(&mut self, tick: &Tick, workers: usize) -> Result<bool> {
        self.counts.add(&tick.counts);
        self.tallies.add(&tick.tallies);
        let latency = tick.latency.as_deref().map(decode_hist).transpose()?;
        if let Some(hist) = &latency {
            add_hist(&mut self.latency, hist);
        }
        if let Some(hist) = tick.reply.as_deref().map(decode_hist).transpose()? {
            add_hist(&mut self.reply, &hist);
        }
        if let Some(hist) = tick.connect.as_deref().map(decode_hist).transpose()? {
            add_hist(&mut self.connect, &hist);
        }
        let second = self.seconds.entry(tick.second).or_insert_with(|| Second {
            phase: tick.phase.clone(),
            open: 0,
            counts: Counts::default(),
            latency: new_hist(),
            reported: 0,
        });
        second.open += tick.open;
        second.counts.add(&tick.counts);
        if let Some(hist) = &latency {
            add_hist(&mut second.latency, hist);
        }
        // The most advanced phase wins ("run" over "setup").
        if phase_rank(&tick.phase) > phase_rank(&second.phase) {
            second.phase = tick.phase.clone();
        }
        second.reported += 1;
        Ok(second.reported >= workers)
    }

    pub fn absorb_final(&mut self, fin: Final) {
        self.finals.push(fin);
    }

    /// The measured window of the whole run: counts add up, the window is the longest.
    pub fn run_window(&self) -> RunWindow {
        let mut run = RunWindow::default();
        for fin in &self.finals {
            run.secs = run.secs.max(fin.run.secs);
            run.sent += fin.run.sent;
            run.acked += fin.run.acked;
            run.delivered += fin.run.delivered;
        }
        run
    }

    pub fn peak_open(&self) -> i64 {
        self.seconds.values().map(|s| s.open).max().unwrap_or(0)
    }
}

pub fn phase_rank(phase: &str) -> u8 {
    match phase {
        "setup" => 0,
        "ramp" => 1,
        "run" | "hold" => 2,
        "drain" => 3,
        "teardown" => 4,
        _ => 0,
    }
}

// === the report ===

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(hist: &Histogram<u64>) -> Percentiles {
        if hist.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: hist.len(),
            mean: hist.mean() / 1000.0,
            p50: ms(hist.value_at_quantile(0.50)),
            p90: ms(hist.value_at_quantile(0.90)),
            p99: ms(hist.value_at_quantile(0.99)),
            p999: ms(hist.value_at_quantile(0.999)),
            max: ms(hist.max()),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunSummary {
    pub secs: f64,
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    pub publishes_sent_per_sec: f64,
    pub publishes_acked_per_sec: f64,
    pub deliveries_per_sec: f64,
}

impl RunSummary {
    pub fn of(run: RunWindow) -> RunSummary {
        let per = |n: u64| if run.secs > 0.0 { n as f64 / run.secs } else { 0.0 };
        RunSummary {
            secs: run.secs,
            sent: run.sent,
            acked: run.acked,
            delivered: run.delivered,
            publishes_sent_per_sec: per(run.sent),
            publishes_acked_per_sec: per(run.acked),
            deliveries_per_sec: per(run.delivered),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectionSummary {
    pub requested: u64,
    pub connected: u64,
    pub failed: u64,
    pub peak_open: i64,
    pub connect_time_ms: Percentiles,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerSummary {
    pub pids: Vec<u32>,
    /// Sum over the servers' RSS before the run (bytes).
    pub rss_before_bytes: u64,
    /// RSS at the end of the run (before the harness closes its connections).
    pub rss_after_bytes: u64,
    pub rss_peak_bytes: u64,
    /// (after − before) / connections open at that moment.
    pub rss_per_connection_bytes: Option<f64>,
    pub connections_at_sample: i64,
    /// CPU time the servers used during the run (user + system).
    pub cpu_seconds: f64,
    pub cpu_avg_cores: f64,
    /// Server CPU per delivered message, in microseconds (run and drain).
    pub cpu_us_per_delivery: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MetricsSummary {
    pub endpoints: Vec<String>,
    /// Delta of each counter (summed over label sets and nodes) between the start and the
    /// end of the run.
    pub deltas: BTreeMap<String, f64>,
    pub deliveries: Option<f64>,
    pub frames_rendered: Option<f64>,
    /// Deliveries per rendered frame: ≈ subscribers per publish when a broadcast is
    /// rendered once.
    pub deliveries_per_render: Option<f64>,
    /// Frames the servers rendered per acknowledged publish (the message, its ack, and any
    /// other frame rendered meanwhile): stays near 2 however many subscribers a room has.
    pub renders_per_publish: Option<f64>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TimelinePoint {
    pub t: u32,
    pub phase: String,
    pub open: i64,
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    pub errors: u64,
    pub violations: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub server_rss_bytes: Option<u64>,
    pub server_cpu_cores: Option<f64>,
}

/// One threshold and how the run did against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub limit: f64,
    pub actual: Option<f64>,
    pub passed: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Thresholds {
    pub max_p99_ms: Option<f64>,
    pub min_deliveries_per_sec: Option<f64>,
    pub max_violations: u64,
    pub max_errors: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    pub scenario: String,
    /// `ringcast` or `raw`.
    pub mode: String,
    pub command: String,
    pub started_at_unix_ms: u64,
    pub machine: serde_json::Value,
    pub params: serde_json::Value,
    pub targets: Vec<String>,
    pub run: RunSummary,
    pub connections: ConnectionSummary,
    /// End-to-end latency of delivered messages (receive time − send time in the payload).
    pub latency_ms: Percentiles,
    /// Request → ack/reply round trips.
    pub reply_ms: Percentiles,
    pub counts: Counts,
    pub tallies: Tallies,
    pub violations: u64,
    /// Errors that count against `--max-errors`: error replies other than `unsupported`,
    /// plus failed connects.
    pub errors: u64,
    pub server: Option<ServerSummary>,
    pub harness_cpu_seconds: f64,
    pub metrics: Option<MetricsSummary>,
    pub timeline: Vec<TimelinePoint>,
    /// Latency histogram for plots: (upper bound in ms, count) on log-spaced buckets.
    pub latency_buckets: Vec<(f64, u64)>,
    /// The full latency histogram, HDR V2 base64, for re-analysis.
    pub latency_hdr: Option<String>,
    pub checks: Vec<Check>,
    pub passed: bool,
    pub notes: Vec<String>,
}

/// Log-spaced buckets (4 per factor of 10) from 10 µs to the max.
pub fn latency_buckets(hist: &Histogram<u64>) -> Vec<(f64, u64)> {
    if hist.is_empty() {
        return Vec::new();
    }
    let max = hist.max();
    let mut uppers = Vec::new();
    let mut upper = 10f64;
    loop {
        uppers.push(upper.round() as u64);
        if upper.round() as u64 > max {
            break;
        }
        upper *= 10f64.powf(0.25);
    }
    let mut counts = vec![0u64; uppers.len()];
    for value in hist.iter_recorded() {
        let v = value.value_iterated_to();
        let index = uppers.iter().position(|&u| v < u).unwrap_or(uppers.len() - 1);
        counts[index] += value.count_at_value();
    }
    uppers.iter().zip(counts).map(|(&u, c)| (u as f64 / 1000.0, c)).collect()
}

/// Evaluates the thresholds against a report.
pub fn evaluate(report: &Report, thresholds: &Thresholds) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Some(limit) = thresholds.max_p99_ms {
        let actual = (report.latency_ms.count > 0).then_some(report.latency_ms.p99);
        checks.push(Check { name: "max_p99_ms".into(), limit, actual, passed: actual.is_some_and(|p99| p99 <= limit) });
    }
    if let Some(limit) = thresholds.min_deliveries_per_sec {
        let actual = report.run.deliveries_per_sec;
        checks.push(Check {
            name: "min_deliveries_per_sec".into(),
            limit,
            actual: Some(actual),
            passed: actual >= limit,
        });
    }
    checks.push(Check {
        name: "max_violations".into(),
        limit: thresholds.max_violations as f64,
        actual: Some(report.violations as f64),
        passed: report.violations <= thresholds.max_violations,
    });
    if let Some(limit) = thresholds.max_errors {
        checks.push(Check {
            name: "max_errors".into(),
            limit: limit as f64,
            actual: Some(report.errors as f64),
            passed: report.errors <= limit,
        });
    }
    checks
}

/// Errors counted against `--max-errors`.
pub fn counted_errors(counts: &Counts) -> u64 {
    counts.errors.saturating_sub(counts.errors_unsupported) + counts.connects_failed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist_of(values: &[u64]) -> Histogram<u64> {
        let mut hist = new_hist();
        for &v in values {
            hist.record(v).unwrap();
        }
        hist
    }

    #[test]
    fn test_hist_round_trip() {
        let hist = hist_of(&[10, 20, 30, 1_000_000]);
        let back = decode_hist(&encode_hist(&hist)).unwrap();
        assert_eq!(back.len(), 4);
        assert_eq!(back.max(), hist.max());
        assert!(decode_hist("!!").is_err());
    }

    #[test]
    fn test_merge_two_workers() {
        let mut agg = Aggregate::default();
        let tick = |delivered: u64, values: &[u64], phase: &str| Tick {
            second: 0,
            phase: phase.into(),
            open: 10,
            counts: Counts { delivered, sent: 1, ..Default::default() },
            tallies: Tallies {
                errors_by_code: [("forbidden".to_string(), 1)].into_iter().collect(),
                ..Default::default()
            },
            latency: Some(encode_hist(&hist_of(values))),
            reply: None,
            connect: None,
        };
        assert!(!agg.absorb_tick(&tick(5, &[100, 200], "setup"), 2).unwrap());
        assert!(agg.absorb_tick(&tick(7, &[300, 5000], "run"), 2).unwrap());
        assert_eq!(agg.counts.delivered, 12);
        assert_eq!(agg.counts.sent, 2);
        assert_eq!(agg.tallies.errors_by_code["forbidden"], 2);
        assert_eq!(agg.latency.len(), 4);
        let second = &agg.seconds[&0];
        assert_eq!(second.open, 20);
        assert_eq!(second.phase, "run");
        assert_eq!(second.latency.len(), 4);
        assert!((Percentiles::of(&agg.latency).max - 5.0).abs() < 0.01);
        agg.absorb_final(Final {
            run: RunWindow { secs: 2.0, sent: 10, acked: 9, delivered: 100 },
            ..Default::default()
        });
        agg.absorb_final(Final {
            run: RunWindow { secs: 2.5, sent: 10, acked: 10, delivered: 50 },
            ..Default::default()
        });
        let run = agg.run_window();
        assert_eq!(run, RunWindow { secs: 2.5, sent: 20, acked: 19, delivered: 150 });
        assert_eq!(RunSummary::of(run).deliveries_per_sec, 60.0);
    }

    #[test]
    fn test_worker_msg_json() {
        let msg = WorkerMsg::Barrier { name: "go".into(), open: 3 };
        let text = serde_json::to_string(&msg).unwrap();
        assert_eq!(text, r#"{"kind":"barrier","name":"go","open":3}"#);
        let tick = WorkerMsg::Tick(Box::new(Tick { second: 3, ..Default::default() }));
        let back: WorkerMsg = serde_json::from_str(&serde_json::to_string(&tick).unwrap()).unwrap();
        assert!(matches!(back, WorkerMsg::Tick(ref t) if t.second == 3));
    }

    fn report_with(p99: f64, count: u64, dps: f64, violations: u64, errors: u64) -> Report {
        Report {
            latency_ms: Percentiles { count, p99, ..Default::default() },
            run: RunSummary { deliveries_per_sec: dps, ..Default::default() },
            violations,
            errors,
            ..Default::default()
        }
    }

    #[test]
    fn test_thresholds() {
        let th = Thresholds {
            max_p99_ms: Some(10.0),
            min_deliveries_per_sec: Some(1000.0),
            max_violations: 0,
            max_errors: Some(5),
        };
        let ok = evaluate(&report_with(9.0, 100, 2000.0, 0, 5), &th);
        assert!(ok.iter().all(|c| c.passed), "{ok:?}");
        let bad = evaluate(&report_with(11.0, 100, 999.0, 1, 6), &th);
        assert_eq!(bad.iter().filter(|c| !c.passed).count(), 4);
        // No latency samples at all fails a p99 gate rather than passing it vacuously.
        let empty = evaluate(&report_with(0.0, 0, 2000.0, 0, 0), &th);
        assert!(!empty.iter().find(|c| c.name == "max_p99_ms").unwrap().passed);
        // The violation gate is always on (default 0).
        let default = evaluate(&report_with(0.0, 0, 0.0, 1, 0), &Thresholds::default());
        assert_eq!(default.len(), 1);
        assert!(!default[0].passed);
    }

    #[test]
    fn test_counted_errors_exclude_unsupported() {
        let counts = Counts { errors: 10, errors_unsupported: 7, connects_failed: 2, ..Default::default() };
        assert_eq!(counted_errors(&counts), 5);
    }

    #[test]
    fn test_buckets_cover_all() {
        let hist = hist_of(&[5, 50, 500, 5000, 50_000]);
        let buckets = latency_buckets(&hist);
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 5);
    }
}
