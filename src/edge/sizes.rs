//! The sizes of what every connection holds, pinned so that they cannot grow back unnoticed
//! (docs/benchmarks.md, "Density", has the byte budget of an idle connection). A failure
//! means an idle connection got bigger: make sure that is worth it, then move the bound.
//!
//! The task's allocation is its future plus tokio's header and trailer, rounded up to a
//! multiple of 128 bytes (tokio aligns task cells to 128 on x86_64), and the allocator rounds
//! up to its size classes (…, 640, 768, 896, 1024, 1280, …): a few bytes can cost 128.

use std::mem::size_of;

use super::conn::{Conn, ConnMeta, Outbox};
use super::session;
use super::transport::Transport;
use super::writer::WriteQueue;

/// The size of the future an `async fn` of five arguments returns.
fn future_size<A, B, C, D, E, F>(_: fn(A, B, C, D, E) -> F) -> usize {
    size_of::<F>()
}

#[test]
fn test_connection_task_future_stays_small() {
    let size = future_size(session::run);
    assert!(size <= TASK_FUTURE, "connection task future: {size} bytes");
}

#[test]
fn test_connection_state_stays_small() {
    let sizes = [
        ("Conn", size_of::<Conn>(), CONN),
        ("Outbox", size_of::<Outbox>(), OUTBOX),
        ("ConnMeta", size_of::<ConnMeta>(), CONN_META),
        ("Transport", size_of::<Transport>(), TRANSPORT),
        ("WriteQueue", size_of::<WriteQueue>(), WRITE_QUEUE),
    ];
    let all: Vec<String> =
        sizes.iter().map(|(name, size, bound)| format!("{name}: {size} bytes, bound {bound}")).collect();
    assert!(sizes.iter().all(|(_, size, bound)| size <= bound), "{all:#?}");
}

/// 736 bytes in a release build, 744 in a debug one: a task cell of 896 bytes.
const TASK_FUTURE: usize = 744;
/// 320 bytes with the `Arc`'s counts: the allocator's 320 class.
const CONN: usize = 304;
const OUTBOX: usize = 104;
const CONN_META: usize = 56;
const TRANSPORT: usize = 48;
const WRITE_QUEUE: usize = 48;
