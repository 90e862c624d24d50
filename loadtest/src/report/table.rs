//! The human table printed at the end of a run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::*;

fn fmt_rate(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2} M", value / 1e6)
    } else if value >= 1e4 {
        format!("{:.1} k", value / 1e3)
    } else {
        format!("{value:.1}")
    }
}

fn fmt_bytes(value: f64) -> String {
    if value.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", value / (1024.0 * 1024.0))
    } else if value.abs() >= 1024.0 {
        format!("{:.2} KiB", value / 1024.0)
    } else {
        format!("{value:.0} B")
    }
}

fn fmt_pct(p: &Percentiles) -> String {
    if p.count == 0 {
        return "-".into();
    }
    format!(
        "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3} ms  (n={})",
        p.p50, p.p90, p.p99, p.p999, p.max, p.count
    )
}

fn fmt_map(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "-".into();
    }
    map.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

impl Report {
    /// The human table printed at the end.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut row = |name: &str, value: String| {
            let _ = writeln!(out, "  {name:<26} {value}");
        };
        row("scenario", format!("{} ({})", self.scenario, self.mode));
        row("targets", self.targets.join(" "));
        row("measured window", format!("{:.2} s", self.run.secs));
        row(
            "connections",
            format!(
                "{} requested, {} connected, {} failed, peak open {}",
                self.connections.requested,
                self.connections.connected,
                self.connections.failed,
                self.connections.peak_open
            ),
        );
        row("connect time", fmt_pct(&self.connections.connect_time_ms));
        row("publishes sent/s", fmt_rate(self.run.publishes_sent_per_sec));
        row("publishes acked/s", fmt_rate(self.run.publishes_acked_per_sec));
        row("deliveries/s", fmt_rate(self.run.deliveries_per_sec));
        row(
            "totals",
            format!(
                "sent {}  acked {}  delivered {}  requests {}  answered {}",
                self.counts.sent,
                self.counts.acked,
                self.counts.delivered,
                self.counts.ops_sent,
                self.counts.ops_answered
            ),
        );
        row("delivery latency", fmt_pct(&self.latency_ms));
        row("reply latency", fmt_pct(&self.reply_ms));
        row("violations", format!("{}  {}", self.violations, fmt_map(&self.tallies.violations)));
        row("errors (counted)", self.errors.to_string());
        row("errors by code", fmt_map(&self.tallies.errors_by_code));
        row("unsupported by type", fmt_map(&self.tallies.unsupported_by_type));
        row("connect failures", fmt_map(&self.tallies.connect_failures));
        row("close codes received", fmt_map(&self.tallies.close_codes));
        if self.counts.recovered_true + self.counts.recovered_false > 0 {
            row(
                "rejoins with since",
                format!(
                    "recovered=true {}  recovered=false {}  replayed messages {}",
                    self.counts.recovered_true, self.counts.recovered_false, self.counts.recovered_messages
                ),
            );
        }
        if !self.tallies.frames_by_type.is_empty() {
            row("other frames", fmt_map(&self.tallies.frames_by_type));
        }
        if let Some(server) = &self.server {
            row(
                "server RSS",
                format!(
                    "before {}  after {}  peak {}",
                    fmt_bytes(server.rss_before_bytes as f64),
                    fmt_bytes(server.rss_after_bytes as f64),
                    fmt_bytes(server.rss_peak_bytes as f64)
                ),
            );
            if let Some(per) = server.rss_per_connection_bytes {
                row(
                    "server RSS / connection",
                    format!("{} ({} connections)", fmt_bytes(per), server.connections_at_sample),
                );
            }
            row(
                "server CPU",
                format!(
                    "{:.1} s ({:.2} cores avg){}",
                    server.cpu_seconds,
                    server.cpu_avg_cores,
                    server.cpu_us_per_delivery.map(|us| format!(", {us:.3} µs per delivery")).unwrap_or_default()
                ),
            );
            if let Some(bytes) = server.written_bytes_per_delivery {
                row("server writes", format!("{bytes:.0} bytes per delivery"));
            }
        }
        if let Some(server) = &self.server {
            if let (Some(writes), Some(switches)) =
                (server.write_syscalls_per_delivery, server.context_switches_per_delivery)
            {
                row(
                    "server kernel",
                    format!("{writes:.2} write syscalls, {switches:.2} context switches per delivery"),
                );
            }
        }
        let window = self.harness_window.as_ref().map(|w| {
            format!(
                "; {:.1} s in the run ({:.2} cores{})",
                w.cpu_seconds,
                w.cpu_avg_cores,
                w.cpu_us_per_delivery.map(|us| format!(", {us:.3} µs per delivery")).unwrap_or_default()
            )
        });
        row("harness CPU", format!("{:.1} s{}", self.harness_cpu_seconds, window.unwrap_or_default()));
        if let Some(metrics) = &self.metrics {
            if let (Some(deliveries), Some(rendered)) = (metrics.deliveries, metrics.frames_rendered) {
                row(
                    "server metrics",
                    format!(
                        "deliveries {deliveries:.0}  frames rendered {rendered:.0}  deliveries/render {}  renders/publish {}",
                        metrics.deliveries_per_render.map(|r| format!("{r:.1}")).unwrap_or("-".into()),
                        metrics.renders_per_publish.map(|r| format!("{r:.2}")).unwrap_or("-".into())
                    ),
                );
            }
            let peers: Vec<String> = metrics
                .deltas
                .iter()
                .filter(|(k, _)| k.starts_with("ringcast_peer_"))
                .map(|(k, v)| format!("{k}={v:.0}"))
                .collect();
            if !peers.is_empty() {
                row("peer metrics", peers.join(", "));
            }
            for error in &metrics.errors {
                row("metrics", error.clone());
            }
        }
        if let Some(chaos) = &self.chaos {
            row(
                "chaos",
                format!(
                    "{} nodes ({}, {}), {} faults, {} room.reset, {} reconnects",
                    chaos.nodes,
                    chaos.network,
                    chaos.store,
                    chaos.faults.len(),
                    chaos.resets_received,
                    chaos.reconnects
                ),
            );
            row(
                "delivery check",
                format!(
                    "{} acked publishes, {} deliveries owed, {} undelivered",
                    chaos.acked_checked, chaos.owed, chaos.undelivered
                ),
            );
            for skipped in &chaos.skipped {
                row("skipped", skipped.clone());
            }
            for f in &chaos.faults {
                let violations =
                    if f.violations.is_empty() { "no violation".to_string() } else { fmt_map(&f.violations) };
                row(
                    &format!("fault {}", f.n),
                    format!(
                        "{:>6.1}s {:<9} {}  down {} ms, whole after {}, every room acked after {}; {}{}",
                        f.at_s,
                        f.kind,
                        f.node,
                        f.down_ms,
                        f.whole_after_ms.map(|v| format!("{v} ms")).unwrap_or("-".into()),
                        f.first_ack_after_ms.map(|v| format!("{v} ms")).unwrap_or("-".into()),
                        violations,
                        f.error.as_ref().map(|e| format!("; error: {e}")).unwrap_or_default()
                    ),
                );
            }
            for example in chaos.undelivered_examples.iter().take(5) {
                row("undelivered e.g.", example.clone());
            }
        }
        for check in &self.checks {
            row(
                &format!("threshold {}", check.name),
                format!(
                    "{} (limit {}, actual {})",
                    if check.passed { "PASS" } else { "FAIL" },
                    check.limit,
                    check.actual.map(|a| format!("{a:.3}")).unwrap_or("n/a".into())
                ),
            );
        }
        for note in &self.notes {
            row("note", note.clone());
        }
        let _ = writeln!(out, "  {:<26} {}", "result", if self.passed { "PASS" } else { "FAIL" });
        out
    }
}
