//! The [`Report`] of a run, assembled from what `collect` gathered.

use anyhow::Result;

use super::collect::Collected;
use super::servers::{metrics_deltas, ServerWatch};
use crate::plan::{Plan, Scenario};
use crate::procfs;
use crate::report::{
    counted_errors, encode_hist, latency_buckets, Aggregate, ConnectionSummary, Percentiles, Report, RunSummary,
    TimelinePoint,
};

/// The report: the merged counts and latencies, the servers, their metrics, the timeline
/// and the notes.
pub fn report(plan: &Plan, collected: Collected) -> Result<Report> {
    let Collected { agg, watch, mut metrics, metrics_before, metrics_after, worker_errors } = collected;
    let mut report = merged(plan, &agg)?;
    count_undelivered(&mut report, &plan.scenario, plan.raw);
    if !watch.pids.is_empty() {
        report.server = Some(watch.summary(&plan.scenario, &report));
    }
    report.harness_window = watch.harness_window(&report);
    if !metrics.endpoints.is_empty() {
        if let (Some(before), Some(after)) = (&metrics_before, &metrics_after) {
            metrics_deltas(&mut metrics, before, after, report.counts.acked);
        }
        report.metrics = Some(metrics);
    }
    report.timeline = timeline(&agg, &watch);
    for fin in &agg.finals {
        report.notes.extend(fin.notes.iter().cloned());
        if fin.chaos.is_some() {
            report.chaos_data = fin.chaos.clone();
        }
    }
    report.notes.extend(worker_errors.iter().cloned());
    if !worker_errors.is_empty() {
        report.notes.push("a worker failed: the run is incomplete".into());
    }
    Ok(report)
}

/// The report's header and what the workers' messages add up to.
fn merged(plan: &Plan, agg: &Aggregate) -> Result<Report> {
    let counts = agg.counts.clone();
    Ok(Report {
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
            + if plan.worker_count > 1 { procfs::cpu_seconds(None).unwrap_or(0.0) } else { 0.0 },
        latency_buckets: latency_buckets(&agg.latency),
        latency_hdr: (!agg.latency.is_empty()).then(|| encode_hist(&agg.latency)),
        ..Default::default()
    })
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

/// One point a second: the merged counters and latencies, and the servers' sample.
fn timeline(agg: &Aggregate, watch: &ServerWatch) -> Vec<TimelinePoint> {
    agg.seconds
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
        .collect()
}
