//! The scenarios, and what they share: pacing, readiness counting, the split-connection
//! writer, publishers (in `publisher`), and the drain at the end.

pub mod chaos;
pub mod chat;
pub mod churn;
pub mod connect;
pub mod fanout;
mod publisher;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError, WebSocketWrite};
use tokio::io::BufWriter;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use crate::plan::Scenario;
use crate::report::RunWindow;
use crate::stats::Recorder;
use crate::worker::{read_split, Ctx, Inbox};
use crate::ws::Ws;

pub use publisher::{message_cap, open_loop_pace, Pace, Publisher};

/// What a scenario hands back to the worker.
pub struct Outcome {
    pub window: RunWindow,
    pub notes: Vec<String>,
    pub chaos: Option<crate::report::ChaosData>,
}

pub async fn run(ctx: Arc<Ctx>) -> Result<Outcome> {
    match ctx.plan.scenario.clone() {
        Scenario::Connect { connections, rate, join_rooms } => connect::run(ctx, connections, rate, join_rooms).await,
        Scenario::Fanout { rooms, subscribers, publishers, rate, closed_loop, in_flight, feedback } => {
            fanout::run(ctx, fanout::Params { rooms, subscribers, publishers, rate, closed_loop, in_flight, feedback })
                .await
        }
        Scenario::Chat { users, rooms, rooms_per_user, rate, mix } => {
            chat::run(ctx, chat::Params { users, rooms, rooms_per_user, rate, mix }).await
        }
        Scenario::Churn {
            clients,
            rooms,
            rooms_per_client,
            publishers,
            rate,
            hold_ms,
            reconnect_delay_ms,
            storm_every_ms,
            abrupt_percent,
        } => {
            churn::run(
                ctx,
                churn::Params {
                    clients,
                    rooms,
                    rooms_per_client,
                    publishers,
                    rate,
                    hold_ms,
                    reconnect_delay_ms,
                    storm_every_ms,
                    abrupt_percent,
                },
            )
            .await
        }
        Scenario::Chaos { rooms, subscribers, publishers, rate, check_window_ms, .. } => {
            chaos::run(ctx, chaos::Params { rooms, subscribers, publishers, rate, check_window_ms }).await
        }
    }
}

/// Counts tasks that finished a step (or failed it) and wakes whoever waits for all.
#[derive(Default)]
pub struct Progress {
    ok: AtomicU64,
    failed: AtomicU64,
    notify: Notify,
}

impl Progress {
    pub fn ok(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_waiters();
    }

    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_waiters();
    }

    pub fn counts(&self) -> (u64, u64) {
        (self.ok.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }

    /// Waits until `expected` tasks reported, or `timeout`; returns (ok, failed).
    pub async fn wait(&self, expected: u64, timeout: Duration) -> (u64, u64) {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            let (ok, failed) = self.counts();
            if ok + failed >= expected || Instant::now() >= deadline {
                return (ok, failed);
            }
            let _ = tokio::time::timeout_at(deadline.min(Instant::now() + Duration::from_millis(200)), notified).await;
        }
    }
}

/// Paces connection attempts: the `k`-th starts at `start + k / rate`.
pub struct Pacer {
    start: Instant,
    rate: f64,
    k: u64,
}

impl Pacer {
    pub fn new(rate: f64) -> Pacer {
        Pacer { start: Instant::now(), rate: rate.max(0.001), k: 0 }
    }

    pub async fn next(&mut self) {
        let at = self.start + Duration::from_secs_f64(self.k as f64 / self.rate);
        self.k += 1;
        tokio::time::sleep_until(at).await;
    }
}

/// Time allowed for setting up `n` connections at `rate` per second.
pub fn setup_timeout(ctx: &Ctx, n: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(n as f64 / rate.max(0.001))
        + Duration::from_millis(ctx.plan.connect_timeout_ms) * 2
        + Duration::from_secs(30)
}

/// The write half of a split connection, with the frames the read half owes the server.
pub struct Writer {
    ws: WebSocketWrite<BufWriter<crate::tls::WriteHalf>>,
    obligations: mpsc::UnboundedReceiver<(OpCode, Vec<u8>)>,
    pub broken: bool,
}

impl Writer {
    /// Splits a connection: the read half runs in its own task (returned) until teardown.
    pub fn split(ctx: &Ctx, ws: Ws, inbox: Inbox) -> (Writer, tokio::task::JoinHandle<Inbox>) {
        let (read, write) = ws.split(|stream| {
            let (read, write) = stream.into_split();
            (read, BufWriter::with_capacity(32 * 1024, write))
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_split(read, inbox, tx, ctx.shutdown.clone()));
        (Writer { ws: write, obligations: rx, broken: false }, reader)
    }

    /// Queues a text frame (written on the next flush or when the buffer fills).
    pub async fn text(&mut self, text: String) -> Result<(), WebSocketError> {
        let result = self.ws.write_frame(Frame::text(Payload::Owned(text.into_bytes()))).await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    pub async fn flush(&mut self) -> Result<(), WebSocketError> {
        let result = self.ws.flush().await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// Waits for `fut` while writing whatever the read half owes (pongs, close echo).
    pub async fn service_until<T>(&mut self, fut: impl Future<Output = T>) -> T {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                Some((opcode, payload)) = self.obligations.recv() => {
                    let frame = Frame::new(true, opcode, None, Payload::Owned(payload));
                    if self.ws.write_frame(frame).await.is_err() || self.ws.flush().await.is_err() {
                        self.broken = true;
                    }
                }
                value = &mut fut => return value,
            }
        }
    }

    /// Serves obligations until teardown, then closes with 1000.
    pub async fn finish(mut self, mut shutdown: watch::Receiver<bool>) {
        if !*shutdown.borrow() {
            self.service_until(async {
                while !*shutdown.borrow() {
                    if shutdown.changed().await.is_err() {
                        break;
                    }
                }
            })
            .await;
        }
        if !self.broken {
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                let _ = self.ws.write_frame(Frame::close(1000, b"bye")).await;
                let _ = self.ws.flush().await;
            })
            .await;
        }
    }
}

/// After sending stops: waits until acks caught up with sends and nothing arrived for a
/// moment, at most `--drain`.
pub async fn drain(ctx: &Ctx, need_acks: bool) {
    let deadline = Instant::now() + ctx.drain();
    let mut last = ctx.stats.totals();
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = ctx.stats.totals();
        if now.frames != last.frames || now.delivered != last.delivered {
            quiet_since = Instant::now();
            last = now;
            continue;
        }
        let acks_done = !need_acks || now.acked + now.errors >= now.sent;
        if acks_done && quiet_since.elapsed() >= Duration::from_millis(300) {
            break;
        }
    }
}

/// Waits for the tasks of a scenario to end after teardown, at most a few seconds.
pub async fn join_all(tasks: &mut tokio::task::JoinSet<()>) {
    let _ = tokio::time::timeout(Duration::from_secs(10), async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
}

/// Picks `k` distinct rooms out of `n` for client `c` (deterministic).
pub fn rooms_for(c: u64, k: u64, n: u64) -> Vec<u64> {
    let mut rng = crate::rng::Rng::new(c.wrapping_mul(0x9E37_79B9) ^ 0x5EED);
    let mut picked = Vec::with_capacity(k as usize);
    while (picked.len() as u64) < k.min(n) {
        let r = rng.below(n);
        if !picked.contains(&r) {
            picked.push(r);
        }
    }
    picked
}

/// A recorder for code that only needs one.
pub fn recorder(ctx: &Ctx) -> Recorder {
    ctx.stats.recorder()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_message_caps_add_up() {
        let total: u64 = (0..7).map(|id| message_cap(Some(100), 7, id)).sum();
        assert_eq!(total, 100);
        assert_eq!(message_cap(None, 3, 0), u64::MAX);
    }

    #[test]
    fn test_rooms_for_is_distinct() {
        for c in 0..50 {
            let rooms = rooms_for(c, 3, 5);
            assert_eq!(rooms.len(), 3);
            let mut sorted = rooms.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 3);
            assert!(rooms.iter().all(|&r| r < 5));
        }
        assert_eq!(rooms_for(1, 10, 2).len(), 2);
    }

    #[tokio::test]
    async fn test_progress_wait() {
        let progress = Arc::new(Progress::default());
        let p = progress.clone();
        tokio::spawn(async move {
            p.ok();
            p.failed();
        });
        assert_eq!(progress.wait(2, Duration::from_secs(5)).await, (1, 1));
        assert_eq!(progress.wait(3, Duration::from_millis(50)).await, (1, 1));
    }
}
