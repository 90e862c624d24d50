//! `connect`: ramp N idle connections at a given rate, hold them for `--duration`, close.
//! The parent samples the server's RSS at the start barrier and at the stop barrier (after
//! the hold, before the close), which gives memory per idle connection. With `--join-rooms N`
//! each connection first joins one of N rooms (connection `i` joins room `i % N`), so the
//! figure includes each connection's membership on the edge and at the owner.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::task::JoinSet;

use super::{join_all, Outcome, Pacer, Progress};
use crate::stats::{Phase, WindowStart};
use crate::worker::{close_politely, join_rooms, read_idle, Ctx, Inbox};

pub async fn run(ctx: Arc<Ctx>, connections: u64, rate: f64, rooms: Option<u64>) -> Result<Outcome> {
    let plan = ctx.plan.clone();
    let mut notes = Vec::new();
    ctx.io.barrier("go", &ctx.stats).await?;
    ctx.stats.set_phase(Phase::Ramp);
    let window = WindowStart::now(&ctx.stats);
    let progress = Arc::new(Progress::default());
    let mut tasks = JoinSet::new();
    let mut pacer = Pacer::new(rate / plan.worker_count as f64);
    let mut mine = 0;
    for i in (0..connections).filter(|&i| plan.mine(i)) {
        pacer.next().await;
        mine += 1;
        let ctx = ctx.clone();
        let progress = progress.clone();
        tasks.spawn(async move {
            let rec = ctx.stats.recorder();
            let user = format!("u{i}");
            let room = rooms.map(|rooms| ctx.plan.room_name("c", i % rooms));
            let raw_room = room.as_deref().unwrap_or("idle");
            let Some(mut ws) = ctx.open(i, Some(&user), ctx.raw().then_some(raw_room), &rec).await else {
                progress.failed();
                return;
            };
            let mut inbox = Inbox::new(rec.clone(), ctx.raw());
            if let (Some(room), false) = (room, ctx.raw()) {
                let joined = join_rooms(&mut ws, &mut inbox, &[room], Duration::from_secs(30), false).await;
                if let Err(err) = joined {
                    rec.connect_failed(&format!("join_{err}"));
                    rec.closed();
                    progress.failed();
                    return;
                }
            }
            progress.ok();
            let mut shutdown = ctx.shutdown.clone();
            if read_idle(&mut ws, &mut inbox, &mut shutdown, None).await.is_none() {
                close_politely(&mut ws).await;
            }
            rec.closed();
        });
    }
    let timeout = Duration::from_millis(plan.connect_timeout_ms) + Duration::from_secs(5);
    let (ok, failed) = progress.wait(mine, timeout).await;
    if ok + failed < mine {
        notes.push(format!("{} connection attempts still pending after the ramp", mine - ok - failed));
    }
    ctx.stats.set_phase(Phase::Hold);
    tokio::time::sleep(ctx.duration()).await;
    let window = window.finish(&ctx.stats);
    ctx.io.barrier("stop", &ctx.stats).await?;
    ctx.begin_teardown();
    join_all(&mut tasks).await;
    Ok(Outcome { window, notes, chaos: None })
}
