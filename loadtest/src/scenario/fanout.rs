//! `fanout`: R rooms × S subscribers × P publishers. Open loop (`--rate`, total publishes
//! per second) or closed loop (`--closed-loop`: each publisher keeps `--in-flight` sends
//! outstanding; a send completes on its ack, or — `--feedback delivery`, always in raw mode —
//! when the room's witness subscriber received it).
//!
//! Placement over workers: the publishers of room r and its first subscriber (the witness)
//! run on worker r mod N; subscriber s of room r on worker (r + s) mod N.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::{drain, join_all, message_cap, open_loop_pace, setup_timeout, Outcome, Pace, Pacer, Progress, Publisher};
use crate::cli::Feedback;
use crate::stats::{Phase, WindowStart};
use crate::worker::{close_politely, join_rooms, read_idle, Ctx, Inbox, Witness};

pub struct Params {
    pub rooms: u64,
    pub subscribers: u64,
    pub publishers: u64,
    pub rate: Option<f64>,
    pub closed_loop: bool,
    pub in_flight: u32,
    pub feedback: Feedback,
}

pub async fn run(ctx: Arc<Ctx>, p: Params) -> Result<Outcome> {
    let plan = ctx.plan.clone();
    let wc = plan.worker_count as u64;
    let wi = plan.worker_index as u64;
    let mut notes = Vec::new();
    let total_publishers = p.rooms * p.publishers;
    let delivery_feedback = p.closed_loop && p.feedback == Feedback::Delivery;
    let mut windows = HashMap::new();
    if p.closed_loop {
        for r in (0..p.rooms).filter(|&r| plan.mine(r)) {
            for k in 0..p.publishers {
                windows.insert((r * p.publishers + k) as u32, Arc::new(Semaphore::new(p.in_flight as usize)));
            }
        }
    }
    let witness: Witness = Arc::new(windows);
    let ready = Arc::new(Progress::default());
    let done = Arc::new(Progress::default());
    let (go_tx, go_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut pacer = Pacer::new(plan.connect_rate / wc as f64);
    let mut expected = 0u64;
    ctx.stats.set_phase(Phase::Setup);

    for r in 0..p.rooms {
        let room = plan.room_name("f", r);
        for s in 0..p.subscribers {
            if (r + s) % wc != wi {
                continue;
            }
            pacer.next().await;
            expected += 1;
            let index = r * p.subscribers + s;
            let ctx = ctx.clone();
            let ready = ready.clone();
            let room = room.clone();
            let witness = (s == 0 && delivery_feedback).then(|| witness.clone());
            tasks.spawn(async move {
                let rec = ctx.stats.recorder();
                let raw = ctx.raw();
                let user = format!("u{index}");
                let Some(mut ws) = ctx.open(index, Some(&user), raw.then_some(room.as_str()), &rec).await else {
                    ready.failed();
                    return;
                };
                let mut inbox = Inbox::new(rec.clone(), raw);
                if let Some(witness) = witness {
                    inbox = inbox.with_witness(witness);
                }
                if !raw {
                    if let Err(err) =
                        join_rooms(&mut ws, &mut inbox, std::slice::from_ref(&room), Duration::from_secs(30), false)
                            .await
                    {
                        rec.connect_failed(&format!("join_{err}"));
                        rec.closed();
                        ready.failed();
                        return;
                    }
                }
                ready.ok();
                let mut shutdown = ctx.shutdown.clone();
                if read_idle(&mut ws, &mut inbox, &mut shutdown, None).await.is_none() {
                    close_politely(&mut ws).await;
                }
                rec.closed();
            });
        }
    }
    let mut publishers = 0u64;
    for r in (0..p.rooms).filter(|&r| plan.mine(r)) {
        let room = plan.room_name("f", r);
        for k in 0..p.publishers {
            pacer.next().await;
            expected += 1;
            publishers += 1;
            let id = r * p.publishers + k;
            let pace = match (p.closed_loop, p.rate) {
                (true, _) => Pace::Window(witness.get(&(id as u32)).expect("window made above").clone()),
                (false, rate) => open_loop_pace(rate.unwrap_or(1.0), id, total_publishers),
            };
            let publisher = Publisher {
                index: p.rooms * p.subscribers + id,
                id: id as u32,
                room: room.clone(),
                pace,
                ack_feedback: p.closed_loop && !delivery_feedback,
                cap: message_cap(plan.messages, total_publishers, id),
            };
            tasks.spawn(publisher.run(ctx.clone(), go_rx.clone(), ready.clone(), done.clone()));
        }
    }
    let (ok, failed) = ready.wait(expected, setup_timeout(&ctx, expected, plan.connect_rate / wc as f64)).await;
    if failed > 0 || ok + failed < expected {
        notes.push(format!("setup: {ok} of {expected} connections ready, {failed} failed"));
    }
    // Let the last member.joined floods settle before measuring.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ctx.io.barrier("go", &ctx.stats).await?;
    ctx.stats.set_phase(Phase::Run);
    let window = WindowStart::now(&ctx.stats);
    let _ = go_tx.send(true);
    done.wait(publishers, ctx.duration() + Duration::from_secs(30)).await;
    let window = window.finish(&ctx.stats);
    ctx.stats.set_phase(Phase::Drain);
    drain(&ctx, !ctx.raw()).await;
    ctx.io.barrier("stop", &ctx.stats).await?;
    ctx.begin_teardown();
    join_all(&mut tasks).await;
    Ok(Outcome { window, notes, chaos: None })
}
