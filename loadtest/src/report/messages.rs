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
    /// What the chaos scenario's ledger found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<ChaosData>,
}

/// The chaos scenario's end-of-run findings in a worker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChaosData {
    /// Acknowledged publishes checked.
    pub acked_checked: u64,
    /// (publish, connection) pairs owed a delivery.
    pub owed: u64,
    /// Of those, never delivered.
    pub undelivered: u64,
    /// A few undelivered ones, described.
    pub examples: Vec<String>,
    /// Each violation (live ones, and undelivered by their publish's ack time): (unix ms, kind).
    pub violation_events: Vec<(u64, String)>,
    /// Per room, the ack times of its publishes (unix ms, sorted).
    pub acks_by_room: Vec<(String, Vec<u64>)>,
    /// `room.reset` frames received, over all clients.
    pub resets: u64,
    /// Reconnects after the server closed or dropped a connection.
    pub reconnects: u64,
    /// Ledger entries dropped because a client's log was full.
    pub ledger_overflow: u64,
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
