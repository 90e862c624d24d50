//! `chat`: users join a few rooms each, then act at a total rate with a weighted mix —
//! sends, typing, read/delivered receipts, presence pings, DMs, leave+rejoin, member lists.
//! Types the server does not serve yet come back `unsupported` and are reported per type,
//! so the same run exercises more as the server grows.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{drain, join_all, message_cap, rooms_for, setup_timeout, Outcome, Pacer, Progress, Writer};
use crate::plan::Action;
use crate::proto::{self, OpKind, OpRef};
use crate::rng::Rng;
use crate::stats::{Phase, WindowStart};
use crate::worker::{join_rooms, Ctx, Inbox};

pub struct Params {
    pub users: u64,
    pub rooms: u64,
    pub rooms_per_user: u64,
    pub rate: f64,
    pub mix: Vec<(Action, u32)>,
}

fn pick(mix: &[(Action, u32)], rng: &mut Rng) -> Action {
    let total: u64 = mix.iter().map(|(_, w)| *w as u64).sum();
    let mut roll = rng.below(total);
    for (action, weight) in mix {
        if roll < *weight as u64 {
            return *action;
        }
        roll -= *weight as u64;
    }
    mix[0].0
}

pub async fn run(ctx: Arc<Ctx>, p: Params) -> Result<Outcome> {
    let plan = ctx.plan.clone();
    let wc = plan.worker_count as u64;
    let mut notes = Vec::new();
    let ready = Arc::new(Progress::default());
    let done = Arc::new(Progress::default());
    let (go_tx, go_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut pacer = Pacer::new(plan.connect_rate / wc as f64);
    let mut expected = 0;
    let per_user_rate = p.rate / p.users as f64;
    let mix = Arc::new(p.mix);
    ctx.stats.set_phase(Phase::Setup);
    for u in (0..p.users).filter(|&u| plan.mine(u)) {
        pacer.next().await;
        expected += 1;
        let rooms: Vec<String> =
            rooms_for(u, p.rooms_per_user, p.rooms).into_iter().map(|r| plan.room_name("c", r)).collect();
        let ctx = ctx.clone();
        let (ready, done, mix) = (ready.clone(), done.clone(), mix.clone());
        let mut go = go_rx.clone();
        let users = p.users;
        let cap = message_cap(plan.messages, p.users, u);
        tasks.spawn(async move {
            let rec = ctx.stats.recorder();
            let user = format!("u{u}");
            let Some(mut ws) = ctx.open(u, Some(&user), None, &rec).await else {
                ready.failed();
                done.failed();
                return;
            };
            let mut inbox = Inbox::new(rec.clone(), false).with_slots(rooms.clone());
            if let Err(err) = join_rooms(&mut ws, &mut inbox, &rooms, Duration::from_secs(30), false).await {
                rec.connect_failed(&format!("join_{err}"));
                rec.closed();
                ready.failed();
                done.failed();
                return;
            }
            let slot_seq = inbox.slot_seq.clone();
            let (mut writer, reader) = Writer::split(&ctx, ws, inbox);
            ready.ok();
            writer
                .service_until(async {
                    while !*go.borrow() {
                        if go.changed().await.is_err() {
                            break;
                        }
                    }
                })
                .await;
            let deadline = Instant::now() + ctx.duration();
            let mut rng = Rng::from_time(u);
            let mean = 1.0 / per_user_rate.max(1e-6);
            let mut next = Instant::now() + Duration::from_secs_f64(rng.exp(mean).min(mean * 10.0));
            let mut n = 0u64;
            let mut sends = 0u64;
            let pad = ctx.plan.payload_bytes;
            while !writer.broken && sends < cap {
                if next >= deadline {
                    break;
                }
                writer.service_until(tokio::time::sleep_until(next)).await;
                n += 1;
                let slot = rng.below(rooms.len() as u64) as usize;
                let room = &rooms[slot];
                let mut frames: Vec<(OpKind, String)> = Vec::with_capacity(2);
                match pick(&mix, &mut rng) {
                    Action::Send => {
                        sends += 1;
                        let op = OpRef::new(OpKind::Send, n);
                        frames.push((OpKind::Send, proto::send(room, &proto::stamp_text(u as u32, n, pad), Some(&op))));
                    }
                    Action::Typing => {
                        frames.push((OpKind::Typing, proto::typing(room, &OpRef::new(OpKind::Typing, n))))
                    }
                    action @ (Action::Read | Action::Delivered) => {
                        let read = action == Action::Read;
                        let kind = if read { OpKind::Read } else { OpKind::Delivered };
                        let seq = slot_seq[slot].load(Ordering::Relaxed);
                        frames.push((kind, proto::receipt(room, seq, read, &OpRef::new(kind, n))));
                    }
                    Action::Ping => frames.push((OpKind::Ping, proto::ping(&OpRef::new(OpKind::Ping, n)))),
                    Action::Dm => {
                        let mut to = rng.below(users);
                        if to == u {
                            to = (to + 1) % users;
                        }
                        let op = OpRef::new(OpKind::Dm, n);
                        frames.push((
                            OpKind::Dm,
                            proto::dm(&format!("u{to}"), &proto::stamp_text(u as u32, n, pad), &op),
                        ));
                    }
                    Action::Rejoin => {
                        frames.push((OpKind::Leave, proto::leave(room, &OpRef::new(OpKind::Leave, n))));
                        n += 1;
                        frames.push((OpKind::Join, proto::join(room, None, &OpRef::new(OpKind::Join, n))));
                    }
                    Action::Members => {
                        frames.push((OpKind::Members, proto::members(room, &OpRef::new(OpKind::Members, n))))
                    }
                }
                for (kind, text) in frames {
                    rec.request(kind);
                    let _ = writer.text(text).await;
                }
                let _ = writer.flush().await;
                next += Duration::from_secs_f64(rng.exp(mean).min(mean * 10.0));
                if next + Duration::from_secs(1) < Instant::now() {
                    next = Instant::now();
                }
            }
            done.ok();
            writer.finish(ctx.shutdown.clone()).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
            rec.closed();
        });
    }
    let (ok, failed) = ready.wait(expected, setup_timeout(&ctx, expected, plan.connect_rate / wc as f64)).await;
    if failed > 0 || ok + failed < expected {
        notes.push(format!("setup: {ok} of {expected} users ready, {failed} failed"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    ctx.io.barrier("go", &ctx.stats).await?;
    ctx.stats.set_phase(Phase::Run);
    let window = WindowStart::now(&ctx.stats);
    let _ = go_tx.send(true);
    done.wait(expected, ctx.duration() + Duration::from_secs(30)).await;
    let window = window.finish(&ctx.stats);
    ctx.stats.set_phase(Phase::Drain);
    drain(&ctx, false).await;
    ctx.io.barrier("stop", &ctx.stats).await?;
    ctx.begin_teardown();
    join_all(&mut tasks).await;
    Ok(Outcome { window, notes, chaos: None })
}
