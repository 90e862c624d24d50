//! Every metric of the server crate, declared once with its unit and help text.
//!
//! Labels come only from small closed sets (message types of the protocol, error codes,
//! close codes); never room or user ids.

use std::sync::OnceLock;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter, Unit};

pub const CONNECTIONS: &str = "ringcast_connections";
pub const CONNECTIONS_ACCEPTED: &str = "ringcast_connections_accepted_total";
pub const CONNECTIONS_REJECTED: &str = "ringcast_connections_rejected_total";
pub const MESSAGES_IN: &str = "ringcast_messages_in_total";
pub const DELIVERIES: &str = "ringcast_deliveries_total";
pub const FRAMES_RENDERED: &str = "ringcast_frames_rendered_total";
pub const ERRORS: &str = "ringcast_errors_total";
pub const DISCONNECTS: &str = "ringcast_disconnects_total";
pub const ROOMS_OWNED: &str = "ringcast_rooms_owned";
pub const PEER_FORWARDS: &str = "ringcast_peer_forwards_total";
pub const PEER_SEND_FAILURES: &str = "ringcast_peer_send_failures_total";
pub const PEER_REQUEST_SECONDS: &str = "ringcast_peer_request_seconds";
pub const PEER_REQUESTS_FAILED: &str = "ringcast_peer_requests_failed_total";
pub const STORE_OPERATIONS: &str = "ringcast_store_operations_total";
pub const STORE_SECONDS: &str = "ringcast_store_operation_seconds";
pub const STORE_UP: &str = "ringcast_store_up";

/// Histogram buckets of every `_seconds` metric.
pub const SECONDS_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Registers help text and units; call once at start.
pub fn describe() {
    describe_gauge!(CONNECTIONS, Unit::Count, "open client connections on this node");
    describe_counter!(CONNECTIONS_ACCEPTED, Unit::Count, "client connections accepted");
    describe_counter!(CONNECTIONS_REJECTED, Unit::Count, "client upgrades refused, by reason");
    describe_counter!(MESSAGES_IN, Unit::Count, "client messages received, by type");
    describe_counter!(DELIVERIES, Unit::Count, "frames queued to local connections");
    describe_counter!(FRAMES_RENDERED, Unit::Count, "server frames serialized (a broadcast counts once)");
    describe_counter!(ERRORS, Unit::Count, "error replies sent to clients, by code");
    describe_counter!(DISCONNECTS, Unit::Count, "connections closed by the server, by close code");
    describe_gauge!(ROOMS_OWNED, Unit::Count, "rooms whose owner is this node");
    describe_counter!(PEER_FORWARDS, Unit::Count, "operations sent to a remote owner");
    describe_counter!(PEER_SEND_FAILURES, Unit::Count, "owner answers that could not be sent to their edge");
    describe_histogram!(
        PEER_REQUEST_SECONDS,
        Unit::Seconds,
        "time from forwarding a request to a remote owner to its answer"
    );
    describe_counter!(
        PEER_REQUESTS_FAILED,
        Unit::Count,
        "requests to remote owners answered unavailable (link down or timeout)"
    );
    describe_counter!(STORE_OPERATIONS, Unit::Count, "store operations, by operation and result (ok or error)");
    describe_histogram!(STORE_SECONDS, Unit::Seconds, "time a store operation took, by operation");
    describe_gauge!(STORE_UP, Unit::Count, "1 when the store answers (always 1 for memory), 0 while it is unreachable");
}

/// Message types used as the `type` label; anything else is counted as `other`.
const KNOWN_TYPES: &[&str] =
    &["auth", "auth.refresh", "room.join", "room.leave", "room.members", "room.history", "chat.send", "presence.ping"];

/// Handles of the counters bumped on every message, made once: `counter!` looks the
/// metric up in the registry on each call, which the profile showed on the hot path.
struct Hot {
    messages_in: Vec<(&'static str, Counter)>,
    messages_in_other: Counter,
    deliveries: Counter,
    frames_rendered: Counter,
    peer_forwards: Counter,
}

fn hot() -> &'static Hot {
    static HOT: OnceLock<Hot> = OnceLock::new();
    HOT.get_or_init(|| Hot {
        messages_in: KNOWN_TYPES.iter().map(|kind| (*kind, counter!(MESSAGES_IN, "type" => *kind))).collect(),
        messages_in_other: counter!(MESSAGES_IN, "type" => "other"),
        deliveries: counter!(DELIVERIES),
        frames_rendered: counter!(FRAMES_RENDERED),
        peer_forwards: counter!(PEER_FORWARDS),
    })
}

pub fn message_in(kind: &str) {
    let hot = hot();
    match hot.messages_in.iter().find(|(known, _)| *known == kind) {
        Some((_, counter)) => counter.increment(1),
        None => hot.messages_in_other.increment(1),
    }
}

pub fn connection_opened() {
    gauge!(CONNECTIONS).increment(1.0);
    counter!(CONNECTIONS_ACCEPTED).increment(1);
}

pub fn connection_closed() {
    gauge!(CONNECTIONS).decrement(1.0);
}

/// `reason` is one of `unauthorized`, `origin`, `capacity`, `bad_request`, `shutdown`.
pub fn connection_rejected(reason: &'static str) {
    counter!(CONNECTIONS_REJECTED, "reason" => reason).increment(1);
}

pub fn deliveries(count: u64) {
    hot().deliveries.increment(count);
}

pub fn frame_rendered() {
    hot().frames_rendered.increment(1);
}

pub fn error_sent(code: &'static str) {
    counter!(ERRORS, "code" => code).increment(1);
}

pub fn disconnect(code: u16) {
    let label = match code {
        1000 => "1000",
        1001 => "1001",
        1008 => "1008",
        1009 => "1009",
        1011 => "1011",
        1012 => "1012",
        1013 => "1013",
        4001 => "4001",
        4003 => "4003",
        4008 => "4008",
        4009 => "4009",
        _ => "other",
    };
    counter!(DISCONNECTS, "code" => label).increment(1);
}

pub fn peer_forward() {
    hot().peer_forwards.increment(1);
}

pub fn peer_request_answered(seconds: f64) {
    histogram!(PEER_REQUEST_SECONDS).record(seconds);
}

pub fn peer_requests_failed(count: usize) {
    counter!(PEER_REQUESTS_FAILED).increment(count as u64);
}

pub fn peer_send_failed() {
    counter!(PEER_SEND_FAILURES).increment(1);
}

pub fn rooms_owned(delta: f64) {
    gauge!(ROOMS_OWNED).increment(delta);
}

/// Store operations: `op` is one of the closed set of the store module (`load`, `append`,
/// `update`, `inbox`, `meta`, `remove`, ...).
pub fn store_operation(op: &'static str, ok: bool, seconds: f64) {
    counter!(STORE_OPERATIONS, "op" => op, "result" => if ok { "ok" } else { "error" }).increment(1);
    histogram!(STORE_SECONDS, "op" => op).record(seconds);
}

pub fn store_up(up: bool) {
    gauge!(STORE_UP).set(if up { 1.0 } else { 0.0 });
}
