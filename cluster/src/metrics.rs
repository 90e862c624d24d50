//! Every metric of the cluster crate, declared once. Labels are closed sets only.
//! [`describe`] registers every series at zero, so a fresh node exports them all.

use std::sync::OnceLock;

use metrics::{counter, describe_counter, describe_gauge, gauge, Counter, Unit};

use crate::MemberState;

pub const MEMBERS: &str = "ringcast_cluster_members";
pub const RING_CHANGES: &str = "ringcast_cluster_ring_changes_total";
pub const OWNED_SHARE: &str = "ringcast_cluster_owned_share";
pub const LINK_FRAMES: &str = "ringcast_peer_frames_total";
pub const LINK_BYTES: &str = "ringcast_peer_bytes_total";
pub const LINK_RECONNECTS: &str = "ringcast_peer_reconnects_total";
pub const LINK_QUEUE_FULL: &str = "ringcast_peer_queue_full_total";
pub const LINK_QUEUE_DEPTH: &str = "ringcast_peer_queue_frames";
pub const LINKS_UP: &str = "ringcast_peer_links";

const STATES: [MemberState; 3] = [MemberState::Joining, MemberState::Ready, MemberState::Draining];

pub fn describe() {
    describe_gauge!(MEMBERS, Unit::Count, "live cluster members by state, as this node sees them");
    describe_counter!(RING_CHANGES, Unit::Count, "times the ring over ready members changed");
    describe_gauge!(OWNED_SHARE, Unit::Count, "share of the hash ring this node owns (0-1)");
    describe_counter!(LINK_FRAMES, Unit::Count, "frames on peer links, by direction");
    describe_counter!(LINK_BYTES, Unit::Bytes, "bytes on peer links, by direction");
    describe_counter!(LINK_RECONNECTS, Unit::Count, "peer links re-dialed after breaking");
    describe_counter!(LINK_QUEUE_FULL, Unit::Count, "frames refused because a peer link queue was full");
    describe_gauge!(LINK_QUEUE_DEPTH, Unit::Count, "frames queued on all peer links");
    describe_gauge!(LINKS_UP, Unit::Count, "peer links up");

    links();
    for state in STATES {
        gauge!(MEMBERS, "state" => state.as_str()).increment(0.0);
    }
    counter!(RING_CHANGES).increment(0);
    gauge!(OWNED_SHARE).increment(0.0);
    counter!(LINK_RECONNECTS).increment(0);
    counter!(LINK_QUEUE_FULL).increment(0);
    gauge!(LINK_QUEUE_DEPTH).increment(0.0);
    gauge!(LINKS_UP).increment(0.0);
}

/// Handles of the counters bumped on every batch a link reads or writes, made once (a
/// `counter!` call looks the metric up in the registry).
struct Links {
    frames_in: Counter,
    frames_out: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
}

fn links() -> &'static Links {
    static LINKS: OnceLock<Links> = OnceLock::new();
    LINKS.get_or_init(|| Links {
        frames_in: counter!(LINK_FRAMES, "direction" => "in"),
        frames_out: counter!(LINK_FRAMES, "direction" => "out"),
        bytes_in: counter!(LINK_BYTES, "direction" => "in"),
        bytes_out: counter!(LINK_BYTES, "direction" => "out"),
    })
}

pub(crate) fn members(state: &'static str, count: usize) {
    gauge!(MEMBERS, "state" => state).set(count as f64);
}

pub(crate) fn ring_changed(owned_share: f64) {
    counter!(RING_CHANGES).increment(1);
    gauge!(OWNED_SHARE).set(owned_share);
}

pub(crate) fn link_frames_sent(count: usize) {
    links().frames_out.increment(count as u64);
}

pub(crate) fn link_frames_received(count: usize) {
    links().frames_in.increment(count as u64);
}

pub(crate) fn link_bytes_sent(count: usize) {
    links().bytes_out.increment(count as u64);
}

pub(crate) fn link_bytes_received(count: usize) {
    links().bytes_in.increment(count as u64);
}

pub(crate) fn link_reconnect() {
    counter!(LINK_RECONNECTS).increment(1);
}

pub(crate) fn link_queue_full() {
    counter!(LINK_QUEUE_FULL).increment(1);
}

pub(crate) fn link_gauges(up: usize, queued: usize) {
    gauge!(LINKS_UP).set(up as f64);
    gauge!(LINK_QUEUE_DEPTH).set(queued as f64);
}
