//! Smoke test: every scenario against a real `ringcast` node (debug build) with tiny
//! numbers and loose thresholds, plus the raw mode against `raw-broadcast`. Proves the
//! harness works end to end, not the speed.
//!
//! The server binary is looked up in the workspace's target directory; when it is missing,
//! `cargo build -p ringcast` is tried first, and the test is skipped (with a message) only
//! if that does not produce it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"),
    }
}

fn ringcast_bin() -> Option<PathBuf> {
    let bin = target_dir().join("debug").join("ringcast");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "ringcast", "--bin", "ringcast"])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("note: `cargo build -p ringcast` failed");
        }
    }
    if bin.exists() {
        Some(bin)
    } else {
        eprintln!("SKIPPED: no ringcast binary at {} even after `cargo build -p ringcast`", bin.display());
        None
    }
}

fn run(args: &[&str]) -> serde_json::Value {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ringcast-loadtest-smoke-{}-{}-{n}", std::process::id(), args[0]));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("report.json");
    let html = json.with_extension("html");
    let output = Command::new(env!("CARGO_BIN_EXE_ringcast-loadtest"))
        .args(args)
        .args(["--quiet", "--json-out"])
        .arg(&json)
        .arg("--html-out")
        .arg(&html)
        .output()
        .expect("run the harness");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "harness failed ({}):\n{stdout}\n{stderr}", output.status);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(std::fs::read_to_string(&html).unwrap().contains("<svg"));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(report["violations"], 0, "violations in {stdout}");
    assert_eq!(report["passed"], true);
    report
}

fn spawn_args<'a>(bin: &'a Path, scenario: &'a str) -> Vec<&'a str> {
    vec![scenario, "--spawn-cluster", "1", "--server-bin", bin.to_str().unwrap(), "--duration", "2s"]
}

#[test]
fn smoke_fanout_closed_loop_and_rate() {
    let Some(bin) = ringcast_bin() else { return };
    let mut args = spawn_args(&bin, "fanout");
    args.extend([
        "--rooms",
        "2",
        "--subscribers",
        "10",
        "--publishers",
        "1",
        "--closed-loop",
        "--min-deliveries-per-sec",
        "1",
        "--max-errors",
        "0",
    ]);
    let report = run(&args);
    assert!(report["counts"]["delivered"].as_u64().unwrap() > 0);
    assert!(report["run"]["publishes_acked_per_sec"].as_f64().unwrap() > 0.0);
    assert!(report["latency_ms"]["count"].as_u64().unwrap() > 0);
    let metrics = &report["metrics"];
    assert!(metrics["deliveries"].as_f64().unwrap() > 0.0, "{metrics}");
    assert_harness_window(&report);

    let mut args = spawn_args(&bin, "fanout");
    args.extend([
        "--rooms",
        "1",
        "--subscribers",
        "10",
        "--publishers",
        "2",
        "--rate",
        "50",
        "--processes",
        "2",
        "--max-p99-ms",
        "1000",
    ]);
    let report = run(&args);
    assert!(report["counts"]["delivered"].as_u64().unwrap() > 0);
    assert_eq!(report["machine"]["processes"], 2);
    assert_harness_window(&report);
}

/// The harness's CPU from `go` to `stop` is reported, is some of the run's and not more
/// than the whole run's (which counts connecting and closing too).
fn assert_harness_window(report: &serde_json::Value) {
    let window = &report["harness_window"];
    let cpu = window["cpu_seconds"].as_f64().unwrap_or_else(|| panic!("no harness window: {window}"));
    let total = report["harness_cpu_seconds"].as_f64().unwrap();
    assert!(cpu > 0.0 && cpu <= total + 0.02, "window {cpu} s, run {total} s");
    assert!(window["cpu_avg_cores"].as_f64().unwrap() > 0.0, "{window}");
    assert!(window["cpu_us_per_delivery"].as_f64().unwrap() > 0.0, "{window}");
}

#[test]
fn smoke_fanout_with_compression() {
    let Some(bin) = ringcast_bin() else { return };
    let mut args = spawn_args(&bin, "fanout");
    args.extend([
        "--rooms",
        "1",
        "--subscribers",
        "10",
        "--publishers",
        "1",
        "--closed-loop",
        "--payload-bytes",
        "1000",
        "--compression",
        "--min-deliveries-per-sec",
        "1",
        "--max-errors",
        "0",
    ]);
    let report = run(&args);
    let delivered = report["counts"]["delivered"].as_u64().unwrap();
    assert!(delivered > 0);
    assert!(report["latency_ms"]["count"].as_u64().unwrap() > 0, "stamps read from inflated frames");
    let deltas = &report["metrics"]["deltas"];
    let compressed = deltas["ringcast_frames_compressed_total"].as_f64().unwrap_or(0.0);
    let deliveries = deltas["ringcast_deliveries_total"].as_f64().unwrap();
    // Compressed once per message, not once per subscriber (10 here).
    assert!(compressed > 0.0 && compressed * 5.0 < deliveries, "{compressed} deflates for {deliveries} deliveries");
    let written = report["server"]["written_bytes_per_delivery"].as_f64().unwrap();
    assert!(written < 1000.0, "a ~1 KiB message goes compressed: {written} bytes written per delivery");
}

#[test]
fn smoke_connect() {
    let Some(bin) = ringcast_bin() else { return };
    let mut args = spawn_args(&bin, "connect");
    args.extend(["--connections", "20", "--rate", "200", "--max-errors", "0"]);
    let report = run(&args);
    assert_eq!(report["connections"]["connected"], 20);
    assert!(report["server"]["rss_per_connection_bytes"].as_f64().is_some());
}

#[test]
fn smoke_chat() {
    let Some(bin) = ringcast_bin() else { return };
    let mut args = spawn_args(&bin, "chat");
    args.extend(["--users", "20", "--rooms", "3", "--rooms-per-user", "2", "--rate", "200", "--max-errors", "0"]);
    let report = run(&args);
    assert!(report["counts"]["delivered"].as_u64().unwrap() > 0);
    assert!(report["counts"]["ops_answered"].as_u64().unwrap() > 0);
}

#[test]
fn smoke_churn() {
    let Some(bin) = ringcast_bin() else { return };
    let mut args = spawn_args(&bin, "churn");
    args.extend([
        "--clients",
        "20",
        "--rooms",
        "3",
        "--rate",
        "100",
        "--hold-ms",
        "200-600",
        "--reconnect-delay-ms",
        "0-100",
    ]);
    let report = run(&args);
    assert!(report["counts"]["delivered"].as_u64().unwrap() > 0);
    let rejoins =
        report["counts"]["recovered_true"].as_u64().unwrap() + report["counts"]["recovered_false"].as_u64().unwrap();
    assert!(rejoins > 0, "no rejoin with since happened");
}

#[test]
fn smoke_raw_fanout() {
    let raw = PathBuf::from(env!("CARGO_BIN_EXE_raw-broadcast"));
    let args = [
        "fanout",
        "--raw",
        "--spawn-cluster",
        "1",
        "--server-bin",
        raw.to_str().unwrap(),
        "--duration",
        "2s",
        "--rooms",
        "2",
        "--subscribers",
        "10",
        "--closed-loop",
    ];
    let report = run(&args);
    assert!(report["counts"]["delivered"].as_u64().unwrap() > 0);
    assert_eq!(report["mode"], "raw");
}

#[test]
fn refuses_remote_targets_and_bad_spawn() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringcast-loadtest"))
        .args(["connect", "--raw", "--url", "ws://192.0.2.1:9/", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    let out = Command::new(env!("CARGO_BIN_EXE_ringcast-loadtest"))
        .args(["connect", "--raw", "--spawn-cluster", "3", "--server-bin", "/bin/true", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("raw-broadcast has no cluster"));
}

#[test]
fn smoke_fanout_through_a_spawned_three_node_cluster() {
    let Some(bin) = ringcast_bin() else { return };
    let bin = bin.to_str().unwrap().to_string();
    let report = run(&[
        "fanout",
        "--spawn-cluster",
        "3",
        "--server-bin",
        &bin,
        "--duration",
        "2s",
        "--rooms",
        "6",
        "--subscribers",
        "3",
        "--publishers",
        "1",
        "--rate",
        "300",
    ]);
    assert!(report["counts"]["delivered"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["targets"].as_array().map(Vec::len), Some(3), "{report}");
}

/// Whether process `pid` still exists.
fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// A 3-node memory-mode chaos run of ~20 s with kill and drain faults: the report must
/// exist, hold at least two faults after which the cluster was whole again, with no
/// violation at all (the harness exits non-zero on one), and every node process the harness
/// started must be gone.
#[test]
fn smoke_chaos_kill_and_drain() {
    smoke_chaos("memory", &["--faults", "kill,drain"], &["kill", "drain"]);
}

/// The same over a Redis the harness starts itself (kill and restart): rejoins recover.
#[test]
fn smoke_chaos_kill_and_restart_over_redis() {
    smoke_chaos("redis", &["--faults", "kill,restart", "--spawn-redis"], &["kill", "restart"]);
}

/// One chaos run at a time: two clusters at once on two cores would measure the machine.
static CHAOS_RUNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn smoke_chaos(name: &str, faults_args: &[&str], kinds: &[&str]) {
    let _one_at_a_time = CHAOS_RUNS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(bin) = ringcast_bin() else { return };
    let dir = std::env::temp_dir().join(format!("ringcast-loadtest-smoke-chaos-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("report.json");
    let html = dir.join("report.html");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringcast-loadtest"))
        .args(["chaos", "--server-bin", bin.to_str().unwrap(), "--nodes", "3", "--duration", "20s"])
        .args(faults_args)
        .args(["--fault-interval", "5s", "--min-faults", "2", "--seed", "7"])
        .args(["--rooms", "3", "--subscribers", "4", "--rate", "30", "--max-violations", "0"])
        .args(["--quiet", "--json-out"])
        .arg(&json)
        .arg("--html-out")
        .arg(&html)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the harness");
    // Bounded: the harness gets 150 s, then is killed by its pid (its nodes die with it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(150);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Option<serde_json::Value> =
        std::fs::read_to_string(&json).ok().and_then(|text| serde_json::from_str(&text).ok());
    // Clean up every node the harness started, whatever happened.
    let pids: Vec<u32> = report
        .as_ref()
        .and_then(|r| r["chaos"]["pids_started"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.as_u64().map(|p| p as u32))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let left: Vec<u32> = pids.iter().copied().filter(|&pid| alive(pid)).collect();
    for &pid in &left {
        // SAFETY: kill(2) on a node pid the harness reported starting.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let status = status.expect("the chaos run did not end within 150 s");
    assert!(status.success(), "chaos run failed ({status}):\n{stdout}\n{stderr}");
    let report = report.expect("a JSON report");
    assert!(left.is_empty(), "node processes left running: {left:?}");
    assert_eq!(report["scenario"], "chaos");
    let faults = report["chaos"]["faults"].as_array().expect("fault events");
    assert!(faults.len() >= 2, "fewer than 2 faults: {}", report["chaos"]);
    for fault in faults {
        assert!(fault["error"].is_null(), "fault failed: {fault}");
        assert!(fault["whole_after_ms"].as_u64().is_some(), "cluster not whole after {fault}");
        assert!(kinds.contains(&fault["kind"].as_str().unwrap()), "{fault}");
    }
    assert!(pids.len() >= 3 + faults.len(), "a restart per fault: {pids:?}");
    assert!(report["counts"]["acked"].as_u64().unwrap() > 0);
    assert!(report["chaos"]["owed"].as_u64().unwrap() > 0);
    assert_eq!(report["violations"], 0, "{}", report["tallies"]);
    eprintln!(
        "chaos smoke ({name}): {} faults, violations {} ({}), undelivered {} of {} owed",
        faults.len(),
        report["violations"],
        report["tallies"]["violations"],
        report["chaos"]["undelivered"],
        report["chaos"]["owed"]
    );
}

#[test]
fn smoke_suite_quick_writes_a_record() {
    let Some(bin) = ringcast_bin() else { return };
    let dir = std::env::temp_dir().join(format!("ringcast-loadtest-smoke-suite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("2026-12-02.json");
    // An earlier (empty) record of the same kind, for the comparison to find.
    let earlier = serde_json::json!({
        "format": "ringcast-bench-suite/1", "date": "2026-12-01", "started_at_unix_ms": 1, "quick": true,
        "elapsed_secs": 1.0, "machine": {"cores": 2, "kernel": "k", "cpu_model": "c"}, "version": "0",
        "noise_rule": "", "scenarios": []
    });
    std::fs::write(dir.join("2026-12-01.json"), earlier.to_string()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ringcast-loadtest"))
        .args(["suite", "--quick", "--server-bin", bin.to_str().unwrap(), "--out"])
        .arg(&out)
        .output()
        .expect("run the suite");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "suite failed ({}):\n{stdout}\n{stderr}", output.status);
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(std::fs::read_to_string(out.with_extension("html")).unwrap().contains("benchmark suite"));
    assert_eq!(record["format"], "ringcast-bench-suite/1");
    assert!(record["machine"]["cores"].as_u64().unwrap() > 0);
    let scenarios = record["scenarios"].as_array().unwrap();
    let names: Vec<&str> = scenarios.iter().map(|s| s["name"].as_str().unwrap()).collect();
    for prefix in [
        "idle_density",
        "idle_density_joined",
        "fanout_1x",
        "fanout_4x",
        "light_latency",
        "cluster3_3x2_memory",
        "cluster3_6x2_redis",
    ] {
        assert!(names.iter().any(|n| n.starts_with(prefix)), "no {prefix} in {names:?}");
    }
    for s in scenarios {
        match s["status"].as_str().unwrap() {
            "measured" => {
                let figures = s["figures"].as_object().unwrap();
                assert!(figures.values().all(|f| f["median"].is_number()), "{s}");
                let throughput = figures
                    .get("ringcast.deliveries_per_sec")
                    .or_else(|| figures.get("ringcast.rss_per_connection_bytes"));
                assert!(throughput.is_some_and(|f| f["median"].as_f64().unwrap() > 0.0), "{s}");
                assert!(figures.contains_key("ringcast.harness_cpu_seconds"), "{s}");
                assert_eq!(figures["ringcast.violations"]["max"], 0.0, "{s}");
            }
            "not available" => assert!(s["reason"].as_str().unwrap().starts_with("not available"), "{s}"),
            other => panic!("scenario {} {other}: {s}", s["name"]),
        }
    }
    assert!(scenarios.iter().any(|s| s["figures"].get("ratio.deliveries_per_sec").is_some()));

    // The earlier record in the directory was found and compared with.
    assert!(stdout.contains("compared with") && stdout.contains("regression(s) beyond the noise"), "{stdout}");
    assert!(record["baseline"].as_str().unwrap().ends_with("2026-12-01.json"));
    let _ = std::fs::remove_dir_all(&dir);
}
