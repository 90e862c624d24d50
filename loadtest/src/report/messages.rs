//! The messages workers send to the parent: a tick a second, barriers, the final one.

use serde::{Deserialize, Serialize};

use super::{Counts, Tallies};

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
