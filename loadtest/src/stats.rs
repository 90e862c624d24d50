//! Live collection inside a worker: sharded, mutex-protected intervals that connection
//! tasks record into, and the once-a-second ticker that turns them into [`Tick`]s.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use crate::proto::OpKind;
use crate::report::{bump, encode_hist, new_hist, Counts, RunWindow, Tallies, Tick};
use crate::seqcheck::Violation;

const SHARDS: usize = 16;

/// What one shard collected since the last tick.
pub struct Interval {
    pub counts: Counts,
    pub tallies: Tallies,
    pub latency: Histogram<u64>,
    pub reply: Histogram<u64>,
    pub connect: Histogram<u64>,
}

impl Interval {
    fn new() -> Self {
        Interval {
            counts: Counts::default(),
            tallies: Tallies::default(),
            latency: new_hist(),
            reply: new_hist(),
            connect: new_hist(),
        }
    }

    fn drain_into(&mut self, into: &mut Interval) {
        into.counts.add(&self.counts);
        into.tallies.add(&self.tallies);
        let _ = into.latency.add(&self.latency);
        let _ = into.reply.add(&self.reply);
        let _ = into.connect.add(&self.connect);
        self.counts = Counts::default();
        if !self.tallies.is_empty() {
            self.tallies = Tallies::default();
        }
        if !self.latency.is_empty() {
            self.latency.reset();
        }
        if !self.reply.is_empty() {
            self.reply.reset();
        }
        if !self.connect.is_empty() {
            self.connect.reset();
        }
    }
}

pub const PHASES: [&str; 6] = ["setup", "ramp", "run", "hold", "drain", "teardown"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Setup = 0,
    Ramp = 1,
    Run = 2,
    Hold = 3,
    Drain = 4,
    Teardown = 5,
}

/// A worker's statistics.
pub struct Stats {
    shards: Box<[Mutex<Interval>]>,
    /// Counters taken out of the shards by ticks so far (and the ticker's scratch).
    taken: Mutex<(Counts, Interval)>,
    open: AtomicI64,
    phase: AtomicU8,
    next_shard: AtomicUsize,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            shards: (0..SHARDS).map(|_| Mutex::new(Interval::new())).collect(),
            taken: Mutex::new((Counts::default(), Interval::new())),
            open: AtomicI64::new(0),
            phase: AtomicU8::new(0),
            next_shard: AtomicUsize::new(0),
        }
    }

    pub fn recorder(self: &Arc<Self>) -> Recorder {
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % SHARDS;
        Recorder { stats: self.clone(), shard }
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    pub fn phase_name(&self) -> &'static str {
        PHASES[self.phase.load(Ordering::Relaxed) as usize % PHASES.len()]
    }

    pub fn open(&self) -> i64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Counters so far (taken by ticks plus what the shards hold now).
    pub fn totals(&self) -> Counts {
        let taken = self.taken.lock();
        let mut totals = taken.0.clone();
        for shard in self.shards.iter() {
            totals.add(&shard.lock().counts);
        }
        totals
    }

    /// Takes everything recorded since the last tick.
    pub fn tick(&self, second: u32) -> Tick {
        let mut taken = self.taken.lock();
        let (totals, scratch) = &mut *taken;
        for shard in self.shards.iter() {
            shard.lock().drain_into(scratch);
        }
        totals.add(&scratch.counts);
        let hist = |h: &Histogram<u64>| (!h.is_empty()).then(|| encode_hist(h));
        let tick = Tick {
            second,
            phase: self.phase_name().to_string(),
            open: self.open(),
            counts: scratch.counts.clone(),
            tallies: std::mem::take(&mut scratch.tallies),
            latency: hist(&scratch.latency),
            reply: hist(&scratch.reply),
            connect: hist(&scratch.connect),
        };
        scratch.counts = Counts::default();
        scratch.latency.reset();
        scratch.reply.reset();
        scratch.connect.reset();
        tick
    }
}

/// A snapshot at the start of the measured window.
#[derive(Debug, Clone)]
pub struct WindowStart {
    at: std::time::Instant,
    counts: Counts,
}

impl WindowStart {
    pub fn now(stats: &Stats) -> Self {
        WindowStart { at: std::time::Instant::now(), counts: stats.totals() }
    }

    pub fn finish(&self, stats: &Stats) -> RunWindow {
        let now = stats.totals();
        RunWindow {
            secs: self.at.elapsed().as_secs_f64(),
            sent: now.sent - self.counts.sent,
            acked: now.acked - self.counts.acked,
            delivered: now.delivered - self.counts.delivered,
        }
    }
}

/// A connection task's handle on the worker's statistics.
#[derive(Clone)]
pub struct Recorder {
    stats: Arc<Stats>,
    shard: usize,
}

impl Recorder {
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut Interval) -> R) -> R {
        f(&mut self.stats.shards[self.shard].lock())
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    pub fn connected(&self, micros: u64) {
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        self.with(|i| {
            i.counts.connects_ok += 1;
            i.connect.saturating_record(micros.max(1));
        });
    }

    /// The connection is closed (call once per successful connect).
    pub fn closed(&self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn connect_failed(&self, kind: &str) {
        self.with(|i| {
            i.counts.connects_failed += 1;
            bump(&mut i.tallies.connect_failures, kind);
        });
    }

    pub fn disconnected_on_purpose(&self) {
        self.with(|i| i.counts.disconnects += 1);
    }

    /// A request was sent.
    pub fn request(&self, kind: OpKind) {
        self.with(|i| {
            i.counts.ops_sent += 1;
            if kind == OpKind::Send {
                i.counts.sent += 1;
            }
            bump(&mut i.tallies.requests_by_type, kind.type_name());
        });
    }

    /// Several publishes sent (the hot path of publishers).
    pub fn publishes(&self, n: u64, with_op: bool) {
        self.with(|i| {
            i.counts.sent += n;
            if with_op {
                i.counts.ops_sent += n;
            }
        });
    }

    /// A request was answered (ack or typed reply) after `rtt_us`.
    pub fn answered(&self, kind: OpKind, rtt_us: u64) {
        self.with(|i| {
            i.counts.ops_answered += 1;
            if kind == OpKind::Send {
                i.counts.acked += 1;
            } else {
                bump(&mut i.tallies.answered_by_type, kind.type_name());
            }
            i.reply.saturating_record(rtt_us.max(1));
        });
    }

    /// A received message; `latency_us` from its stamp.
    #[inline]
    pub fn delivered(&self, latency_us: Option<u64>, recovered: bool) {
        self.with(|i| {
            i.counts.delivered += 1;
            i.counts.frames += 1;
            if recovered {
                i.counts.recovered_messages += 1;
            }
            if let Some(us) = latency_us {
                i.latency.saturating_record(us.max(1));
            }
        });
    }

    pub fn violation(&self, violation: Violation) {
        self.with(|i| {
            i.counts.violations += 1;
            bump(&mut i.tallies.violations, violation.as_str());
        });
    }

    /// `n` violations of one kind at once (the end-of-run delivery check).
    pub fn violations(&self, violation: Violation, n: u64) {
        if n == 0 {
            return;
        }
        self.with(|i| {
            i.counts.violations += n;
            *i.tallies.violations.entry(violation.as_str().to_string()).or_default() += n;
        });
    }

    pub fn error(&self, kind: Option<OpKind>, code: &str) {
        self.with(|i| {
            i.counts.errors += 1;
            i.counts.frames += 1;
            bump(&mut i.tallies.errors_by_code, code);
            let request = kind.map(OpKind::type_name).unwrap_or("none");
            bump(&mut i.tallies.errors_by_request, &format!("{request}:{code}"));
            if code == "unsupported" {
                i.counts.errors_unsupported += 1;
                bump(&mut i.tallies.unsupported_by_type, request);
            }
        });
    }

    /// Any other frame, by type.
    pub fn frame(&self, kind: &str) {
        self.with(|i| {
            i.counts.frames += 1;
            bump(&mut i.tallies.frames_by_type, kind);
        });
    }

    pub fn close_received(&self, code: u16) {
        self.with(|i| {
            i.counts.closes_received += 1;
            bump(&mut i.tallies.close_codes, &code.to_string());
        });
    }

    /// The connection ended without a close frame while it was still in use.
    pub fn dropped(&self, why: &str) {
        self.with(|i| {
            i.counts.dropped += 1;
            bump(&mut i.tallies.close_codes, why);
        });
    }

    pub fn rejoined(&self, recovered: bool) {
        self.with(|i| {
            if recovered {
                i.counts.recovered_true += 1;
            } else {
                i.counts.recovered_false += 1;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::decode_hist;

    #[test]
    fn test_tick_takes_and_resets() {
        let stats = Arc::new(Stats::new());
        let a = stats.recorder();
        let b = stats.recorder();
        a.connected(1500);
        a.delivered(Some(100), false);
        b.delivered(Some(300), true);
        b.error(Some(OpKind::Typing), "unsupported");
        b.violation(Violation::Gap);
        let tick = stats.tick(0);
        assert_eq!(tick.open, 1);
        assert_eq!(tick.counts.delivered, 2);
        assert_eq!(tick.counts.recovered_messages, 1);
        assert_eq!(tick.counts.errors_unsupported, 1);
        assert_eq!(tick.tallies.unsupported_by_type["chat.typing"], 1);
        assert_eq!(tick.tallies.violations["gap"], 1);
        assert_eq!(decode_hist(tick.latency.as_deref().unwrap()).unwrap().len(), 2);
        let next = stats.tick(1);
        assert_eq!(next.counts, Counts::default());
        assert!(next.latency.is_none());
        assert_eq!(stats.totals().delivered, 2);
    }
}
