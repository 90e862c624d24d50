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
