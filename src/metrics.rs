//! Every metric of the server crate, declared once with its unit and help text.
//!
//! Labels come only from small closed sets (message types of the protocol, error codes,
//! close codes, rejection reasons, store operations); never room or user ids.
//! [`describe`] also registers every series a dashboard or alert relies on at zero, since
//! the exporter renders a series only once it is touched.

use std::sync::OnceLock;
use std::time::Instant;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter, Histogram, Unit,
};

use crate::protocol::ErrorCode;

pub const CONNECTIONS: &str = "ringcast_connections";
pub const CONNECTIONS_ACCEPTED: &str = "ringcast_connections_accepted_total";
pub const CONNECTIONS_REJECTED: &str = "ringcast_connections_rejected_total";
pub const MESSAGES_IN: &str = "ringcast_messages_in_total";
pub const DELIVERIES: &str = "ringcast_deliveries_total";
pub const FRAMES_RENDERED: &str = "ringcast_frames_rendered_total";
pub const FRAMES_COMPRESSED: &str = "ringcast_frames_compressed_total";
pub const COMPRESSION_IN_BYTES: &str = "ringcast_compression_in_bytes_total";
pub const COMPRESSION_OUT_BYTES: &str = "ringcast_compression_out_bytes_total";
pub const FRAMES_INFLATED: &str = "ringcast_frames_inflated_total";
pub const PUBLISH_SECONDS: &str = "ringcast_publish_seconds";
pub const ERRORS: &str = "ringcast_errors_total";
pub const DISCONNECTS: &str = "ringcast_disconnects_total";
pub const ROOMS_OWNED: &str = "ringcast_rooms_owned";
pub const ROOMS_SUBSCRIBED: &str = "ringcast_rooms_subscribed";
pub const ROOMS_HANDED_OFF: &str = "ringcast_rooms_handed_off_total";
pub const TAKEOVER_EXPIRED: &str = "ringcast_takeover_expired_total";
pub const ROOMS_RESET: &str = "ringcast_rooms_reset_total";
pub const QUORUM_LOST: &str = "ringcast_quorum_lost_total";
pub const STALLS: &str = "ringcast_stalls_total";
pub const ANSWERS_UNCONFIRMED: &str = "ringcast_answers_unconfirmed_total";
pub const PUBLISH_CONGESTED: &str = "ringcast_publish_congested_total";
pub const OUTBOX_FRAMES: &str = "ringcast_outbox_frames";
pub const OUTBOX_FRAMES_MAX: &str = "ringcast_outbox_frames_max";
pub const PEER_FORWARDS: &str = "ringcast_peer_forwards_total";
pub const PEER_SEND_FAILURES: &str = "ringcast_peer_send_failures_total";
pub const PEER_REQUEST_SECONDS: &str = "ringcast_peer_request_seconds";
pub const PEER_REQUESTS_FAILED: &str = "ringcast_peer_requests_failed_total";
pub const STORE_OPERATIONS: &str = "ringcast_store_operations_total";
pub const STORE_SECONDS: &str = "ringcast_store_operation_seconds";
pub const STORE_UP: &str = "ringcast_store_up";
pub const PROCESS_RSS: &str = "ringcast_process_resident_memory_bytes";
pub const PROCESS_CPU: &str = "ringcast_process_cpu_seconds_total";
pub const PROCESS_OPEN_FDS: &str = "ringcast_process_open_fds";
pub const PROCESS_MAX_FDS: &str = "ringcast_process_max_fds";
pub const AUTH_FAILURES: &str = "ringcast_auth_failures_total";
pub const JWKS_FETCHES: &str = "ringcast_jwks_fetches_total";
pub const JWKS_KEYS: &str = "ringcast_jwks_keys";

/// Histogram buckets of every `_seconds` metric.
pub const SECONDS_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Message types used as the `type` label, the most frequent first; anything else is
/// counted as `other`.
const KNOWN_TYPES: &[&str] = &[
    "chat.send",
    "chat.typing",
    "chat.read",
    "chat.delivered",
    "presence.ping",
    "room.join",
    "room.leave",
    "dm.send",
    "chat.react",
    "chat.edit",
    "chat.delete",
    "room.history",
    "room.members",
    "auth",
    "auth.refresh",
    "chat.versions",
    "chat.redact",
    "chat.upload",
    "room.request_join",
    "room.approve",
    "room.deny",
    "room.kick",
    "room.ban",
    "presence.set",
    "presence.subscribe",
    "presence.unsubscribe",
    "presence.query",
    "call.offer",
    "call.answer",
    "call.ice",
    "call.hangup",
];

/// Close codes used as the `code` label (PROTOCOL.md §10); anything else is `other`.
/// Slow-consumer disconnects are `code="4009"`, rate-limit disconnects `code="4008"`.
const CLOSE_CODES: &[(u16, &str)] = &[
    (1000, "1000"),
    (1001, "1001"),
    (1002, "1002"),
    (1007, "1007"),
    (1008, "1008"),
    (1009, "1009"),
    (1011, "1011"),
    (1012, "1012"),
    (1013, "1013"),
    (4001, "4001"),
    (4003, "4003"),
    (4008, "4008"),
    (4009, "4009"),
    (4403, "4403"),
    (4029, "4029"),
];

/// Reasons of a refused upgrade.
const REJECT_REASONS: &[&str] =
    &["unauthorized", "origin", "capacity", "bad_request", "shutdown", "no_quorum", "connect_rate"];

/// Operations of the store (the `op` label), registered at zero so a fresh node exports them.
const STORE_OPS: &[&str] = &["load", "write", "ping"];

/// Registers help text and units, and every labelled series at zero; call once at start,
/// after installing the recorder and before the node (and its store) starts.
pub fn describe() {
    describe_gauge!(CONNECTIONS, Unit::Count, "open client connections on this node");
    describe_counter!(CONNECTIONS_ACCEPTED, Unit::Count, "client connections accepted");
    describe_counter!(CONNECTIONS_REJECTED, Unit::Count, "client upgrades refused, by reason");
    describe_counter!(MESSAGES_IN, Unit::Count, "client messages received, by type");
    describe_counter!(DELIVERIES, Unit::Count, "frames queued to local connections");
    describe_counter!(FRAMES_RENDERED, Unit::Count, "server frames serialized (a broadcast counts once)");
    describe_counter!(
        FRAMES_COMPRESSED,
        Unit::Count,
        "server messages deflated (permessage-deflate; a room message counts once per edge)"
    );
    describe_counter!(COMPRESSION_IN_BYTES, Unit::Bytes, "bytes of the server messages deflated");
    describe_counter!(COMPRESSION_OUT_BYTES, Unit::Bytes, "bytes those messages deflated to");
    describe_counter!(FRAMES_INFLATED, Unit::Count, "compressed client messages inflated");
    describe_histogram!(
        PUBLISH_SECONDS,
        Unit::Seconds,
        "chat.send on this edge to its ack from the owner (edge to owner to edge)"
    );
    describe_counter!(ERRORS, Unit::Count, "error replies sent to clients, by code");
    describe_counter!(
        DISCONNECTS,
        Unit::Count,
        "connections closed by the server, by close code (4009 slow consumer, 4008 rate limit)"
    );
    describe_gauge!(ROOMS_OWNED, Unit::Count, "rooms whose owner is this node");
    describe_gauge!(
        ROOMS_SUBSCRIBED,
        Unit::Count,
        "rooms with at least one connection on this edge (sampled every 5 s)"
    );
    describe_counter!(ROOMS_HANDED_OFF, Unit::Count, "rooms handed to a new owner after a ring change");
    describe_counter!(
        TAKEOVER_EXPIRED,
        Unit::Count,
        "takeovers that stopped waiting for members' resubscriptions at the bound"
    );
    describe_counter!(
        ANSWERS_UNCONFIRMED,
        Unit::Count,
        "acks turned into unavailable: a delivery's receipt never came (link broken, not sent, 5 s)"
    );
    describe_counter!(
        PUBLISH_CONGESTED,
        Unit::Count,
        "publishes refused unavailable before they took a seq: a subscribed node's link queue was nearly full"
    );
    describe_counter!(
        STALLS,
        Unit::Count,
        "times this node stood still for half the failure timeout and fenced itself"
    );
    describe_counter!(QUORUM_LOST, Unit::Count, "times this node was cut off from its cluster's majority and fenced");
    describe_counter!(ROOMS_RESET, Unit::Count, "rooms restarted under a new epoch with subscribers (room.reset sent)");
    describe_gauge!(OUTBOX_FRAMES, Unit::Count, "frames queued to all local connections (sampled every 5 s)");
    describe_gauge!(
        OUTBOX_FRAMES_MAX,
        Unit::Count,
        "frames queued to the most backed-up local connection (sampled every 5 s)"
    );
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
    describe_gauge!(PROCESS_RSS, Unit::Bytes, "resident memory of the process (sampled every 5 s)");
    describe_counter!(
        PROCESS_CPU,
        Unit::Seconds,
        "user and system CPU time of the process, whole seconds (sampled every 5 s)"
    );
    describe_gauge!(PROCESS_OPEN_FDS, Unit::Count, "open file descriptors (sampled every 5 s)");
    describe_gauge!(PROCESS_MAX_FDS, Unit::Count, "file descriptor limit of the process");

    describe_auth();
    hot();
    gauge!(CONNECTIONS).increment(0.0);
    counter!(CONNECTIONS_ACCEPTED).increment(0);
    for reason in REJECT_REASONS {
        counter!(CONNECTIONS_REJECTED, "reason" => *reason).increment(0);
    }
    for code in ErrorCode::ALL {
        counter!(ERRORS, "code" => code.as_str()).increment(0);
    }
    for (_, label) in CLOSE_CODES {
        counter!(DISCONNECTS, "code" => *label).increment(0);
    }
    gauge!(ROOMS_OWNED).increment(0.0);
    counter!(ROOMS_HANDED_OFF).increment(0);
    counter!(TAKEOVER_EXPIRED).increment(0);
    counter!(ROOMS_RESET).increment(0);
    counter!(QUORUM_LOST).increment(0);
    counter!(STALLS).increment(0);
    counter!(ANSWERS_UNCONFIRMED).increment(0);
    counter!(PUBLISH_CONGESTED).increment(0);
    counter!(PEER_SEND_FAILURES).increment(0);
    counter!(PEER_REQUESTS_FAILED).increment(0);
    let _ = histogram!(PEER_REQUEST_SECONDS);
    for op in STORE_OPS {
        for result in ["ok", "error"] {
            counter!(STORE_OPERATIONS, "op" => *op, "result" => result).increment(0);
        }
        let _ = histogram!(STORE_SECONDS, "op" => *op);
    }
    // The memory store is always up; a Redis store reports its own state from then on.
    store_up(true);
    sample(0, 0, 0);
    describe_webhooks();
}

/// Handles of the metrics touched on every message, made once: `counter!` looks the
/// metric up in the registry on each call, which the profile showed on the hot path.
struct Hot {
    messages_in: Vec<(&'static str, Counter)>,
    messages_in_other: Counter,
    deliveries: Counter,
    frames_rendered: Counter,
    frames_compressed: Counter,
    compression_in_bytes: Counter,
    compression_out_bytes: Counter,
    frames_inflated: Counter,
    peer_forwards: Counter,
    publish_seconds: Histogram,
}

fn hot() -> &'static Hot {
    static HOT: OnceLock<Hot> = OnceLock::new();
    HOT.get_or_init(|| Hot {
        messages_in: KNOWN_TYPES.iter().map(|kind| (*kind, counter!(MESSAGES_IN, "type" => *kind))).collect(),
        messages_in_other: counter!(MESSAGES_IN, "type" => "other"),
        deliveries: counter!(DELIVERIES),
        frames_rendered: counter!(FRAMES_RENDERED),
        frames_compressed: counter!(FRAMES_COMPRESSED),
        compression_in_bytes: counter!(COMPRESSION_IN_BYTES),
        compression_out_bytes: counter!(COMPRESSION_OUT_BYTES),
        frames_inflated: counter!(FRAMES_INFLATED),
        peer_forwards: counter!(PEER_FORWARDS),
        publish_seconds: histogram!(PUBLISH_SECONDS),
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

// === token checks ===

fn describe_auth() {
    describe_counter!(AUTH_FAILURES, Unit::Count, "client and admin tokens refused, by reason");
    for reason in crate::auth::AuthError::REASONS {
        counter!(AUTH_FAILURES, "reason" => reason).increment(0);
    }
    describe_counter!(JWKS_FETCHES, Unit::Count, "fetches of --jwt-jwks-url, by result (ok or error)");
    describe_gauge!(JWKS_KEYS, Unit::Count, "signature keys of the JWKS in use (the last good fetch's)");
}

/// The JWKS cache's figures (sampled every 5 s): fetches that succeeded and failed, keys in use.
pub fn jwks(ok: u64, failed: u64, keys: usize) {
    counter!(JWKS_FETCHES, "result" => "ok").absolute(ok);
    counter!(JWKS_FETCHES, "result" => "error").absolute(failed);
    gauge!(JWKS_KEYS).set(keys as f64);
}

/// A token was refused for `reason` (an [`crate::auth::AuthError::reason`]).
pub fn auth_failed(reason: &'static str) {
    counter!(AUTH_FAILURES, "reason" => reason).increment(1);
}

/// `reason` is one of [`REJECT_REASONS`].
pub fn connection_rejected(reason: &'static str) {
    counter!(CONNECTIONS_REJECTED, "reason" => reason).increment(1);
}

pub fn deliveries(count: u64) {
    hot().deliveries.increment(count);
}

pub fn frame_rendered() {
    hot().frames_rendered.increment(1);
}

/// A server message of `len` bytes was deflated into `compressed` bytes.
pub fn frame_compressed(len: usize, compressed: usize) {
    let hot = hot();
    hot.frames_compressed.increment(1);
    hot.compression_in_bytes.increment(len as u64);
    hot.compression_out_bytes.increment(compressed as u64);
}

pub fn frame_inflated() {
    hot().frames_inflated.increment(1);
}

/// A `chat.send` of this edge was answered by its owner; `started` is when the edge sent it.
pub fn published(started: Instant) {
    hot().publish_seconds.record(started.elapsed().as_secs_f64());
}

pub fn error_sent(code: &'static str) {
    counter!(ERRORS, "code" => code).increment(1);
}

pub fn disconnect(code: u16) {
    let label = CLOSE_CODES.iter().find(|(known, _)| *known == code).map_or("other", |(_, label)| label);
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

pub fn rooms_handed_off(count: usize) {
    counter!(ROOMS_HANDED_OFF).increment(count as u64);
}

pub fn takeover_expired() {
    counter!(TAKEOVER_EXPIRED).increment(1);
}

pub fn publish_congested() {
    counter!(PUBLISH_CONGESTED).increment(1);
}

pub fn answer_unconfirmed() {
    counter!(ANSWERS_UNCONFIRMED).increment(1);
}

pub fn stalled() {
    counter!(STALLS).increment(1);
}

pub fn quorum_lost() {
    counter!(QUORUM_LOST).increment(1);
}

pub fn room_reset() {
    counter!(ROOMS_RESET).increment(1);
}

/// Store operations: `op` is one of [`STORE_OPS`]: `load` (a room read), `write` (one
/// pipeline of queued writes), `ping` (the health check).
pub fn store_operation(op: &'static str, ok: bool, seconds: f64) {
    counter!(STORE_OPERATIONS, "op" => op, "result" => if ok { "ok" } else { "error" }).increment(1);
    histogram!(STORE_SECONDS, "op" => op).record(seconds);
}

pub fn store_up(up: bool) {
    gauge!(STORE_UP).set(if up { 1.0 } else { 0.0 });
}

/// The edge's periodic sample: rooms with local connections and the frames queued to them
/// (in all, and to the deepest queue); then the process's own figures from `/proc/self`.
pub fn sample(rooms_subscribed: usize, queued_frames: usize, deepest_queue: usize) {
    gauge!(ROOMS_SUBSCRIBED).set(rooms_subscribed as f64);
    gauge!(OUTBOX_FRAMES).set(queued_frames as f64);
    gauge!(OUTBOX_FRAMES_MAX).set(deepest_queue as f64);
    let stats = crate::procstat::read();
    gauge!(PROCESS_RSS).set(stats.rss_bytes as f64);
    counter!(PROCESS_CPU).absolute(stats.cpu_seconds);
    gauge!(PROCESS_OPEN_FDS).set(stats.open_fds as f64);
    gauge!(PROCESS_MAX_FDS).set(stats.max_fds as f64);
}

// ---------------------------------------------------------------------------------------
// Webhooks and authorization hooks (`src/webhook.rs`). The `endpoint` label is the index of
// the endpoint in `--webhook-url` ("0", "1", ...): a set closed by the configuration.
// ---------------------------------------------------------------------------------------

pub const WEBHOOK_EMITTED: &str = "ringcast_webhook_events_emitted_total";
pub const WEBHOOK_DELIVERED: &str = "ringcast_webhook_deliveries_total";
pub const WEBHOOK_RETRIED: &str = "ringcast_webhook_retries_total";
pub const WEBHOOK_DROPPED: &str = "ringcast_webhook_dropped_total";
pub const WEBHOOK_SECONDS: &str = "ringcast_webhook_delivery_seconds";
pub const WEBHOOK_QUEUE: &str = "ringcast_webhook_queue_depth";
pub const HOOK_CALLS: &str = "ringcast_hook_calls_total";

/// Why an event was given up: the endpoint's queue was full, the receiver answered a 4xx
/// that is not retried, or the retry window ran out.
pub const WEBHOOK_DROP_REASONS: &[&str] = &["overflow", "rejected", "expired"];

fn describe_webhooks() {
    describe_counter!(WEBHOOK_EMITTED, Unit::Count, "webhook events emitted by this node, by type");
    describe_counter!(WEBHOOK_DELIVERED, Unit::Count, "webhook events a receiver answered 2xx, by endpoint");
    describe_counter!(
        WEBHOOK_RETRIED,
        Unit::Count,
        "webhook delivery attempts that failed and are retried, by endpoint"
    );
    describe_counter!(WEBHOOK_DROPPED, Unit::Count, "webhook events given up, by endpoint and reason");
    describe_histogram!(WEBHOOK_SECONDS, Unit::Seconds, "webhook event emitted to its 2xx answer, by endpoint");
    describe_gauge!(WEBHOOK_QUEUE, Unit::Count, "webhook events waiting for delivery, by endpoint");
    describe_counter!(HOOK_CALLS, Unit::Count, "authorization hook calls, by hook (connect, join) and outcome");
    for hook in ["connect", "join"] {
        for outcome in ["allow", "deny", "failed"] {
            counter!(HOOK_CALLS, "hook" => hook, "outcome" => outcome).increment(0);
        }
    }
}

/// Pre-made handles of one webhook endpoint, registered at zero.
pub struct WebhookEndpointMetrics {
    pub delivered: Counter,
    pub retried: Counter,
    pub overflow: Counter,
    pub rejected: Counter,
    pub expired: Counter,
    pub seconds: Histogram,
    pub queue: metrics::Gauge,
}

impl WebhookEndpointMetrics {
    pub fn new(index: usize) -> Self {
        let endpoint = index.to_string();
        let dropped =
            |reason: &'static str| counter!(WEBHOOK_DROPPED, "endpoint" => endpoint.clone(), "reason" => reason);
        let metrics = WebhookEndpointMetrics {
            delivered: counter!(WEBHOOK_DELIVERED, "endpoint" => endpoint.clone()),
            retried: counter!(WEBHOOK_RETRIED, "endpoint" => endpoint.clone()),
            overflow: dropped("overflow"),
            rejected: dropped("rejected"),
            expired: dropped("expired"),
            seconds: histogram!(WEBHOOK_SECONDS, "endpoint" => endpoint.clone()),
            queue: gauge!(WEBHOOK_QUEUE, "endpoint" => endpoint),
        };
        for counter in [&metrics.delivered, &metrics.retried, &metrics.overflow, &metrics.rejected, &metrics.expired] {
            counter.increment(0);
        }
        metrics.queue.set(0.0);
        metrics
    }
}

/// The counter of emitted events of `kind` (one of PROTOCOL.md §12's types), registered at
/// zero; made once per type by the webhooks.
pub fn webhook_emitted(kind: &'static str) -> Counter {
    let counter = counter!(WEBHOOK_EMITTED, "type" => kind);
    counter.increment(0);
    counter
}

/// `hook` is `connect` or `join`; `outcome` `allow`, `deny` or `failed`.
pub fn hook_called(hook: &'static str, outcome: &'static str) {
    counter!(HOOK_CALLS, "hook" => hook, "outcome" => outcome).increment(1);
}
