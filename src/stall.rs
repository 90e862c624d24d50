//! Stalls: a node whose whole process stood still (SIGSTOP, a frozen VM or container, heavy
//! swapping) longer than a fraction of the failure timeout may have been declared dead
//! meanwhile. The others then took over its rooms and dropped its subscriptions, but when it
//! runs again it knows nothing of that: its links are still up (a stall shorter than their
//! 3 s read timeout breaks none), its view still has it on the ring, and the first tasks to
//! run would apply the ops waiting in its sockets as the owner — a second owner beside the
//! one that took over, whose acks the first owner's subscribers never see.
//!
//! So a thread of its own ticks every [`TICK`] and an owner serves only while the last tick
//! is recent ([`StallGuard::serving`]): after a stall, every op is refused before the
//! ticker has even run again. When the ticker sees the gap it marks the node stalled first,
//! then tells `quorum.rs`, which fences the node (clients told to reconnect elsewhere, off
//! the ring) and lets it rejoin like a node back from a partition.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// How often the ticker runs.
pub const TICK: Duration = Duration::from_millis(50);

/// The clock an owner checks before it serves.
pub struct StallGuard {
    base: Instant,
    /// Nanoseconds after `base` of the last tick; 0 while no ticker runs (one node alone).
    last_tick: AtomicU64,
    /// A stall was seen and the node has not rejoined since.
    stalled: AtomicBool,
    /// The longest gap between ticks that is not a stall.
    limit: AtomicU64,
}

impl Default for StallGuard {
    fn default() -> Self {
        StallGuard {
            base: Instant::now(),
            last_tick: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            limit: AtomicU64::new(u64::MAX),
        }
    }
}

impl StallGuard {
    fn now(&self) -> u64 {
        (self.base.elapsed().as_nanos() as u64).max(1)
    }

    /// Starts the ticker: a gap longer than `limit` between two ticks is a stall, reported
    /// on the returned channel (with its length). The thread ends with the process.
    pub fn start(self: &std::sync::Arc<Self>, limit: Duration) -> mpsc::UnboundedReceiver<Duration> {
        self.limit.store(limit.as_nanos() as u64, Ordering::Relaxed);
        self.last_tick.store(self.now(), Ordering::Release);
        let (tx, rx) = mpsc::unbounded_channel();
        let guard = std::sync::Arc::downgrade(self);
        let spawned = std::thread::Builder::new().name("ringcast-stall".into()).spawn(move || loop {
            std::thread::sleep(TICK);
            let Some(guard) = guard.upgrade() else { return };
            if let Some(gap) = guard.tick() {
                if tx.send(gap).is_err() {
                    return;
                }
            }
        });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "stall ticker not started");
            self.last_tick.store(0, Ordering::Release);
        }
        rx
    }

    /// One tick: the gap since the last one when it was a stall. The node is marked stalled
    /// before the tick is recorded, so no op sees a fresh tick and an unmarked stall.
    fn tick(&self) -> Option<Duration> {
        let now = self.now();
        let gap = now.saturating_sub(self.last_tick.load(Ordering::Acquire));
        let stalled = gap > self.limit.load(Ordering::Relaxed);
        if stalled {
            self.stalled.store(true, Ordering::Release);
        }
        self.last_tick.store(now, Ordering::Release);
        stalled.then(|| Duration::from_nanos(gap))
    }

    /// Whether an owner may serve now: no stall since the last rejoin, and none under way.
    pub fn serving(&self) -> bool {
        let last = self.last_tick.load(Ordering::Acquire);
        if last == 0 {
            return true;
        }
        !self.stalled.load(Ordering::Acquire) && self.now().saturating_sub(last) <= self.limit.load(Ordering::Relaxed)
    }

    /// The node rejoined after its stall.
    pub fn clear(&self) {
        self.stalled.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_ticker_an_owner_always_serves() {
        let guard = StallGuard::default();
        assert!(guard.serving());
    }

    #[test]
    fn a_gap_longer_than_the_limit_stops_serving_until_cleared() {
        let guard = StallGuard::default();
        guard.limit.store(Duration::from_millis(30).as_nanos() as u64, Ordering::Relaxed);
        guard.last_tick.store(guard.now(), Ordering::Release);
        assert!(guard.serving());
        assert_eq!(guard.tick(), None);
        std::thread::sleep(Duration::from_millis(60));
        // Before the ticker ran again: the old tick is too old already.
        assert!(!guard.serving());
        let gap = guard.tick().expect("a stall");
        assert!(gap >= Duration::from_millis(60));
        // The tick is fresh again, but the stall stands until the node rejoined.
        assert!(!guard.serving());
        guard.clear();
        assert!(guard.serving());
    }

    #[test]
    fn the_ticker_thread_reports_a_stall() {
        // A clock that started long ago, so that a tick can be set 2 s back.
        let guard =
            std::sync::Arc::new(StallGuard { base: Instant::now() - Duration::from_secs(10), ..Default::default() });
        let mut stalls = guard.start(Duration::from_millis(500));
        assert!(guard.serving());
        // As if the process had stood still: the last tick moved back in time.
        guard.last_tick.store(guard.now() - Duration::from_secs(2).as_nanos() as u64, Ordering::Release);
        assert!(!guard.serving());
        let gap = stalls.blocking_recv().expect("the ticker reports");
        assert!(gap >= Duration::from_secs(2), "{gap:?}");
        assert!(!guard.serving());
    }
}
