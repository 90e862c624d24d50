//! The parent's event loop: merges what the workers report, releases each barrier once
//! every worker reached it, samples the servers every second, and ends when every worker
//! sent its final message (or fails on Ctrl-C, a worker's early end, or the time limit).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::time::Instant;

use super::progress::Progress;
use super::servers::{scrape_all, ServerWatch};
use super::workers::{Event, Workers};
use crate::plan::Plan;
use crate::promscrape::Endpoint;
use crate::report::{Aggregate, MetricsSummary, WorkerMsg};

/// Everything a run gathered, for the report.
pub struct Collected {
    pub agg: Aggregate,
    pub watch: ServerWatch,
    pub metrics: MetricsSummary,
    pub metrics_before: Option<BTreeMap<String, f64>>,
    pub metrics_after: Option<BTreeMap<String, f64>>,
    pub worker_errors: Vec<String>,
}

/// What a scenario's parent side (chaos) hooks into the loop.
#[derive(Default)]
pub struct Hooks {
    /// Set once every worker reached `go` and was released.
    pub go: Option<tokio::sync::watch::Sender<bool>>,
    /// Faults injected so far, for the progress line.
    pub faults: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

/// The loop's state besides what it gathers.
struct Collector<'a> {
    workers: usize,
    endpoints: &'a [Endpoint],
    barriers: HashMap<String, (usize, i64)>,
    finished: Vec<bool>,
    progress: Progress,
    out: Collected,
    go: Option<tokio::sync::watch::Sender<bool>>,
}

/// Runs the event loop until every worker sent its final message.
pub async fn collect(
    plan: &Plan,
    workers: &mut Workers,
    endpoints: &[Endpoint],
    pids: Vec<u32>,
    quiet: bool,
    hooks: Hooks,
) -> Result<Collected> {
    let count = plan.worker_count;
    let mut collector = Collector {
        workers: count,
        endpoints,
        barriers: HashMap::new(),
        finished: vec![false; count],
        progress: Progress::new(quiet, hooks.faults),
        go: hooks.go,
        out: Collected {
            agg: Aggregate::default(),
            watch: ServerWatch::new(pids, workers.pids()),
            metrics: MetricsSummary { endpoints: endpoints.iter().map(Endpoint::url).collect(), ..Default::default() },
            metrics_before: None,
            metrics_after: None,
            worker_errors: Vec::new(),
        },
    };
    let start = Instant::now() + Duration::from_millis(200);
    let mut sampler = tokio::time::interval_at(start, Duration::from_secs(1));
    let limit = time_limit(plan);
    let hard_deadline = Instant::now() + limit;
    collector.out.watch.sample(0);
    let mut second_of_sampler = 0u32;
    loop {
        tokio::select! {
            event = workers.events.recv() => {
                let Some((index, event)) = event else { break };
                if collector.on_event(index, event, workers).await? {
                    break;
                }
            }
            _ = sampler.tick() => {
                collector.out.watch.sample(second_of_sampler);
                second_of_sampler += 1;
            }
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            _ = tokio::time::sleep_until(hard_deadline) => bail!("the run exceeded its time limit of {limit:?}"),
        }
    }
    collector.progress.done();
    Ok(collector.out)
}

/// How long a run may take at the most: its connects, duration and drain, with slack.
fn time_limit(plan: &Plan) -> Duration {
    Duration::from_secs_f64(plan.scenario.connections() as f64 / plan.connect_rate)
        + Duration::from_millis(plan.duration_ms + plan.drain_ms + 2 * plan.connect_timeout_ms)
        + Duration::from_secs(120)
}

impl Collector<'_> {
    /// Handles one event of worker `index`; returns true once every worker has finished.
    async fn on_event(&mut self, index: usize, event: Event, workers: &mut Workers) -> Result<bool> {
        match event {
            Event::Msg(WorkerMsg::Tick(tick)) => {
                let agg = &mut self.out.agg;
                if agg.absorb_tick(&tick, self.workers)? {
                    if let Some(second) = agg.seconds.get(&tick.second) {
                        self.progress.line(tick.second, second, &agg.latency);
                    }
                }
            }
            Event::Msg(WorkerMsg::Barrier { name, open }) => self.on_barrier(name, open, workers).await?,
            Event::Msg(WorkerMsg::Final(fin)) => {
                if let Some(error) = &fin.error {
                    self.out.worker_errors.push(format!("worker {index}: {error}"));
                }
                self.finished[index] = true;
                self.out.agg.absorb_final(fin);
                if self.finished.iter().all(|f| *f) {
                    return Ok(true);
                }
            }
            Event::Exited(how) => {
                if !self.finished[index] {
                    bail!("worker {index} ended before reporting ({how})");
                }
            }
        }
        Ok(false)
    }

    /// A worker reached barrier `name`: once all did, samples the servers around `go` and
    /// `stop`, then releases them all.
    async fn on_barrier(&mut self, name: String, open: i64, workers: &mut Workers) -> Result<()> {
        let entry = self.barriers.entry(name.clone()).or_insert((0, 0));
        entry.0 += 1;
        entry.1 += open;
        if entry.0 == self.workers {
            let open_total = entry.1;
            let out = &mut self.out;
            match name.as_str() {
                "go" => {
                    out.watch.at_go();
                    out.metrics_before = Some(scrape_all(self.endpoints, &mut out.metrics.errors).await);
                }
                "stop" => {
                    out.watch.at_stop(open_total);
                    out.metrics_after = Some(scrape_all(self.endpoints, &mut out.metrics.errors).await);
                }
                _ => {}
            }
            workers.release(&name).await?;
            if name == "go" {
                if let Some(go) = &self.go {
                    let _ = go.send(true);
                }
            }
        }
        Ok(())
    }
}
