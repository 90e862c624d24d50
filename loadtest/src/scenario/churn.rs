//! `churn`: clients connect, join rooms, stay a while, drop (half of them without a close
//! frame), and reconnect — rejoining with `since:{seq, epoch}` so the server replays what
//! they missed. Stable publishers keep the rooms busy. Reports recovered true/false, the
//! replayed messages, and checks that every replay is exactly the missed range.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{
    drain, join_all, message_cap, open_loop_pace, rooms_for, setup_timeout, Outcome, Pacer, Progress, Publisher,
};
use crate::proto::now_micros;
use crate::rng::Rng;
use crate::stats::{Phase, WindowStart};
use crate::worker::{close_politely, join_rooms, read_idle, Ctx, Inbox};

pub struct Params {
    pub clients: u64,
    pub rooms: u64,
    pub rooms_per_client: u64,
    pub publishers: u64,
    pub rate: f64,
    pub hold_ms: (u64, u64),
    pub reconnect_delay_ms: (u64, u64),
    pub storm_every_ms: Option<u64>,
    pub abrupt_percent: u32,
}

pub async fn run(ctx: Arc<Ctx>, p: Params) -> Result<Outcome> {
    let plan = ctx.plan.clone();
    let wc = plan.worker_count as u64;
    let mut notes = Vec::new();
    let ready = Arc::new(Progress::default());
    let done = Arc::new(Progress::default());
    let (go_tx, go_rx) = watch::channel(false);
    // Unix ms at which clients stop cycling; 0 until the run starts.
    let stop_at = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    let mut pacer = Pacer::new(plan.connect_rate / wc as f64);
    let mut expected = 0;
    ctx.stats.set_phase(Phase::Setup);

    let mut publishers = 0;
    for k in (0..p.publishers).filter(|&k| plan.mine(k)) {
        pacer.next().await;
        expected += 1;
        publishers += 1;
        let publisher = Publisher {
            index: p.clients + k,
            id: k as u32,
            room: plan.room_name("h", k % p.rooms),
            pace: open_loop_pace(p.rate, k, p.publishers),
            ack_feedback: false,
            cap: message_cap(plan.messages, p.publishers, k),
        };
        tasks.spawn(publisher.run(ctx.clone(), go_rx.clone(), ready.clone(), done.clone()));
    }
    for c in (0..p.clients).filter(|&c| plan.mine(c)) {
        pacer.next().await;
        expected += 1;
        let rooms: Vec<String> =
            rooms_for(c, p.rooms_per_client, p.rooms).into_iter().map(|r| plan.room_name("h", r)).collect();
        let ctx = ctx.clone();
        let ready = ready.clone();
        let stop_at = stop_at.clone();
        let (hold, delay, storm, abrupt) = (p.hold_ms, p.reconnect_delay_ms, p.storm_every_ms, p.abrupt_percent);
        let clients = p.clients;
        tasks.spawn(async move {
            let rec = ctx.stats.recorder();
            let user = format!("u{c}");
            let mut inbox = Inbox::new(rec.clone(), false);
            let mut rng = Rng::from_time(c);
            let mut shutdown = ctx.shutdown.clone();
            let mut first = true;
            let stopped = |shutdown: &watch::Receiver<bool>| {
                let at = stop_at.load(Ordering::Relaxed);
                *shutdown.borrow() || (at != 0 && now_micros() / 1000 >= at)
            };
            let mut attempt = 0u64;
            // Bounded: one iteration per connection, each at least a few ms; ends at the deadline.
            while !stopped(&shutdown) && attempt < 1_000_000 {
                let index = c + attempt * clients;
                attempt += 1;
                let ws = ctx.open(index, Some(&user), None, &rec).await;
                let Some(mut ws) = ws else {
                    if first {
                        ready.failed();
                        first = false;
                    }
                    tokio::time::sleep(Duration::from_millis(rng.range(delay.0, delay.1).max(50))).await;
                    continue;
                };
                if let Err(err) = join_rooms(&mut ws, &mut inbox, &rooms, Duration::from_secs(10), true).await {
                    rec.connect_failed(&format!("join_{err}"));
                    rec.closed();
                    inbox.checker.disconnected();
                    if first {
                        ready.failed();
                        first = false;
                    }
                    tokio::time::sleep(Duration::from_millis(rng.range(delay.0, delay.1).max(50))).await;
                    continue;
                }
                if first {
                    ready.ok();
                    first = false;
                }
                let hold_for = match storm {
                    Some(period) => {
                        let since_start = (now_micros() / 1000).saturating_sub(ctx.plan.start_at_unix_ms);
                        Duration::from_millis(period - since_start % period)
                    }
                    None => Duration::from_millis(rng.range(hold.0, hold.1)),
                };
                let mut until = Instant::now() + hold_for;
                let at = stop_at.load(Ordering::Relaxed);
                if at != 0 {
                    let left = at.saturating_sub(now_micros() / 1000);
                    until = until.min(Instant::now() + Duration::from_millis(left));
                }
                let ended = read_idle(&mut ws, &mut inbox, &mut shutdown, Some(until)).await;
                if ended.is_none() {
                    if *shutdown.borrow() || rng.below(100) >= abrupt as u64 {
                        close_politely(&mut ws).await;
                    }
                    // else: dropped without a close frame
                    if !*shutdown.borrow() {
                        rec.disconnected_on_purpose();
                    }
                }
                drop(ws);
                rec.closed();
                inbox.checker.disconnected();
                if stopped(&shutdown) {
                    break;
                }
                if storm.is_none() {
                    tokio::time::sleep(Duration::from_millis(rng.range(delay.0, delay.1))).await;
                }
            }
            if first {
                ready.failed();
            }
            // Stay out of the way until teardown.
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        });
    }
    let (ok, failed) = ready.wait(expected, setup_timeout(&ctx, expected, plan.connect_rate / wc as f64)).await;
    if failed > 0 || ok + failed < expected {
        notes.push(format!("setup: {ok} of {expected} connections ready, {failed} failed"));
    }
    ctx.io.barrier("go", &ctx.stats).await?;
    ctx.stats.set_phase(Phase::Run);
    let window = WindowStart::now(&ctx.stats);
    stop_at.store(now_micros() / 1000 + ctx.plan.duration_ms, Ordering::Relaxed);
    let _ = go_tx.send(true);
    done.wait(publishers, ctx.duration() + Duration::from_secs(30)).await;
    // Clients stop at the same deadline; give them their last reconnect.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let window = window.finish(&ctx.stats);
    ctx.stats.set_phase(Phase::Drain);
    drain(&ctx, true).await;
    ctx.io.barrier("stop", &ctx.stats).await?;
    ctx.begin_teardown();
    join_all(&mut tasks).await;
    Ok(Outcome { window, notes, chaos: None })
}
