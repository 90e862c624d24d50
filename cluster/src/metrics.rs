//! Every metric of the cluster crate, declared once. Labels are closed sets only.

use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

pub const MEMBERS: &str = "ringcast_cluster_members";
pub const RING_CHANGES: &str = "ringcast_cluster_ring_changes_total";
pub const OWNED_SHARE: &str = "ringcast_cluster_owned_share";
pub const LINK_FRAMES: &str = "ringcast_peer_frames_total";
pub const LINK_BYTES: &str = "ringcast_peer_bytes_total";
pub const LINK_RECONNECTS: &str = "ringcast_peer_reconnects_total";
pub const LINK_QUEUE_FULL: &str = "ringcast_peer_queue_full_total";
pub const LINK_QUEUE_DEPTH: &str = "ringcast_peer_queue_frames";
pub const LINKS_UP: &str = "ringcast_peer_links";

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
}

pub(crate) fn members(state: &'static str, count: usize) {
    gauge!(MEMBERS, "state" => state).set(count as f64);
}

pub(crate) fn ring_changed(owned_share: f64) {
    counter!(RING_CHANGES).increment(1);
    gauge!(OWNED_SHARE).set(owned_share);
}

pub(crate) fn link_frames_sent(count: usize) {
    counter!(LINK_FRAMES, "direction" => "out").increment(count as u64);
}

pub(crate) fn link_frames_received(count: usize) {
    counter!(LINK_FRAMES, "direction" => "in").increment(count as u64);
}

pub(crate) fn link_bytes_sent(count: usize) {
    counter!(LINK_BYTES, "direction" => "out").increment(count as u64);
}

pub(crate) fn link_bytes_received(count: usize) {
    counter!(LINK_BYTES, "direction" => "in").increment(count as u64);
}

pub(crate) fn link_reconnect() {
    counter!(LINK_RECONNECTS).increment(1);
}

pub(crate) fn link_queue_full() {
    counter!(LINK_QUEUE_FULL).increment(1);
}

pub(crate) fn links(up: usize, queued: usize) {
    gauge!(LINKS_UP).set(up as f64);
    gauge!(LINK_QUEUE_DEPTH).set(queued as f64);
}
