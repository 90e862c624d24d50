//! `connect`: ramp N idle connections at a given rate, hold them for `--duration`, close.
//! The parent samples the server's RSS at the start barrier and at the stop barrier (after
//! the hold, before the close), which gives memory per idle connection.

use std::sync::Arc;

use anyhow::Result;
use tokio::task::JoinSet;

use super::{join_all, Outcome, Pacer, Progress};
use crate::stats::{Phase, WindowStart};
use crate::worker::{close_politely, read_idle, Ctx, Inbox};

pub async fn run(ctx: Arc<Ctx>, connections: u64, rate: f64) -> Result<Outcome> {
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
            let Some(mut ws) = ctx.open(i, Some(&user), ctx.raw().then_some("idle"), &rec).await else {
                progress.failed();
                return;
            };
            progress.ok();
            let mut inbox = Inbox::new(rec.clone(), ctx.raw());
            let mut shutdown = ctx.shutdown.clone();
            if read_idle(&mut ws, &mut inbox, &mut shutdown, None).await.is_none() {
                close_politely(&mut ws).await;
            }
            rec.closed();
        });
    }
    let timeout = std::time::Duration::from_millis(plan.connect_timeout_ms) + std::time::Duration::from_secs(5);
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
