//! `ringcast-loadtest suite`: the standard scenarios of issue 16, each run as a child
//! `ringcast-loadtest` process (the same scenario code and flags as by hand), repeated and
//! interleaved, summed up in a record (`bench/results/<date>.json` + an HTML page) and
//! compared with the previous record.
//!
//! [`record`] holds the record format and the figures taken from one run's report,
//! [`compare`] the noise and regression logic, [`page`] the HTML.

pub mod compare;
pub mod page;
pub mod record;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cli::SuiteArgs;
use crate::spawn;
use record::{Machine, Record, RunFigures, ScenarioRecord};

/// One scenario of the suite: the runs it makes, or why it cannot be run.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// why it is not available here; no runs then
    pub unavailable: Option<String>,
    /// the variants run in alternation each repeat (e.g. ringcast then raw)
    pub variants: Vec<Variant>,
    pub repeats: usize,
}

#[derive(Debug, Clone)]
pub struct Variant {
    /// "ringcast" or "raw"
    pub mode: String,
    /// harness arguments after the binary name
    pub args: Vec<String>,
    /// start a Redis for the run and pass its URL to the nodes
    pub redis: bool,
    /// longest the child may take
    pub timeout: Duration,
}

/// Sizes of the suite: full (< 15 min) or `--quick` (a smoke of < 60 s).
struct Sizes {
    secs: u64,
    repeats: usize,
    idle_conns: u64,
    big_room: u64,
    many_rooms: (u64, u64),
    light: (u64, u64, f64),
    cluster_rate: f64,
    cluster_shapes: [u64; 2],
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                secs: 1,
                repeats: 1,
                idle_conns: 100,
                big_room: 20,
                many_rooms: (4, 5),
                light: (2, 5, 50.0),
                cluster_rate: 200.0,
                cluster_shapes: [3, 6],
            }
        } else {
            Sizes {
                secs: 5,
                repeats: 3,
                idle_conns: 10_000,
                big_room: 1000,
                many_rooms: (100, 100),
                light: (10, 10, 1000.0),
                cluster_rate: 50_000.0,
                cluster_shapes: [30, 200],
            }
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The scenario list for the given binaries and size.
pub fn scenarios(quick: bool, server_bin: &Path, raw_bin: &Path) -> Vec<Scenario> {
    let z = Sizes::new(quick);
    let secs = format!("{}s", z.secs);
    let timeout = Duration::from_secs(z.secs + 90);
    let node = |nodes: usize, raw: bool| -> Vec<String> {
        let mut args = strings(&["--spawn-cluster", &nodes.to_string(), "--server-bin"]);
        args.push(if raw { raw_bin } else { server_bin }.display().to_string());
        if raw {
            args.push("--raw".into());
        }
        args.extend(strings(&["--duration", &secs, "--drain", "2s", "--quiet"]));
        args
    };
    let variant = |mode: &str, args: Vec<String>, redis: bool| Variant { mode: mode.into(), args, redis, timeout };
    let mut list = Vec::new();

    let mut args = strings(&["connect", "--connections", &z.idle_conns.to_string(), "--rate", "2000"]);
    args.extend(node(1, false));
    list.push(Scenario {
        name: "idle_density".into(),
        description: format!("{} idle connections on one node, RSS per connection", z.idle_conns),
        unavailable: None,
        variants: vec![variant("ringcast", args, false)],
        repeats: 1,
    });

    // The same with each connection joined to one of 100 rooms: the edge's and the owner's
    // membership of an idle connection (issue 16).
    let rooms = (z.idle_conns / 100).max(1);
    let mut args = strings(&[
        "connect",
        "--connections",
        &z.idle_conns.to_string(),
        "--rate",
        "2000",
        "--join-rooms",
        &rooms.to_string(),
    ]);
    args.extend(node(1, false));
    list.push(Scenario {
        name: "idle_density_joined".into(),
        description: format!(
            "{} idle connections on one node, each joined to one of {rooms} rooms, RSS per connection",
            z.idle_conns
        ),
        unavailable: None,
        variants: vec![variant("ringcast", args, false)],
        repeats: 1,
    });

    for (rooms, subs) in [(1, z.big_room), z.many_rooms] {
        for in_flight in [16u32, 64] {
            let shape = |raw: bool| {
                let mut args = strings(&[
                    "fanout",
                    "--rooms",
                    &rooms.to_string(),
                    "--subscribers",
                    &subs.to_string(),
                    "--publishers",
                    "1",
                    "--closed-loop",
                    "--in-flight",
                    &in_flight.to_string(),
                ]);
                if !raw {
                    args.extend(strings(&["--feedback", "delivery"]));
                }
                args.extend(node(1, raw));
                args
            };
            list.push(Scenario {
                name: format!("fanout_{rooms}x{subs}_inflight{in_flight}"),
                description: format!(
                    "{rooms} room(s) x {subs} subscribers, 1 publisher each, closed loop, {in_flight} in flight; ringcast and raw-broadcast in alternation"
                ),
                unavailable: None,
                variants: vec![variant("ringcast", shape(false), false), variant("raw", shape(true), false)],
                repeats: z.repeats,
            });
        }
    }

    let (rooms, subs, rate) = z.light;
    let mut args = strings(&[
        "fanout",
        "--rooms",
        &rooms.to_string(),
        "--subscribers",
        &subs.to_string(),
        "--publishers",
        "1",
        "--rate",
        &rate.to_string(),
    ]);
    args.extend(node(1, false));
    list.push(Scenario {
        name: "light_latency".into(),
        description: format!("one node, {rate} publishes/s open loop, {rooms} rooms x {subs}"),
        unavailable: None,
        variants: vec![variant("ringcast", args, false)],
        repeats: z.repeats.min(2),
    });

    for rooms in z.cluster_shapes {
        for redis in [false, true] {
            let mut args = strings(&[
                "fanout",
                "--rooms",
                &rooms.to_string(),
                "--subscribers",
                "2",
                "--publishers",
                "1",
                "--rate",
                &z.cluster_rate.to_string(),
            ]);
            args.extend(node(3, false));
            let store = if redis { "redis" } else { "memory" };
            list.push(Scenario {
                name: format!("cluster3_{rooms}x2_{store}"),
                description: format!(
                    "3 nodes, {rooms} rooms x 2 subscribers, {} publishes/s open loop, store {store}",
                    z.cluster_rate
                ),
                unavailable: None,
                variants: vec![variant("ringcast", args, redis)],
                repeats: z.repeats.min(2),
            });
        }
    }

    // permessage-deflate: the same run without and with compression, in alternation, with
    // ~1 KiB chat-like messages (the harness's padding is words).
    let with_and_without = |args: Vec<String>| {
        let mut compressed = args.clone();
        compressed.push("--compression".into());
        vec![variant("ringcast", args, false), variant("compressed", compressed, false)]
    };
    for rooms in z.cluster_shapes {
        let mut args = strings(&[
            "fanout",
            "--rooms",
            &rooms.to_string(),
            "--subscribers",
            "2",
            "--publishers",
            "1",
            "--rate",
            &z.cluster_rate.to_string(),
            "--payload-bytes",
            "1000",
        ]);
        args.extend(node(3, false));
        list.push(Scenario {
            name: format!("cluster3_{rooms}x2_compressed"),
            description: format!(
                "3 nodes, {rooms} rooms x 2, {} publishes/s open loop, ~1 KiB messages; permessage-deflate off and on in alternation",
                z.cluster_rate
            ),
            unavailable: None,
            variants: with_and_without(args),
            repeats: z.repeats.min(2),
        });
    }
    let mut args = strings(&[
        "fanout",
        "--rooms",
        "1",
        "--subscribers",
        &z.big_room.to_string(),
        "--publishers",
        "1",
        "--closed-loop",
        "--in-flight",
        "16",
        "--feedback",
        "delivery",
        "--payload-bytes",
        "1000",
    ]);
    args.extend(node(1, false));
    list.push(Scenario {
        name: format!("fanout_1x{}_compressed", z.big_room),
        description: format!(
            "1 room x {} subscribers, closed loop, 16 in flight, ~1 KiB messages; permessage-deflate off and on in alternation",
            z.big_room
        ),
        unavailable: None,
        variants: with_and_without(args),
        repeats: z.repeats,
    });
    list
}

/// Runs the suite; returns the exit code.
pub async fn run(args: SuiteArgs) -> Result<i32> {
    let started = Instant::now();
    let here = std::env::current_exe().context("no path of this binary")?;
    let dir = here.parent().context("no directory of this binary")?.to_path_buf();
    let server_bin = args.server_bin.clone().unwrap_or_else(|| dir.join("ringcast"));
    let raw_bin = args.raw_bin.clone().unwrap_or_else(|| dir.join("raw-broadcast"));
    for bin in [&server_bin, &raw_bin] {
        if !bin.exists() {
            anyhow::bail!("no server binary at {} (build it, or give --server-bin / --raw-bin)", bin.display());
        }
    }
    let now_ms = crate::proto::now_micros() / 1000;
    let date = record::utc_date(now_ms / 1000);
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("bench/results").join(format!("{date}.json")));
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let scratch = std::env::temp_dir().join(format!("ringcast-suite-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;

    let mut record = Record::new(now_ms, &date, args.quick, Machine::read());
    for scenario in scenarios(args.quick, &server_bin, &raw_bin) {
        let mut entry = ScenarioRecord::new(&scenario);
        if scenario.unavailable.is_none() {
            for repeat in 0..scenario.repeats {
                for variant in &scenario.variants {
                    eprintln!(
                        "suite: {} {} run {}/{} ({:.0} s in)",
                        scenario.name,
                        variant.mode,
                        repeat + 1,
                        scenario.repeats,
                        started.elapsed().as_secs_f64()
                    );
                    let json = scratch.join(format!("{}-{}-{repeat}.json", scenario.name, variant.mode));
                    let run = run_variant(&here, variant, &json, repeat).await;
                    entry.runs.push(run);
                }
            }
        }
        entry.summarize();
        record.scenarios.push(entry);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    record.elapsed_secs = started.elapsed().as_secs_f64();

    let baseline = match &args.baseline {
        Some(path) => Some((path.clone(), Record::load(path)?)),
        None => record::previous(&out, record.started_at_unix_ms),
    };
    let rows = baseline.as_ref().map(|(_, base)| compare::compare(base, &record)).unwrap_or_default();
    record.baseline = baseline.as_ref().map(|(path, _)| path.display().to_string());
    record.regressions = rows.iter().filter(|r| r.regression).map(|r| format!("{} {}", r.scenario, r.figure)).collect();

    std::fs::write(&out, serde_json::to_string_pretty(&record)?)
        .with_context(|| format!("cannot write {}", out.display()))?;
    let html = out.with_extension("html");
    std::fs::write(&html, page::render(&record, &rows)).with_context(|| format!("cannot write {}", html.display()))?;
    print!("{}", record.table());
    match &baseline {
        Some((path, _)) => {
            println!("\ncompared with {}:", path.display());
            print!("{}", compare::table(&rows));
        }
        None => println!("\nno earlier record in {} to compare with", out.parent().unwrap_or(Path::new(".")).display()),
    }
    println!("\nrecord: {} and {} ({:.0} s)", out.display(), html.display(), record.elapsed_secs);
    let failed_runs = record.scenarios.iter().flat_map(|s| &s.runs).filter(|r| r.error.is_some()).count();
    if failed_runs > 0 {
        eprintln!("suite: {failed_runs} run(s) failed, see the record");
    }
    Ok(if args.fail_on_regression && !record.regressions.is_empty() { 1 } else { 0 })
}

/// Runs one variant as a child harness and reads its JSON report.
async fn run_variant(here: &Path, variant: &Variant, json: &Path, repeat: usize) -> RunFigures {
    let mut redis = None;
    let mut args = variant.args.clone();
    if variant.redis {
        match spawn::spawn_redis(Path::new("redis-server"), "127.0.0.1").await {
            Ok(started) => {
                args.push(format!("--server-arg=--redis-url={}", started.url));
                redis = Some(started);
            }
            Err(err) => return RunFigures::failed(variant, repeat, format!("{err:#}")),
        }
    }
    args.push("--json-out".into());
    args.push(json.display().to_string());
    let child = tokio::process::Command::new(here)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let outcome = tokio::time::timeout(variant.timeout, child).await;
    if let Some(redis) = redis {
        redis.stop().await;
    }
    let output = match outcome {
        Err(_) => return RunFigures::failed(variant, repeat, format!("timed out after {:?}", variant.timeout)),
        Ok(Err(err)) => return RunFigures::failed(variant, repeat, format!("cannot run the harness: {err}")),
        Ok(Ok(output)) => output,
    };
    let report =
        std::fs::read_to_string(json).ok().and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
    let _ = std::fs::remove_file(json);
    match report {
        Some(report) => {
            let mut run = RunFigures::from_report(variant, repeat, &report);
            if !output.status.success() {
                run.notes.push(format!("harness exit {}", output.status.code().unwrap_or(-1)));
            }
            run
        }
        None => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().last().unwrap_or("").trim().to_string();
            RunFigures::failed(
                variant,
                repeat,
                format!("no report (exit {}): {last}", output.status.code().unwrap_or(-1)),
            )
        }
    }
}
