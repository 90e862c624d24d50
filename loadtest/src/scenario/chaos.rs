//! `chaos` (worker side): fan-out traffic whose clients survive faults. R rooms × S
//! subscribers × P publishers, spread round-robin over the nodes; a client whose connection
//! the server closes (drain: `reconnect` then 1012) or loses (its node was killed) reconnects
//! to the next node and rejoins with `since:{seq, epoch}`. Publishers keep their numbering
//! across reconnects. Every client feeds the delivery [`Ledger`]; once the drain is over it
//! checks each acknowledged publish against every connection that was owed it. The parent
//! (orchestrate/chaos.rs) injects the faults meanwhile.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{join_all, setup_timeout, Outcome, Pacer, Progress, Writer};
use crate::ledger::{Ledger, Tap};
use crate::proto::{self, now_micros, OpKind, OpRef};
use crate::report::ChaosData;
use crate::rng::Rng;
use crate::seqcheck::Violation;
use crate::stats::{Phase, WindowStart};
use crate::worker::{close_politely, join_rooms, read_idle, Ctx, Inbox};

pub struct Params {
    pub rooms: u64,
    pub subscribers: u64,
    pub publishers: u64,
    pub rate: f64,
    pub check_window_ms: u64,
}

/// The most connections one client opens in a run.
const MAX_ATTEMPTS: u64 = 100_000;

/// What all clients share.
struct Shared {
    ctx: Arc<Ctx>,
    ledger: Arc<Ledger>,
    ready: Arc<Progress>,
    done: Arc<Progress>,
    go: watch::Receiver<bool>,
    reconnects: AtomicU64,
    resets: AtomicU64,
}

/// One logical client: a room, and publishing parameters when it publishes.
struct Client {
    id: u64,
    room: String,
    /// `Some((publisher id, publishes per second))` for a publisher.
    publish: Option<(u32, f64)>,
}

pub async fn run(ctx: Arc<Ctx>, p: Params) -> Result<Outcome> {
    let plan = ctx.plan.clone();
    let mut notes = Vec::new();
    let (go_tx, go_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        ledger: Arc::new(Ledger::default()),
        ready: Arc::new(Progress::default()),
        done: Arc::new(Progress::default()),
        go: go_rx,
        reconnects: AtomicU64::new(0),
        resets: AtomicU64::new(0),
    });
    let mut tasks = JoinSet::new();
    let mut pacer = Pacer::new(plan.connect_rate);
    ctx.stats.set_phase(Phase::Setup);
    let total_publishers = p.rooms * p.publishers;
    let per_publisher = p.rate / total_publishers as f64;
    let mut clients = Vec::new();
    for r in 0..p.rooms {
        let room = plan.room_name("x", r);
        for s in 0..p.subscribers {
            clients.push(Client { id: r * p.subscribers + s, room: room.clone(), publish: None });
        }
        for k in 0..p.publishers {
            let id = r * p.publishers + k;
            clients.push(Client {
                id: p.rooms * p.subscribers + id,
                room: room.clone(),
                publish: Some((id as u32, per_publisher)),
            });
        }
    }
    let expected = clients.len() as u64;
    let publishers = total_publishers;
    for client in clients {
        pacer.next().await;
        tasks.spawn(client.run(shared.clone()));
    }
    let (ok, failed) = shared.ready.wait(expected, setup_timeout(&ctx, expected, plan.connect_rate)).await;
    if failed > 0 || ok + failed < expected {
        notes.push(format!("setup: {ok} of {expected} clients ready, {failed} failed"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    ctx.io.barrier("go", &ctx.stats).await?;
    ctx.stats.set_phase(Phase::Run);
    let window = WindowStart::now(&ctx.stats);
    let _ = go_tx.send(true);
    shared.done.wait(publishers, ctx.duration() + Duration::from_secs(30)).await;
    let window = window.finish(&ctx.stats);
    ctx.stats.set_phase(Phase::Drain);
    // Deliveries of the last publishes, and clients still reconnecting, get the check
    // window or --drain, whichever is longer.
    let grace = ctx.drain().max(Duration::from_millis(p.check_window_ms));
    tokio::time::sleep(grace).await;
    let chaos = verdict(&shared, p.check_window_ms);
    ctx.io.barrier("stop", &ctx.stats).await?;
    ctx.begin_teardown();
    join_all(&mut tasks).await;
    Ok(Outcome { window, notes, chaos: Some(chaos) })
}

/// The end-of-run delivery check, recorded as `undelivered` violations, and the ledger's
/// timings for the parent.
fn verdict(shared: &Shared, check_window_ms: u64) -> ChaosData {
    let verdict = shared.ledger.verify(check_window_ms * 1000);
    shared.ctx.stats.recorder().violations(Violation::Undelivered, verdict.undelivered);
    let (live, acks_by_room) = shared.ledger.timings();
    let mut violation_events: Vec<(u64, String)> =
        live.into_iter().map(|(ms, v)| (ms, v.as_str().to_string())).collect();
    violation_events.extend(verdict.by_ack_ms.iter().map(|&ms| (ms, Violation::Undelivered.as_str().to_string())));
    violation_events.sort();
    ChaosData {
        acked_checked: verdict.acked,
        owed: verdict.owed,
        undelivered: verdict.undelivered,
        examples: verdict
            .examples
            .iter()
            .map(|m| {
                format!(
                    "{} epoch {} seq {} (acked at {} ms) from client {} never reached client {}",
                    m.room,
                    m.epoch,
                    m.seq,
                    m.ack_us / 1000,
                    m.publisher,
                    m.subscriber
                )
            })
            .collect(),
        violation_events,
        acks_by_room,
        resets: shared.resets.load(Ordering::Relaxed),
        reconnects: shared.reconnects.load(Ordering::Relaxed),
        ledger_overflow: verdict.overflow,
    }
}

impl Client {
    async fn run(self, shared: Arc<Shared>) {
        let ctx = shared.ctx.clone();
        let rec = ctx.stats.recorder();
        let tap: Tap = shared.ledger.tap(self.id as u32);
        if let Some((publisher, _)) = self.publish {
            tap.publishes_as(publisher);
        }
        let mut inbox = Inbox::new(rec.clone(), false);
        inbox.tap = Some(tap.clone());
        let user = format!("u{}", self.id);
        let rooms = [self.room.clone()];
        let mut rng = Rng::from_time(self.id);
        let mut shutdown = ctx.shutdown.clone();
        let mut first = true;
        let mut publishing = Publishing::new(self.publish);
        let mut attempt = 0u64;
        // Bounded: one iteration per connection, each at least 50 ms apart after a failure;
        // ends at teardown.
        while !*shutdown.borrow() && attempt < MAX_ATTEMPTS {
            // The next node each time: after a fault the client lands elsewhere.
            let index = self.id + attempt;
            attempt += 1;
            let Some(mut ws) = ctx.open(index, Some(&user), None, &rec).await else {
                if first && attempt >= ctx.targets.len() as u64 * 3 {
                    shared.ready.failed();
                    first = false;
                }
                tokio::time::sleep(Duration::from_millis(rng.range(50, 250))).await;
                continue;
            };
            inbox.reconnect_after_ms = None;
            let resets_before = inbox.resets;
            if let Err(err) = join_rooms(&mut ws, &mut inbox, &rooms, Duration::from_secs(10), true).await {
                rec.connect_failed(&format!("join_{err}"));
                rec.closed();
                inbox.checker.disconnected();
                tap.disconnected(now_micros());
                tokio::time::sleep(Duration::from_millis(rng.range(50, 250))).await;
                continue;
            }
            if first {
                shared.ready.ok();
                first = false;
            }
            let ended = if publishing.is_some() {
                let (ended, back) = publishing.run(&shared, ws, inbox, &self.room).await;
                inbox = back;
                ended
            } else {
                let ended = read_idle(&mut ws, &mut inbox, &mut shutdown, None).await;
                if ended.is_none() {
                    close_politely(&mut ws).await;
                }
                ended
            };
            shared.resets.fetch_add(inbox.resets - resets_before, Ordering::Relaxed);
            rec.closed();
            if ended.is_none() || *shutdown.borrow() {
                break;
            }
            // The server closed or lost the connection: reconnect elsewhere, as a client of
            // a draining node is told to (after `reconnect.after_ms`, at most 2 s).
            inbox.checker.disconnected();
            tap.disconnected(now_micros());
            shared.reconnects.fetch_add(1, Ordering::Relaxed);
            let pause = inbox.reconnect_after_ms.unwrap_or(0).min(2000).max(rng.range(20, 100));
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        if first {
            shared.ready.failed();
        }
        publishing.finish(&shared);
    }
}

/// A publisher's state across its connections.
struct Publishing {
    /// `(publisher id, rate)`; `None` for a subscriber.
    spec: Option<(u32, f64)>,
    /// Publishes sent so far (the stamp's number continues across reconnects).
    n: u64,
    start: Option<Instant>,
    deadline: Option<Instant>,
    finished: bool,
}

impl Publishing {
    fn new(spec: Option<(u32, f64)>) -> Self {
        Publishing { spec, n: 0, start: None, deadline: None, finished: false }
    }

    fn is_some(&self) -> bool {
        self.spec.is_some()
    }

    fn finish(&mut self, shared: &Shared) {
        if self.spec.is_some() && !self.finished {
            self.finished = true;
            shared.done.ok();
        }
    }

    /// Publishes on `ws` until the deadline, then stays connected until teardown. Returns how
    /// the connection ended (`None`: teardown) and the inbox.
    async fn run(
        &mut self,
        shared: &Arc<Shared>,
        ws: crate::ws::Ws,
        inbox: Inbox,
        room: &str,
    ) -> (Option<String>, Inbox) {
        let ctx = &shared.ctx;
        let Some((id, rate)) = self.spec else { unreachable!("only publishers publish") };
        let rec = inbox.rec.clone();
        let (mut writer, mut reader) = Writer::split(ctx, ws, inbox);
        let mut go = shared.go.clone();
        // Wait for the start, answering pings meanwhile.
        tokio::select! {
            _ = writer.service_until(async {
                let _ = go.wait_for(|go| *go).await;
            }) => {}
            inbox = &mut reader => {
                return (Some("closed".into()), inbox.unwrap_or_else(|_| Inbox::new(rec.clone(), false)));
            }
        }
        let start = *self.start.get_or_insert_with(Instant::now);
        let deadline = *self.deadline.get_or_insert_with(|| Instant::now() + ctx.duration());
        let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
        let pad = ctx.plan.payload_bytes;
        // Publish until the deadline; a send due while disconnected is skipped, not caught up.
        while !self.finished && !writer.broken && Instant::now() < deadline {
            let next = (start + interval.mul_f64(self.n as f64 + 0.5)).max(Instant::now());
            tokio::select! {
                _ = writer.service_until(tokio::time::sleep_until(next.min(deadline))) => {}
                inbox = &mut reader => {
                    let inbox = inbox.unwrap_or_else(|_| Inbox::new(rec.clone(), false));
                    return (Some("closed".into()), inbox);
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            let due = (start.elapsed().as_secs_f64() / interval.as_secs_f64()) as u64 + 1;
            if due <= self.n {
                continue;
            }
            // Sends missed while disconnected are skipped: numbering jumps, the stamp stays monotonic.
            self.n = due;
            let text = proto::stamp_text(id, self.n, pad);
            let frame = proto::send(room, &text, Some(&OpRef::new(OpKind::Send, self.n)));
            if writer.text(frame).await.is_err() || writer.flush().await.is_err() {
                break;
            }
            rec.publishes(1, true);
        }
        if Instant::now() >= deadline {
            self.finish(shared);
        }
        // Stay connected until teardown (or until the server ends the connection).
        let mut shutdown = ctx.shutdown.clone();
        tokio::select! {
            _ = writer.service_until(async {
                let _ = shutdown.wait_for(|down| *down).await;
            }) => {}
            inbox = &mut reader => {
                let inbox = inbox.unwrap_or_else(|_| Inbox::new(rec.clone(), false));
                return (Some("closed".into()), inbox);
            }
        }
        writer.finish(ctx.shutdown.clone()).await;
        let inbox = match tokio::time::timeout(Duration::from_secs(2), reader).await {
            Ok(Ok(inbox)) => inbox,
            _ => Inbox::new(rec.clone(), false),
        };
        (None, inbox)
    }
}
