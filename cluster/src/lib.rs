//! ringcast-cluster: who is alive, who owns a key, and how nodes talk.
//!
//! # Layout
//! - `node`: [`NodeId`], the stable name of a node, and [`NodeIdentity`] (id + generation).
//! - `ring`: [`Ring`], the consistent-hash ring over ready nodes with virtual nodes.
//!   A pure function from a member set to an owner lookup: no I/O, no async.
//! - `member`: [`ClusterMember`] and [`MemberState`]: the only place that reads gossip keys.
//! - `change`: [`ClusterChange`] and the pure diff between two member sets.
//! - `wire`: the internal frame format ([`PeerFrame`]): length, fixed header, opaque payload.
//! - `link`: peer links: one TCP connection per node pair, HMAC handshake, bounded queues,
//!   batched vectored writes, keepalives.
//! - `cluster`: the [`Cluster`] handle: gossip (chitchat) + ring + links.
//! - `metrics`: every metric of this crate.
//!
//! **Invariant:** only this crate imports chitchat.
//!
//! This crate knows nothing of chat or JSON: it moves opaque frames and answers
//! "who owns this key".

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod change;
mod cluster;
mod link;
mod member;
pub mod metrics;
mod node;
mod ring;
pub mod wire;

pub use change::{compute_changes, members_by_id, ClusterChange};
pub use cluster::{Cluster, ClusterConfig, ClusterError, ClusterView};
pub use link::{FrameHandler, Mark, SendError, STREAM_QUEUE_FACTOR, STREAM_QUEUE_MIN};
pub use member::{ClusterMember, MemberState};
pub use node::{NodeId, NodeIdentity};
pub use ring::{Ring, DEFAULT_VNODES_PER_NODE};
pub use wire::PeerFrame;
