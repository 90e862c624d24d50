//! `/metrics` against `grafana/`: every metric a dashboard panel or an alert rule uses is
//! exported by a fresh node, every exported metric is named `ringcast_*` and has help text,
//! and the metrics added for operations (publish latency, rooms subscribed, outbound
//! queues, process figures) move when the node works.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::*;
use common::*;
use serde_json::Value;

/// Series names Prometheus makes itself for every target (not exported by ringcast).
const SYNTHETIC: &[&str] = &["up"];

fn grafana_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana")
}

/// Every `ringcast_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("ringcast_") {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Every `expr` string anywhere in a dashboard.
fn exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => exprs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| exprs(item, out)),
        _ => {}
    }
}

/// The dashboards' expressions, by file.
fn dashboard_exprs() -> Vec<(String, Vec<String>)> {
    let dir = grafana_dir().join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("read {}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let json: Value = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            let mut found = Vec::new();
            exprs(&json["panels"], &mut found);
            (path.file_name().unwrap().to_string_lossy().into_owned(), found)
        })
        .collect()
}

fn alert_rules() -> String {
    std::fs::read_to_string(grafana_dir().join("alerts/ringcast.rules.yml")).expect("alert rules")
}

/// The series names of a Prometheus text exposition (a histogram gives `_bucket`, `_sum`
/// and `_count`).
fn exported(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Names in `used` that `exported` lacks.
fn missing(used: &BTreeSet<String>, exported: &BTreeSet<String>) -> Vec<String> {
    used.iter().filter(|name| !exported.contains(*name)).cloned().collect()
}

/// The value of one series (`name` with its labels exactly as rendered, e.g.
/// `ringcast_disconnects_total{code="4009"}`), summed over matching lines.
fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .filter(|line| line.split_once(' ').is_some_and(|(name, _)| name == series))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn test_dashboards_and_alerts_use_metrics_and_nothing_else() {
    let dashboards = dashboard_exprs();
    let names: Vec<&str> = dashboards.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["cluster.json", "overview.json", "store.json", "webhooks.json"]);
    for (file, exprs) in &dashboards {
        assert!(exprs.len() >= 4, "{file} has {} expressions", exprs.len());
        for expr in exprs {
            assert!(!metric_names(expr).is_empty(), "{file}: an expression without a ringcast metric: {expr}");
        }
    }
    let rules = alert_rules();
    for alert in [
        "NodeDown",
        "NoReadyMembers",
        "PublishLatencyHigh",
        "SlowConsumerSpike",
        "StoreErrors",
        "LinkReconnectStorm",
        "WebhookReceiverFailing",
    ] {
        assert!(rules.contains(&format!("alert: Ringcast{alert}")), "alert Ringcast{alert} is missing");
    }
    // The checker finds what is not there.
    let exported: BTreeSet<String> = ["ringcast_a_total".to_string()].into();
    assert_eq!(missing(&metric_names("rate(ringcast_a_total[5m]) / ringcast_b"), &exported), ["ringcast_b"]);
    assert!(missing(&metric_names("sum(rate(ringcast_a_total{x=\"y\"}[1m]))"), &exported).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_every_metric_of_dashboards_and_alerts_is_exported_by_a_fresh_node() {
    // A cluster of one, as the chart runs it: the cluster metrics exist too; with a webhook
    // endpoint, whose series exist from the start.
    let cluster = TestCluster::start_with(&["obs1"], &["--webhook-url", "http://127.0.0.1:9/hooks"]).await;
    let response = cluster.node(0).get("/metrics").await;
    assert_eq!(response.status, 200);
    let exported = exported(&response.body);

    let mut used = BTreeSet::new();
    for (_, exprs) in dashboard_exprs() {
        for expr in exprs {
            used.extend(metric_names(&expr));
        }
    }
    let rules = alert_rules();
    used.extend(metric_names(&rules));
    assert!(used.len() >= 30, "dashboards and alerts use {} metrics: {used:?}", used.len());
    assert_eq!(
        missing(&used, &exported),
        Vec::<String>::new(),
        "used but not exported by a fresh node:\n{}",
        response.body
    );
    for synthetic in SYNTHETIC {
        assert!(rules.contains(&format!("{synthetic}{{")), "the rules use {synthetic}");
    }

    // Every exported metric is ringcast's and declared with help text.
    for name in &exported {
        assert!(name.starts_with("ringcast_"), "{name} is not named ringcast_*");
    }
    let helped: BTreeSet<&str> =
        response.body.lines().filter_map(|line| line.strip_prefix("# HELP ")?.split(' ').next()).collect();
    for name in &exported {
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| name.strip_suffix(suffix)).unwrap_or(name);
        assert!(helped.contains(base) || helped.contains(name.as_str()), "{name} has no help text");
    }
    // Labelled series a fresh node must already show at zero.
    for series in [
        r#"ringcast_disconnects_total{code="4009"}"#,
        r#"ringcast_disconnects_total{code="4008"}"#,
        r#"ringcast_errors_total{code="rate_limited"}"#,
        r#"ringcast_cluster_members{state="ready"}"#,
    ] {
        assert!(response.body.lines().any(|line| line.starts_with(&format!("{series} "))), "{series} missing");
    }
    assert_eq!(value(&response.body, "ringcast_store_up"), 1.0, "the memory store is up");
    assert!(value(&response.body, "ringcast_process_resident_memory_bytes") > 0.0);
    assert!(value(&response.body, "ringcast_process_open_fds") > 0.0);
    assert!(value(&response.body, "ringcast_process_max_fds") >= value(&response.body, "ringcast_process_open_fds"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_publish_latency_rooms_and_queues_are_measured_on_the_edge() {
    // Two nodes: a publish through an edge that does not own the room crosses a link.
    let cluster = TestCluster::start(&["obs-a", "obs-b"]).await;
    let remote_room = cluster.room_owned_by(1, "far");
    let local_room = cluster.room_owned_by(0, "near");
    let edge = cluster.node(0);
    let mut alice = edge.client("alice").await;
    let mut bob = edge.client("bob").await;
    for room in [&remote_room, &local_room] {
        alice.join(room).await;
        bob.join(room).await;
    }
    for index in 0..3 {
        alice.say(&remote_room, &format!("far {index}")).await;
        alice.say(&local_room, &format!("near {index}")).await;
    }
    for _ in 0..3 {
        bob.recv_message(&remote_room).await;
        bob.recv_message(&local_room).await;
    }
    let body = edge.get("/metrics").await.body;
    assert_eq!(value(&body, "ringcast_publish_seconds_count"), 6.0, "six acked publishes on the edge:\n{body}");
    assert!(value(&body, "ringcast_publish_seconds_sum") > 0.0);
    assert!(value(&body, "ringcast_peer_request_seconds_count") >= 3.0, "the remote publishes crossed the link");
    let owner = cluster.node(1).get("/metrics").await.body;
    assert_eq!(value(&owner, "ringcast_publish_seconds_count"), 0.0, "latency is recorded on the origin edge only");

    // The edge samples its rooms (two chat rooms, two personal rooms) and queues every 5 s.
    let sampled = eventually(Duration::from_secs(8), || async {
        let body = edge.get("/metrics").await.body;
        value(&body, "ringcast_rooms_subscribed") >= 4.0
    })
    .await;
    assert!(sampled, "rooms subscribed on the edge: {}", edge.get("/metrics").await.body);
    let body = edge.get("/metrics").await.body;
    assert!(body.lines().any(|line| line.starts_with("ringcast_outbox_frames ")), "{body}");
    assert!(value(&body, "ringcast_outbox_frames_max") <= value(&body, "ringcast_outbox_frames"));
    assert!(value(&body, "ringcast_peer_frames_total{direction=\"out\"}") > 0.0);
}
