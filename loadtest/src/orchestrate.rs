//! The parent process: resolves the plan, starts servers (`--spawn-cluster`) and workers
//! (in-process, or `--processes N` children), releases barriers, samples the servers,
//! prints progress, merges everything into the [`Report`] and applies the thresholds.
//!
//! The steps of a run: `workers` starts the workers and talks to them, `collect` merges
//! what they report until every one has finished, `servers` watches the servers meanwhile,
//! `assemble` turns it all into the report, and `progress` prints the live line.

mod assemble;
mod chaos;
mod collect;
mod progress;
mod servers;
mod workers;

use std::io::Write as _;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cli::{Command, Common};
use crate::plan::Plan;
use crate::procfs;
use crate::proto::now_micros;
use crate::report::{evaluate, Report, Thresholds};
use crate::rng::Rng;
use crate::spawn;

pub use workers::worker_main;

/// Exit codes.
pub const EXIT_PASS: i32 = 0;
pub const EXIT_THRESHOLD: i32 = 1;
pub const EXIT_ERROR: i32 = 2;

/// Runs a scenario command end to end; returns the exit code.
pub async fn run(command: Command) -> Result<i32> {
    let common = command.common().context("no scenario given")?.clone();
    let mut plan = Plan::from_command(&command)?;
    if let Command::Chaos(args) = &command {
        procfs::raise_nofile_limit();
        return chaos::run(args, plan).await;
    }
    procfs::raise_nofile_limit();
    let mut cluster = None;
    if let Some(nodes) = common.spawn_cluster {
        if !common.urls.is_empty() {
            bail!("--spawn-cluster starts its own nodes: drop --url");
        }
        let bin = common.server_bin.clone().context("--spawn-cluster needs --server-bin PATH")?;
        if plan.jwt_secret.is_none() && !plan.raw {
            plan.jwt_secret = Some(Rng::from_time(7).hex_id(32));
        }
        let mut server_args = common.server_args.clone();
        if plan.compression && !plan.raw && !server_args.iter().any(|arg| arg.starts_with("--compression")) {
            server_args.extend(["--compression".to_string(), "on".to_string()]);
        }
        let started =
            spawn::spawn(nodes, &bin, plan.raw, plan.jwt_secret.as_deref(), &server_args, common.server_log.as_deref())
                .await?;
        plan.urls = started.urls();
        eprintln!("ringcast-loadtest: started {} node(s): {}", started.nodes.len(), plan.urls.join(" "));
        cluster = Some(started);
    }
    let mut pids = common.server_pids.clone();
    if let Some(cluster) = &cluster {
        pids.extend(cluster.pids());
    }
    let result = run_plan(plan, &common, pids).await;
    let mut stop_notes = Vec::new();
    if let Some(cluster) = cluster {
        stop_notes = cluster.stop(Duration::from_secs(15)).await;
    }
    let mut report = result?;
    report.notes.extend(stop_notes);
    finish(report, &common)
}

/// Starts the workers, collects what they report while watching the servers, and
/// assembles the report.
async fn run_plan(plan: Plan, common: &Common, pids: Vec<u32>) -> Result<Report> {
    run_plan_with(plan, common, pids, collect::Hooks::default()).await
}

/// [`run_plan`] with hooks into the event loop.
async fn run_plan_with(mut plan: Plan, common: &Common, pids: Vec<u32>, hooks: collect::Hooks) -> Result<Report> {
    let targets = plan.finish()?;
    let endpoints = if !plan.raw && !common.no_metrics { servers::metrics_endpoints(&targets) } else { Vec::new() };
    plan.start_at_unix_ms = now_micros() / 1000 + 200;
    let mut workers = workers::Workers::start(&plan).await?;
    let collected = collect::collect(&plan, &mut workers, &endpoints, pids, common.quiet, hooks).await?;
    workers.wait_children().await;
    assemble::report(&plan, collected)
}

/// Thresholds, output files, the table; returns the exit code.
fn finish(mut report: Report, common: &Common) -> Result<i32> {
    let thresholds = Thresholds {
        max_p99_ms: common.max_p99_ms,
        min_deliveries_per_sec: common.min_deliveries_per_sec,
        max_violations: common.max_violations,
        max_errors: common.max_errors,
    };
    report.checks = evaluate(&report, &thresholds);
    if let Some(chaos) = &report.chaos {
        let done = chaos.faults.iter().filter(|f| f.error.is_none()).count() as u64;
        report.checks.push(crate::report::Check {
            name: "min_faults".into(),
            limit: chaos.min_faults as f64,
            actual: Some(done as f64),
            passed: done >= chaos.min_faults,
        });
    }
    let incomplete = report.notes.iter().any(|n| n.contains("a worker failed"));
    report.passed = report.checks.iter().all(|c| c.passed) && !incomplete;
    print!("{}", report.table());
    let _ = std::io::stdout().flush();
    if let Some(path) = &common.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &common.html_out {
        std::fs::write(path, crate::html::render(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if incomplete {
        EXIT_ERROR
    } else if report.passed {
        EXIT_PASS
    } else {
        EXIT_THRESHOLD
    })
}
