//! The suite's record: what a run of `suite` writes, and the figures taken from each child
//! harness report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{Scenario, Variant};

pub const FORMAT: &str = "ringcast-bench-suite/1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    pub cores: usize,
    pub kernel: String,
    pub cpu_model: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
            cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".into()),
        }
    }
}

pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// min / median / max of one figure over the repeats, and the spread relative to the median.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// (max - min) / |median|; 0 with one value
    pub rel_spread: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        let (min, max) = (v[0], v[n - 1]);
        let rel_spread = if median.abs() > 0.0 { (max - min) / median.abs() } else { 0.0 };
        Some(Spread { n, min, median, max, rel_spread })
    }
}

/// Whether a larger value of a figure is better (`Some(true)`), worse (`Some(false)`), or
/// the figure is information only (`None`, never flagged).
pub fn higher_is_better(figure: &str) -> Option<bool> {
    let name = figure.rsplit('.').next().unwrap_or(figure);
    match name {
        "deliveries_per_sec" | "acked_per_sec" | "ratio" => Some(true),
        "p50_ms"
        | "p99_ms"
        | "cpu_us_per_delivery"
        | "written_bytes_per_delivery"
        | "rss_per_connection_bytes"
        | "connect_p99_ms" => Some(false),
        _ => None,
    }
}

/// One child harness run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunFigures {
    pub mode: String,
    pub repeat: usize,
    pub command: String,
    pub figures: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl RunFigures {
    fn command(variant: &Variant) -> String {
        let mut words = vec!["ringcast-loadtest".to_string()];
        words.extend(variant.args.iter().map(|a| if a.contains(' ') { format!("{a:?}") } else { a.clone() }));
        if variant.redis {
            words.push("--server-arg=--redis-url=<spawned redis-server>".into());
        }
        words.join(" ")
    }

    pub fn failed(variant: &Variant, repeat: usize, error: String) -> RunFigures {
        RunFigures {
            mode: variant.mode.clone(),
            repeat,
            command: Self::command(variant),
            figures: BTreeMap::new(),
            error: Some(error),
            notes: Vec::new(),
        }
    }

    /// The figures of one harness JSON report.
    pub fn from_report(variant: &Variant, repeat: usize, report: &serde_json::Value) -> RunFigures {
        let mut figures = BTreeMap::new();
        let mut put = |name: &str, value: Option<f64>| {
            if let Some(v) = value.filter(|v| v.is_finite()) {
                figures.insert(name.to_string(), v);
            }
        };
        let f = |path: &[&str]| {
            let mut v = report;
            for key in path {
                v = v.get(key)?;
            }
            v.as_f64()
        };
        let secs = f(&["run", "secs"]).filter(|s| *s > 0.0);
        let scenario = report.get("scenario").and_then(|s| s.as_str()).unwrap_or("");
        if scenario == "connect" {
            put("connected", f(&["connections", "connected"]));
            put("rss_per_connection_bytes", f(&["server", "rss_per_connection_bytes"]));
            put("connect_p99_ms", f(&["connections", "connect_time_ms", "p99"]));
            put("server_rss_peak_bytes", f(&["server", "rss_peak_bytes"]));
        } else {
            put("deliveries_per_sec", f(&["run", "deliveries_per_sec"]));
            if variant.mode != "raw" {
                // raw-broadcast sends no acks
                put("acked_per_sec", f(&["run", "publishes_acked_per_sec"]));
            }
            if f(&["latency_ms", "count"]).unwrap_or(0.0) > 0.0 {
                put("p50_ms", f(&["latency_ms", "p50"]));
                put("p99_ms", f(&["latency_ms", "p99"]));
            }
            put("cpu_us_per_delivery", f(&["server", "cpu_us_per_delivery"]));
            put("written_bytes_per_delivery", f(&["server", "written_bytes_per_delivery"]));
            put("write_syscalls_per_delivery", f(&["server", "write_syscalls_per_delivery"]));
            put("context_switches_per_delivery", f(&["server", "context_switches_per_delivery"]));
            put("server_cpu_cores", f(&["server", "cpu_avg_cores"]));
        }
        put("violations", f(&["violations"]));
        put("errors", f(&["errors"]));
        let harness = f(&["harness_cpu_seconds"]);
        put("harness_cpu_seconds", harness);
        // From `go` to `stop`; a report without that window gives the whole run's CPU over
        // the measured window, setup included: an upper bound.
        let window = f(&["harness_window", "cpu_avg_cores"]);
        put("harness_cpu_cores", window.or(harness.zip(secs).map(|(c, s)| c / s)));
        put("harness_cpu_us_per_delivery", f(&["harness_window", "cpu_us_per_delivery"]));
        let mut notes = Vec::new();
        if f(&["violations"]).unwrap_or(0.0) > 0.0 {
            notes.push("sequence violations seen".into());
        }
        for (what, key) in [("errors", "errors_by_code"), ("closes", "close_codes")] {
            let counted = report.get("tallies").and_then(|t| t.get(key)).and_then(|m| m.as_object());
            if let Some(counted) = counted.filter(|m| !m.is_empty()) {
                let list: Vec<String> = counted.iter().map(|(k, v)| format!("{k}={v}")).collect();
                notes.push(format!("{what}: {}", list.join(", ")));
            }
        }
        RunFigures { mode: variant.mode.clone(), repeat, command: Self::command(variant), figures, error: None, notes }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScenarioRecord {
    pub name: String,
    pub description: String,
    /// "measured", "failed" or "not available"
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub repeats: usize,
    /// "<mode>.<figure>" (and "ratio.deliveries_per_sec": ringcast / raw of the same repeat;
    /// "compressed_over_plain.<figure>": compressed / ringcast of the same repeat)
    pub figures: BTreeMap<String, Spread>,
    pub runs: Vec<RunFigures>,
}

impl ScenarioRecord {
    pub fn new(scenario: &Scenario) -> ScenarioRecord {
        ScenarioRecord {
            name: scenario.name.clone(),
            description: scenario.description.clone(),
            status: if scenario.unavailable.is_some() { "not available".into() } else { "measured".into() },
            reason: scenario.unavailable.clone(),
            repeats: scenario.repeats,
            figures: BTreeMap::new(),
            runs: Vec::new(),
        }
    }

    /// Fills `figures` from `runs`.
    pub fn summarize(&mut self) {
        let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for run in self.runs.iter().filter(|r| r.error.is_none()) {
            for (name, value) in &run.figures {
                values.entry(format!("{}.{name}", run.mode)).or_default().push(*value);
            }
        }
        let mut ratios = Vec::new();
        for run in self.runs.iter().filter(|r| r.mode == "ringcast") {
            let raw = self.runs.iter().find(|r| r.mode == "raw" && r.repeat == run.repeat);
            let pair = raw
                .and_then(|raw| Some((run.figures.get("deliveries_per_sec")?, raw.figures.get("deliveries_per_sec")?)));
            if let Some((rc, raw)) = pair.filter(|(_, raw)| **raw > 0.0) {
                ratios.push(rc / raw);
            }
        }
        if !ratios.is_empty() {
            values.insert("ratio.deliveries_per_sec".into(), ratios);
        }
        // permessage-deflate on versus off, repeat by repeat (the "compressed" variants).
        for figure in ["deliveries_per_sec", "cpu_us_per_delivery", "written_bytes_per_delivery"] {
            let mut ratios = Vec::new();
            for run in self.runs.iter().filter(|r| r.mode == "compressed" && r.error.is_none()) {
                let plain = self.runs.iter().find(|r| r.mode == "ringcast" && r.repeat == run.repeat);
                let pair = plain.and_then(|plain| Some((run.figures.get(figure)?, plain.figures.get(figure)?)));
                if let Some((on, off)) = pair.filter(|(_, off)| **off > 0.0) {
                    ratios.push(on / off);
                }
            }
            if !ratios.is_empty() {
                values.insert(format!("compressed_over_plain.{figure}"), ratios);
            }
        }
        self.figures = values.into_iter().filter_map(|(k, v)| Some((k, Spread::of(&v)?))).collect();
        if self.status != "not available" && self.figures.is_empty() {
            self.status = "failed".into();
            let errors: Vec<&str> = self.runs.iter().filter_map(|r| r.error.as_deref()).collect();
            self.reason = Some(if errors.is_empty() { "no figures".into() } else { errors.join("; ") });
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub format: String,
    pub date: String,
    pub started_at_unix_ms: u64,
    pub quick: bool,
    pub elapsed_secs: f64,
    pub machine: Machine,
    pub version: String,
    /// how a regression is decided
    pub noise_rule: String,
    pub scenarios: Vec<ScenarioRecord>,
    #[serde(default)]
    pub baseline: Option<String>,
    #[serde(default)]
    pub regressions: Vec<String>,
}

impl Record {
    pub fn new(started_at_unix_ms: u64, date: &str, quick: bool, machine: Machine) -> Record {
        Record {
            format: FORMAT.into(),
            date: date.into(),
            started_at_unix_ms,
            quick,
            elapsed_secs: 0.0,
            machine,
            version: env!("CARGO_PKG_VERSION").into(),
            noise_rule: super::compare::NOISE_RULE.into(),
            scenarios: Vec::new(),
            baseline: None,
            regressions: Vec::new(),
        }
    }

    pub fn load(path: &Path) -> Result<Record> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let record: Record =
            serde_json::from_str(&text).with_context(|| format!("{} is no suite record", path.display()))?;
        Ok(record)
    }

    /// The human table of the figures (medians, with the spread).
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "suite {} ({} cores, {}, kernel {}){}",
            self.date,
            self.machine.cores,
            self.machine.cpu_model,
            self.machine.kernel,
            if self.quick { ", quick" } else { "" }
        );
        for s in &self.scenarios {
            let _ = writeln!(out, "\n{} [{}]: {}", s.name, s.status, s.description);
            if let Some(reason) = &s.reason {
                let _ = writeln!(out, "  {reason}");
            }
            for (name, spread) in &s.figures {
                let _ = writeln!(
                    out,
                    "  {name:<40} median {:>12}  min {:>12}  max {:>12}  n {}",
                    fmt_num(spread.median),
                    fmt_num(spread.min),
                    fmt_num(spread.max),
                    spread.n
                );
            }
        }
        out
    }
}

pub fn fmt_num(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The newest record in the directory of `out` that started before `before_ms` (not `out` itself).
pub fn previous(out: &Path, before_ms: u64) -> Option<(PathBuf, Record)> {
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut best: Option<(PathBuf, Record)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") || path == out {
            continue;
        }
        let Ok(record) = Record::load(&path) else { continue };
        if record.started_at_unix_ms >= before_ms {
            continue;
        }
        if best.as_ref().is_none_or(|(_, b)| record.started_at_unix_ms > b.started_at_unix_ms) {
            best = Some((path, record));
        }
    }
    best
}

/// `YYYY-MM-DD` (UTC) of a Unix time in seconds.
pub fn utc_date(unix_secs: u64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = (unix_secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn variant(mode: &str) -> Variant {
        Variant { mode: mode.into(), args: vec!["fanout".into()], redis: false, timeout: Duration::from_secs(1) }
    }

    fn run(mode: &str, repeat: usize, dps: f64) -> RunFigures {
        let mut r = RunFigures::failed(&variant(mode), repeat, String::new());
        r.error = None;
        r.figures.insert("deliveries_per_sec".into(), dps);
        r
    }

    #[test]
    fn test_spread_and_dates() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.min, s.median, s.max, s.n), (1.0, 2.0, 3.0, 3));
        assert!((s.rel_spread - 1.0).abs() < 1e-9);
        assert_eq!(Spread::of(&[4.0, 2.0]).unwrap().median, 3.0);
        assert_eq!(Spread::of(&[5.0]).unwrap().rel_spread, 0.0);
        assert!(Spread::of(&[]).is_none());
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_796_169_600 + 86_399), "2026-12-02");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(cpu_model("processor\t: 0\nmodel name\t: Some CPU @ 2GHz\n").as_deref(), Some("Some CPU @ 2GHz"));
        assert_eq!(higher_is_better("ringcast.p99_ms"), Some(false));
        assert_eq!(higher_is_better("ratio.deliveries_per_sec"), Some(true));
        assert_eq!(higher_is_better("ringcast.harness_cpu_cores"), None);
    }

    #[test]
    fn test_summarize_pairs_and_failures() {
        let scenario = Scenario {
            name: "x".into(),
            description: "d".into(),
            unavailable: None,
            variants: vec![variant("ringcast"), variant("raw")],
            repeats: 2,
        };
        let mut s = ScenarioRecord::new(&scenario);
        s.runs = vec![run("ringcast", 0, 90.0), run("raw", 0, 100.0), run("ringcast", 1, 80.0), run("raw", 1, 100.0)];
        s.summarize();
        assert_eq!(s.status, "measured");
        let ratio = s.figures["ratio.deliveries_per_sec"];
        assert_eq!((ratio.min, ratio.max, ratio.n), (0.8, 0.9, 2));
        assert_eq!(s.figures["raw.deliveries_per_sec"].median, 100.0);

        let mut failed = ScenarioRecord::new(&scenario);
        failed.runs = vec![RunFigures::failed(&variant("ringcast"), 0, "timed out".into())];
        failed.summarize();
        assert_eq!(failed.status, "failed");
        assert_eq!(failed.reason.as_deref(), Some("timed out"));

        let na = Scenario { unavailable: Some("not available: no flag".into()), ..scenario };
        let mut na = ScenarioRecord::new(&na);
        na.summarize();
        assert_eq!(na.status, "not available");
    }

    #[test]
    fn test_record_round_trips_and_reads_reports() {
        let report = serde_json::json!({
            "scenario": "fanout",
            "run": {"secs": 2.0, "deliveries_per_sec": 1000.0, "publishes_acked_per_sec": 10.0},
            "latency_ms": {"count": 5, "p50": 0.5, "p99": 2.0},
            "server": {"cpu_us_per_delivery": 3.0, "cpu_avg_cores": 0.5},
            "violations": 0, "errors": 7, "harness_cpu_seconds": 1.0,
            "tallies": {"errors_by_code": {"unavailable": 7}, "close_codes": {}}
        });
        let r = RunFigures::from_report(&variant("ringcast"), 0, &report);
        assert_eq!(r.figures["p99_ms"], 2.0);
        assert_eq!(r.figures["harness_cpu_cores"], 0.5);
        assert_eq!(r.figures["cpu_us_per_delivery"], 3.0);
        assert_eq!(r.notes, vec!["errors: unavailable=7".to_string()]);
        assert!(!r.figures.contains_key("harness_cpu_us_per_delivery"));
        // With the window from `go` to `stop`, the harness's cores come from it.
        let mut windowed = report.clone();
        windowed["harness_window"] =
            serde_json::json!({"cpu_seconds": 0.4, "cpu_avg_cores": 0.2, "cpu_us_per_delivery": 0.25});
        let w = RunFigures::from_report(&variant("ringcast"), 0, &windowed);
        assert_eq!(w.figures["harness_cpu_cores"], 0.2);
        assert_eq!(w.figures["harness_cpu_us_per_delivery"], 0.25);
        assert_eq!(w.figures["harness_cpu_seconds"], 1.0);
        assert_eq!(higher_is_better("ringcast.harness_cpu_us_per_delivery"), None);
        let mut record = Record::new(1, "2026-12-02", true, Machine::read());
        let scenario =
            Scenario { name: "x".into(), description: "d".into(), unavailable: None, variants: vec![], repeats: 1 };
        let mut s = ScenarioRecord::new(&scenario);
        s.runs.push(r);
        s.summarize();
        record.scenarios.push(s);
        let text = serde_json::to_string(&record).unwrap();
        let back: Record = serde_json::from_str(&text).unwrap();
        assert_eq!(back, record);
        assert!(record.table().contains("ringcast.p99_ms"));

        let dir = std::env::temp_dir().join(format!("suite-record-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, at) in [("a.json", 10u64), ("b.json", 20), ("c.json", 30)] {
            let mut r = record.clone();
            r.started_at_unix_ms = at;
            std::fs::write(dir.join(name), serde_json::to_string(&r).unwrap()).unwrap();
        }
        std::fs::write(dir.join("junk.json"), "{}").unwrap();
        let (path, found) = previous(&dir.join("c.json"), 30).unwrap();
        assert_eq!((path.file_name().unwrap().to_str().unwrap(), found.started_at_unix_ms), ("b.json", 20));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
