//! The HTML report: one self-contained page, plots drawn as inline SVG (no scripts, nothing
//! fetched from the network).

use std::fmt::Write as _;

use crate::report::Report;

const W: f64 = 720.0;
const H: f64 = 260.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A "nice" upper bound and step for an axis up to `max`.
fn nice_axis(max: f64) -> (f64, f64) {
    if max.is_nan() || max <= 0.0 || !max.is_finite() {
        return (1.0, 0.25);
    }
    let raw = max / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude);
    ((max / step).ceil() * step, step)
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v.abs() >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if v.abs() >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// A line chart of several series over a shared x axis.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series<'_>]) -> String {
    line_chart_marked(title, x_label, y_label, series, &[])
}

/// A line chart with vertical markers at `(x, label)` (the chaos scenario's faults).
pub fn line_chart_marked(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
    markers: &[(f64, String)],
) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img"><title>{}</title>"#,
        escape(title)
    );
    let _ = write!(svg, r#"<text x="{}" y="18" font-size="14" font-weight="bold">{}</text>"#, LEFT, escape(title));
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).collect();
    if all.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" font-size="13" fill="#777">no data</text></svg>"##,
            LEFT + 20.0,
            H / 2.0
        );
        return svg;
    }
    let x_min = all.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x_max = all.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max).max(x_min + 1.0);
    let (y_max, y_step) = nice_axis(all.iter().map(|p| p.1).fold(0.0, f64::max));
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x - x_min) / (x_max - x_min) * pw;
    let sy = |y: f64| TOP + ph - (y / y_max) * ph;
    // Grid and y ticks.
    let mut y = 0.0;
    while y <= y_max + y_step * 0.01 {
        let py = sy(y);
        let _ =
            write!(svg, r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e5e5e5"/>"##, LEFT + pw);
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            py + 4.0,
            fmt_tick(y)
        );
        y += y_step;
    }
    // X ticks.
    let (x_span, x_step) = nice_axis(x_max - x_min);
    let mut x = 0.0;
    while x <= x_span + x_step * 0.01 && x_min + x <= x_max + 1e-9 {
        let px = sx(x_min + x);
        let _ = write!(
            svg,
            r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#999"/>"##,
            TOP + ph,
            TOP + ph + 4.0
        );
        let _ = write!(
            svg,
            r#"<text x="{px:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            TOP + ph + 16.0,
            fmt_tick(x_min + x)
        );
        x += x_step;
    }
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="#333"/><line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        TOP + ph,
        TOP + ph,
        LEFT + pw,
        TOP + ph
    );
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 6.0,
        escape(x_label)
    );
    let _ = write!(
        svg,
        r#"<text x="14" y="{:.1}" font-size="11" text-anchor="middle" transform="rotate(-90 14 {:.1})">{}</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        escape(y_label)
    );
    for (x, label) in markers.iter().filter(|(x, _)| *x >= x_min && *x <= x_max) {
        let px = sx(*x);
        let _ = write!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#c0392b" stroke-dasharray="4 3"><title>{}</title></line><text x="{:.1}" y="{:.1}" font-size="10" fill="#c0392b">{}</text>"##,
            TOP + ph,
            escape(label),
            px + 2.0,
            TOP + 10.0,
            escape(label)
        );
    }
    for (i, s) in series.iter().enumerate() {
        if s.points.is_empty() {
            continue;
        }
        let path: Vec<String> = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.8" points="{}"/>"#,
            s.color,
            path.join(" ")
        );
        if s.points.len() <= 2 {
            for &(x, y) in &s.points {
                let _ = write!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#, sx(x), sy(y), s.color);
            }
        }
        let lx = LEFT + pw - 150.0;
        let ly = TOP + 12.0 + i as f64 * 15.0;
        let _ = write!(
            svg,
            r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="3" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            ly - 4.0,
            s.color,
            lx + 16.0,
            ly,
            escape(s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A bar chart of (label, count).
pub fn bar_chart(title: &str, x_label: &str, bars: &[(String, u64)]) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img"><title>{}</title>"#,
        escape(title)
    );
    let _ = write!(svg, r#"<text x="{}" y="18" font-size="14" font-weight="bold">{}</text>"#, LEFT, escape(title));
    if bars.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" font-size="13" fill="#777">no data</text></svg>"##,
            LEFT + 20.0,
            H / 2.0
        );
        return svg;
    }
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let (y_max, y_step) = nice_axis(bars.iter().map(|b| b.1).max().unwrap_or(1) as f64);
    let bw = pw / bars.len() as f64;
    let mut y = 0.0;
    while y <= y_max + y_step * 0.01 {
        let py = TOP + ph - y / y_max * ph;
        let _ =
            write!(svg, r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e5e5e5"/>"##, LEFT + pw);
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            py + 4.0,
            fmt_tick(y)
        );
        y += y_step;
    }
    let label_every = (bars.len() / 12).max(1);
    for (i, (label, count)) in bars.iter().enumerate() {
        let h = *count as f64 / y_max * ph;
        let x = LEFT + i as f64 * bw;
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#4a7fb5"><title>≤ {} ms: {count}</title></rect>"##,
            x + 1.0,
            TOP + ph - h,
            (bw - 2.0).max(1.0),
            escape(label)
        );
        if i % label_every == 0 {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
                x + bw / 2.0,
                TOP + ph + 14.0,
                escape(label)
            );
        }
    }
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        TOP + ph,
        LEFT + pw,
        TOP + ph
    );
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 6.0,
        escape(x_label)
    );
    svg.push_str("</svg>");
    svg
}

fn bucket_label(upper_ms: f64) -> String {
    if upper_ms >= 1000.0 {
        format!("{:.1}s", upper_ms / 1000.0)
    } else if upper_ms >= 10.0 {
        format!("{upper_ms:.0}")
    } else if upper_ms >= 1.0 {
        format!("{upper_ms:.1}")
    } else {
        format!("{upper_ms:.2}")
    }
}

/// The chaos scenario's part of the page: the faults against throughput, latency and
/// violations, and the fault table.
fn chaos_section(report: &Report, chaos: &crate::report::ChaosReport) -> String {
    let markers: Vec<(f64, String)> =
        chaos.faults.iter().map(|f| (f.at_s, format!("#{} {} {}", f.n, f.kind, f.node))).collect();
    let t = |f: &dyn Fn(&crate::report::TimelinePoint) -> Option<f64>| -> Vec<(f64, f64)> {
        report.timeline.iter().filter_map(|p| f(p).map(|v| (p.t as f64 + 1.0, v))).collect()
    };
    let violations: Vec<(f64, f64)> = report
        .timeline
        .iter()
        .map(|p| (p.t as f64 + 1.0, chaos.violations_by_second.get(&p.t).copied().unwrap_or(0) as f64))
        .collect();
    let charts = [
        line_chart_marked(
            "Throughput and faults",
            "seconds",
            "per second",
            &[
                Series { name: "acked/s", color: "#2a9d8f", points: t(&|p| Some(p.acked as f64)) },
                Series { name: "errors/s", color: "#e76f51", points: t(&|p| Some(p.errors as f64)) },
            ],
            &markers,
        ),
        line_chart_marked(
            "Deliveries per second and faults",
            "seconds",
            "messages/s",
            &[Series { name: "delivered/s", color: "#264653", points: t(&|p| Some(p.delivered as f64)) }],
            &markers,
        ),
        line_chart_marked(
            "Latency p99 and faults",
            "seconds",
            "ms",
            &[Series { name: "p99", color: "#e76f51", points: t(&|p| p.p99_ms) }],
            &markers,
        ),
        line_chart_marked(
            "Violations per second (undelivered at their ack) and faults",
            "seconds",
            "violations",
            &[Series { name: "violations", color: "#c0392b", points: violations }],
            &markers,
        ),
    ]
    .join("");
    let fmt_ms = |v: Option<u64>| v.map(|v| format!("{v}")).unwrap_or_else(|| "-".into());
    let mut rows = String::new();
    for f in &chaos.faults {
        let violations = if f.violations.is_empty() {
            "-".to_string()
        } else {
            f.violations.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            f.n,
            f.at_s,
            escape(&f.node),
            escape(&f.kind),
            f.down_ms,
            fmt_ms(f.whole_after_ms),
            fmt_ms(f.first_ack_after_ms),
            escape(&violations),
            escape(f.error.as_deref().or(f.note.as_deref()).unwrap_or(""))
        );
    }
    let before = if chaos.violations_before_faults.is_empty() {
        "none".to_string()
    } else {
        chaos.violations_before_faults.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    };
    let skipped = chaos.skipped.iter().map(|s| format!("<p>{}</p>", escape(s))).collect::<String>();
    format!(
        "<h2>Faults</h2><p>{nodes} nodes on {network}, store {store}; faults {faults}. Checked {acked} acknowledged \
         publishes, {owed} deliveries owed, {undelivered} undelivered; {resets} room.reset received, {reconnects} \
         reconnects. Violations before the first fault: {before}.</p>{skipped}\
         <table><tr><th>#</th><th>at (s)</th><th>node</th><th>fault</th><th>down (ms)</th><th>whole again after (ms)</th>\
         <th>every room acked again after (ms)</th><th>violations until the next fault</th><th>error</th></tr>{rows}</table>\
         <div class=\"charts\">{charts}</div>",
        nodes = chaos.nodes,
        network = escape(&chaos.network),
        store = escape(&chaos.store),
        faults = escape(&chaos.faults_enabled.join(",")),
        acked = chaos.acked_checked,
        owed = chaos.owed,
        undelivered = chaos.undelivered,
        resets = chaos.resets_received,
        reconnects = chaos.reconnects,
    )
}

/// The whole page.
pub fn render(report: &Report) -> String {
    let t = |f: &dyn Fn(&crate::report::TimelinePoint) -> Option<f64>| -> Vec<(f64, f64)> {
        report.timeline.iter().filter_map(|p| f(p).map(|v| (p.t as f64 + 1.0, v))).collect()
    };
    let latency = line_chart(
        "Delivery latency over time",
        "seconds",
        "ms",
        &[
            Series { name: "p50", color: "#2a9d8f", points: t(&|p| p.p50_ms) },
            Series { name: "p99", color: "#e76f51", points: t(&|p| p.p99_ms) },
        ],
    );
    let deliveries = line_chart(
        "Deliveries per second",
        "seconds",
        "messages/s",
        &[Series { name: "delivered/s", color: "#264653", points: t(&|p| Some(p.delivered as f64)) }],
    );
    let publishes = line_chart(
        "Publishes per second",
        "seconds",
        "publishes/s",
        &[
            Series { name: "sent/s", color: "#e9c46a", points: t(&|p| Some(p.sent as f64)) },
            Series { name: "acked/s", color: "#2a9d8f", points: t(&|p| Some(p.acked as f64)) },
        ],
    );
    let connections = line_chart(
        "Open connections",
        "seconds",
        "connections",
        &[Series { name: "open", color: "#6d597a", points: t(&|p| Some(p.open as f64)) }],
    );
    let server = line_chart(
        "Server RSS",
        "seconds",
        "MiB",
        &[Series {
            name: "RSS (all nodes)",
            color: "#b56576",
            points: t(&|p| p.server_rss_bytes.map(|b| b as f64 / (1024.0 * 1024.0))),
        }],
    );
    let histogram = bar_chart(
        "Delivery latency histogram",
        "latency upper bound (ms, log-spaced)",
        &report.latency_buckets.iter().map(|(ms, n)| (bucket_label(*ms), *n)).collect::<Vec<_>>(),
    );
    let chaos = report.chaos.as_ref().map(|c| chaos_section(report, c)).unwrap_or_default();
    let verdict = if report.passed { "PASS" } else { "FAIL" };
    let color = if report.passed { "#2a9d8f" } else { "#c0392b" };
    let mut checks = String::new();
    for c in &report.checks {
        let _ = write!(
            checks,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td style=\"color:{}\">{}</td></tr>",
            escape(&c.name),
            c.limit,
            c.actual.map(|a| format!("{a:.3}")).unwrap_or("n/a".into()),
            if c.passed { "#2a9d8f" } else { "#c0392b" },
            if c.passed { "pass" } else { "FAIL" }
        );
    }
    let mut page = String::new();
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ringcast-loadtest: {scenario}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1600px; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 16px; margin-top: 28px; }}
pre {{ background: #f6f6f6; padding: 12px; overflow-x: auto; font-size: 12px; }}
table {{ border-collapse: collapse; font-size: 13px; }} td, th {{ border: 1px solid #ddd; padding: 4px 10px; text-align: left; }}
.verdict {{ font-weight: bold; color: {color}; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 16px; }}
.charts svg {{ border: 1px solid #eee; background: #fff; }}
</style></head><body>
<h1>ringcast-loadtest — {scenario} ({mode}) — <span class="verdict">{verdict}</span></h1>
<p><code>{command}</code></p>
<h2>Thresholds</h2>
<table><tr><th>check</th><th>limit</th><th>actual</th><th>result</th></tr>{checks}</table>
{chaos}
<h2>Plots</h2>
<div class="charts">{latency}{histogram}{deliveries}{publishes}{connections}{server}</div>
<h2>Summary</h2>
<pre>{table}</pre>
<h2>Parameters</h2>
<pre>{params}</pre>
</body></html>
"#,
        scenario = escape(&report.scenario),
        mode = escape(&report.mode),
        command = escape(&report.command),
        table = escape(&report.table()),
        params = escape(&serde_json::to_string_pretty(&report.params).unwrap_or_default()),
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::TimelinePoint;

    #[test]
    fn test_nice_axis() {
        assert_eq!(nice_axis(9.0), (10.0, 2.5));
        assert_eq!(nice_axis(0.0), (1.0, 0.25));
        let (max, step) = nice_axis(1234.0);
        assert!(max >= 1234.0 && step > 0.0);
    }

    #[test]
    fn test_render_is_self_contained() {
        let report = Report {
            scenario: "fanout".into(),
            command: "x <y>".into(),
            timeline: (0..5)
                .map(|t| TimelinePoint {
                    t,
                    delivered: 100 * t as u64,
                    p50_ms: Some(1.0),
                    p99_ms: Some(2.0),
                    ..Default::default()
                })
                .collect(),
            latency_buckets: vec![(0.01, 1), (0.1, 5)],
            ..Default::default()
        };
        let page = render(&report);
        assert!(page.contains("<svg"));
        assert!(page.contains("x &lt;y&gt;"));
        assert!(!page.contains("<script"));
        assert!(!page.contains("http://") || page.matches("http://").all(|_| true) && !page.contains("src=\"http"));
        assert_eq!(page.matches("<svg").count(), 6);
    }
}
