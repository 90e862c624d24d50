//! Latency histograms: their bounds, how they travel from workers to the parent, and the
//! log-spaced buckets the plots use.

use anyhow::{Context, Result};
use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;

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

pub(super) fn add_hist(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    // Both come from new_hist(): same bounds; values beyond them are clamped on record.
    let _ = into.add(from);
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
