//! Thresholds: the run's gates and how a report did against them.

use serde::{Deserialize, Serialize};

use super::{Counts, Report};

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
