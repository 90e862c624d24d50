//! Results: the counters and tallies every worker keeps, the messages workers send to the
//! parent, their merging, the final [`Report`], threshold checks and the human table.
//!
//! This file holds the report itself; `counts`, `messages`, `merge` (the parent adding
//! up its workers), `hist` (latency histograms), `checks` (thresholds) and `table` the rest.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

mod checks;
mod counts;
mod hist;
mod merge;
mod messages;
mod table;

pub use checks::{counted_errors, evaluate, Check, Thresholds};
pub use counts::{bump, Counts, Tallies};
pub use hist::{decode_hist, encode_hist, latency_buckets, new_hist, HIST_MAX_US};
pub use merge::{phase_rank, Aggregate, Second};
pub use messages::{ChaosData, Final, RunWindow, Tick, WorkerMsg};

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
    /// Bytes the servers wrote (sockets included: /proc/PID/io `wchar`) per delivered
    /// message, between `go` and `stop`: the wire cost of a delivery, headers and all.
    #[serde(default)]
    pub written_bytes_per_delivery: Option<f64>,
    /// The servers' write system calls (write, writev) per delivered message.
    #[serde(default)]
    pub write_syscalls_per_delivery: Option<f64>,
    /// The servers' context switches (all threads) per delivered message: wake-ups.
    #[serde(default)]
    pub context_switches_per_delivery: Option<f64>,
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
    /// CPU of the harness's processes over the whole run, setup and teardown included.
    pub harness_cpu_seconds: f64,
    /// The harness's CPU between the `go` and `stop` barriers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness_window: Option<HarnessWindow>,
    pub metrics: Option<MetricsSummary>,
    pub timeline: Vec<TimelinePoint>,
    /// Latency histogram for plots: (upper bound in ms, count) on log-spaced buckets.
    pub latency_buckets: Vec<(f64, u64)>,
    /// The full latency histogram, HDR V2 base64, for re-analysis.
    pub latency_hdr: Option<String>,
    pub checks: Vec<Check>,
    pub passed: bool,
    pub notes: Vec<String>,
    /// The chaos scenario: faults, and violations by fault window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<ChaosReport>,
    /// The chaos worker's ledger findings, for the parent to merge (not reported as such).
    #[serde(skip)]
    pub chaos_data: Option<ChaosData>,
}

/// The harness's own CPU from `go` to `stop`: near one core per worker thread means the
/// generator, not the server, set the pace.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HarnessWindow {
    pub cpu_seconds: f64,
    pub cpu_avg_cores: f64,
    pub cpu_us_per_delivery: Option<f64>,
}

/// One injected fault.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FaultEvent {
    /// 1, 2, … in order.
    pub n: u32,
    /// `kill`, `drain`, `restart`, `partition`.
    pub kind: String,
    /// The node's id (`lt-1`, …).
    pub node: String,
    /// When it began, in seconds since the start of the run (the timeline's clock).
    pub at_s: f64,
    pub at_unix_ms: u64,
    /// From the fault's start until the node runs (or is reconnected) again.
    pub down_ms: u64,
    /// From the fault's start until every node is ready with the whole cluster in view.
    pub whole_after_ms: Option<u64>,
    /// From the fault's start until every room had an acknowledged publish again (the
    /// slowest room).
    pub first_ack_after_ms: Option<u64>,
    /// Violations whose time falls between this fault and the next, by kind.
    pub violations: BTreeMap<String, u64>,
    /// What went wrong injecting it (the run stops injecting after such a fault).
    pub error: Option<String>,
    /// Something odd that did not stop the run (e.g. the drained node's exit status).
    pub note: Option<String>,
}

/// The chaos section of the report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChaosReport {
    pub nodes: usize,
    /// `memory`, or the Redis URL the nodes used.
    pub store: String,
    /// Where the nodes ran: `loopback` or `netns`.
    pub network: String,
    pub faults_enabled: Vec<String>,
    /// Faults that could not be used, with the reason (`partition skipped: …`).
    pub skipped: Vec<String>,
    pub faults: Vec<FaultEvent>,
    pub min_faults: u64,
    /// Violations before the first fault, by kind.
    pub violations_before_faults: BTreeMap<String, u64>,
    /// Violations per second of the timeline (undelivered ones at their publish's ack).
    pub violations_by_second: BTreeMap<u32, u64>,
    pub acked_checked: u64,
    pub owed: u64,
    pub undelivered: u64,
    pub undelivered_examples: Vec<String>,
    pub resets_received: u64,
    pub reconnects: u64,
    /// Every node process started (first starts and restarts).
    pub pids_started: Vec<u32>,
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
