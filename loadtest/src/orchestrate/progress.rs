//! The live progress line on stderr: one a second, once every worker reported it.

use std::io::{IsTerminal, Write as _};

use crate::report::counted_errors;

/// The live progress line on stderr.
pub struct Progress {
    quiet: bool,
    tty: bool,
    /// Faults injected so far (chaos).
    faults: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl Progress {
    pub fn new(quiet: bool, faults: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>) -> Progress {
        Progress { quiet, tty: std::io::stderr().is_terminal(), faults }
    }

    pub fn line(&self, second: u32, s: &crate::report::Second, all: &hdrhistogram::Histogram<u64>) {
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
        let mut text = format!(
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
        if let Some(faults) = &self.faults {
            text.push_str(&format!(" | faults {}", faults.load(std::sync::atomic::Ordering::Relaxed)));
        }
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[K{text}");
        } else {
            let _ = writeln!(err, "{text}");
        }
        let _ = err.flush();
    }

    pub fn done(&self) {
        if self.tty && !self.quiet {
            eprintln!();
        }
    }
}
