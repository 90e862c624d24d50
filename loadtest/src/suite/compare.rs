//! Comparing a record with an earlier one: a figure regressed when its median moved the
//! wrong way by more than the noise the two records measured in their repeats.

use std::fmt::Write as _;

use super::record::{fmt_num, higher_is_better, Record, Spread};

/// Smallest tolerance when both records measured a spread (≥ 2 repeats each).
pub const MIN_NOISE: f64 = 0.05;
/// Tolerance when one side has a single run, so no measured noise.
pub const SINGLE_RUN_NOISE: f64 = 0.15;

pub const NOISE_RULE: &str = "a figure regresses when its median is worse than the baseline's median by more than \
     the noise: the larger relative spread (max - min) / median of the two records' repeats, at least 5 % \
     (15 % when either side has a single run); information-only figures are never flagged";

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub scenario: String,
    pub figure: String,
    pub baseline: Option<f64>,
    pub current: Option<f64>,
    /// (current - baseline) / baseline
    pub change: Option<f64>,
    pub noise: Option<f64>,
    pub regression: bool,
    pub verdict: String,
}

/// The tolerance for one figure from the spreads of both sides.
pub fn noise(base: &Spread, cur: &Spread) -> f64 {
    let floor = if base.n < 2 || cur.n < 2 { SINGLE_RUN_NOISE } else { MIN_NOISE };
    base.rel_spread.max(cur.rel_spread).max(floor)
}

/// Whether `cur` is worse than `base` beyond the noise, given the figure's direction.
pub fn regressed(base: &Spread, cur: &Spread, higher_better: bool) -> bool {
    let tol = noise(base, cur);
    if higher_better {
        cur.median < base.median - tol * base.median.abs()
    } else {
        cur.median > base.median + tol * base.median.abs()
    }
}

/// Rows for every figure with a direction that both records have, plus scenarios that were
/// measured in the baseline and are not now.
pub fn compare(base: &Record, cur: &Record) -> Vec<Row> {
    let mut rows = Vec::new();
    if base.quick != cur.quick {
        rows.push(Row {
            scenario: "*".into(),
            figure: "*".into(),
            baseline: None,
            current: None,
            change: None,
            noise: None,
            regression: false,
            verdict: "not comparable: one record is --quick".into(),
        });
        return rows;
    }
    for scenario in &cur.scenarios {
        let Some(before) = base.scenarios.iter().find(|s| s.name == scenario.name) else { continue };
        if before.status == "measured" && scenario.status != "measured" {
            rows.push(Row {
                scenario: scenario.name.clone(),
                figure: "status".into(),
                baseline: None,
                current: None,
                change: None,
                noise: None,
                regression: true,
                verdict: format!("was measured, now {}", scenario.status),
            });
            continue;
        }
        for (figure, now) in &scenario.figures {
            let (Some(higher_better), Some(then)) = (higher_is_better(figure), before.figures.get(figure)) else {
                continue;
            };
            let tol = noise(then, now);
            let regression = regressed(then, now, higher_better);
            let change = (then.median != 0.0).then(|| (now.median - then.median) / then.median.abs());
            let better = change.is_some_and(|c| if higher_better { c > tol } else { c < -tol });
            rows.push(Row {
                scenario: scenario.name.clone(),
                figure: figure.clone(),
                baseline: Some(then.median),
                current: Some(now.median),
                change,
                noise: Some(tol),
                regression,
                verdict: if regression {
                    "REGRESSION"
                } else if better {
                    "better"
                } else {
                    "within noise"
                }
                .into(),
            });
        }
    }
    rows
}

pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<34} {:<36} {:>12} {:>12} {:>8} {:>7}  verdict",
        "scenario", "figure", "baseline", "now", "change", "noise"
    );
    let num = |v: Option<f64>| v.map(fmt_num).unwrap_or_else(|| "-".into());
    let pct = |v: Option<f64>| v.map(|v| format!("{:+.1}%", v * 100.0)).unwrap_or_else(|| "-".into());
    for r in rows {
        let _ = writeln!(
            out,
            "{:<34} {:<36} {:>12} {:>12} {:>8} {:>7}  {}",
            r.scenario,
            r.figure,
            num(r.baseline),
            num(r.current),
            pct(r.change),
            r.noise.map(|n| format!("{:.1}%", n * 100.0)).unwrap_or_else(|| "-".into()),
            r.verdict
        );
    }
    let flagged = rows.iter().filter(|r| r.regression).count();
    let _ = writeln!(out, "{flagged} regression(s) beyond the noise");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::record::{Machine, ScenarioRecord};
    use std::collections::BTreeMap;

    fn spread(values: &[f64]) -> Spread {
        Spread::of(values).unwrap()
    }

    fn record(quick: bool, figures: &[(&str, &[f64])], status: &str) -> Record {
        let mut r =
            Record::new(1, "2026-12-02", quick, Machine { cores: 2, kernel: "k".into(), cpu_model: "c".into() });
        r.scenarios.push(ScenarioRecord {
            name: "s".into(),
            description: "d".into(),
            status: status.into(),
            reason: None,
            repeats: 3,
            figures: figures.iter().map(|(k, v)| (k.to_string(), spread(v))).collect::<BTreeMap<_, _>>(),
            runs: Vec::new(),
        });
        r
    }

    #[test]
    fn test_noise_uses_the_wider_spread_and_floors() {
        let tight = spread(&[100.0, 101.0, 100.5]);
        let wide = spread(&[80.0, 100.0, 120.0]);
        assert!((noise(&tight, &wide) - 0.4).abs() < 1e-9);
        assert_eq!(noise(&tight, &tight), MIN_NOISE);
        assert_eq!(noise(&spread(&[100.0]), &tight), SINGLE_RUN_NOISE);
    }

    #[test]
    fn test_regressions_follow_the_direction_and_the_noise() {
        let base = spread(&[100.0, 102.0, 98.0]); // 4 % spread: the 5 % floor applies
        assert!(regressed(&base, &spread(&[90.0, 91.0, 92.0]), true));
        assert!(!regressed(&base, &spread(&[96.0, 97.0, 96.5]), true));
        assert!(!regressed(&base, &spread(&[120.0, 121.0, 119.0]), true));
        assert!(regressed(&base, &spread(&[120.0, 121.0, 119.0]), false));
        assert!(!regressed(&base, &spread(&[90.0, 91.0, 92.0]), false));
        // A noisy current run widens the tolerance: 30 % spread hides a 20 % drop.
        assert!(!regressed(&base, &spread(&[65.0, 80.0, 89.0]), true));
    }

    #[test]
    fn test_compare_rows() {
        let base = record(
            false,
            &[("ringcast.p99_ms", &[1.0, 1.02, 0.98]), ("ringcast.harness_cpu_cores", &[0.5, 0.5])],
            "measured",
        );
        let cur = record(
            false,
            &[("ringcast.p99_ms", &[2.0, 2.0, 2.02]), ("ringcast.harness_cpu_cores", &[1.5, 1.5])],
            "measured",
        );
        let rows = compare(&base, &cur);
        assert_eq!(rows.len(), 1, "information-only figures are not compared");
        assert!(rows[0].regression);
        assert_eq!(rows[0].verdict, "REGRESSION");
        assert!((rows[0].change.unwrap() - 1.0).abs() < 0.01);
        assert!(table(&rows).contains("1 regression(s)"));

        let better = compare(&cur, &base);
        assert_eq!(better[0].verdict, "better");
        assert!(!better[0].regression);

        let failed = record(false, &[], "failed");
        let rows = compare(&base, &failed);
        assert!(rows[0].regression && rows[0].figure == "status");

        let quick = record(true, &[("ringcast.p99_ms", &[9.0])], "measured");
        let rows = compare(&base, &quick);
        assert!(rows.iter().all(|r| !r.regression));
        assert!(rows[0].verdict.contains("not comparable"));
    }
}
