//! The counters and tallies every worker keeps (and the run once merged).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

macro_rules! counts {
    ($($(#[$doc:meta])* $field:ident),* $(,)?) => {
        /// Monotonic counters of a worker (or of the whole run once merged).
        #[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct Counts { $($(#[$doc])* pub $field: u64,)* }
        impl Counts {
            pub fn add(&mut self, other: &Counts) { $(self.$field += other.$field;)* }
        }
    };
}

counts! {
    /// Connections established (upgrade done, `connected` received).
    connects_ok,
    connects_failed,
    /// Connections closed by the harness on purpose (churn).
    disconnects,
    /// Publishes sent (`chat.send`, or raw text frames).
    sent,
    /// `chat.send` acks received.
    acked,
    /// Requests sent (every type, publishes included).
    ops_sent,
    /// Requests answered (ack or typed reply such as `presence.pong`).
    ops_answered,
    /// `chat.message` (or raw) frames received, replays included.
    delivered,
    /// Of those, `recovered:true` replays.
    recovered_messages,
    /// `error` frames received (all codes).
    errors,
    /// Of those, `unsupported`.
    errors_unsupported,
    violations,
    /// Close frames received from the server.
    closes_received,
    /// Connections that ended without a close frame from the server while still in use.
    dropped,
    /// Rejoins with `since`, by outcome.
    recovered_true,
    recovered_false,
    /// Every frame received.
    frames,
}

/// Counters by label.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tallies {
    pub errors_by_code: BTreeMap<String, u64>,
    /// `type:code`, e.g. `chat.typing:unsupported`.
    pub errors_by_request: BTreeMap<String, u64>,
    /// Request types answered `unsupported` (what the server does not serve yet).
    pub unsupported_by_type: BTreeMap<String, u64>,
    pub requests_by_type: BTreeMap<String, u64>,
    pub answered_by_type: BTreeMap<String, u64>,
    pub close_codes: BTreeMap<String, u64>,
    pub violations: BTreeMap<String, u64>,
    pub connect_failures: BTreeMap<String, u64>,
    /// Frames received by `type` (`chat.message` excluded: see `delivered`).
    pub frames_by_type: BTreeMap<String, u64>,
}

fn add_map(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (key, value) in from {
        *into.entry(key.clone()).or_default() += value;
    }
}

pub fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(value) => *value += 1,
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

impl Tallies {
    pub fn add(&mut self, other: &Tallies) {
        add_map(&mut self.errors_by_code, &other.errors_by_code);
        add_map(&mut self.errors_by_request, &other.errors_by_request);
        add_map(&mut self.unsupported_by_type, &other.unsupported_by_type);
        add_map(&mut self.requests_by_type, &other.requests_by_type);
        add_map(&mut self.answered_by_type, &other.answered_by_type);
        add_map(&mut self.close_codes, &other.close_codes);
        add_map(&mut self.violations, &other.violations);
        add_map(&mut self.connect_failures, &other.connect_failures);
        add_map(&mut self.frames_by_type, &other.frames_by_type);
    }

    pub fn is_empty(&self) -> bool {
        *self == Tallies::default()
    }
}
