//! ringcast-cluster: who is alive, who owns a key, and how nodes talk.
//!
//! # Layout
//! - `node`: [`NodeId`], the stable name of a node, and [`NodeIdentity`] (id + generation).
//! - `ring`: [`Ring`], the consistent-hash ring over ready nodes with virtual nodes.
//!   A pure function from a member set to an owner lookup: no I/O, no async.
//!
//! This crate knows nothing of chat or JSON: it moves opaque frames and answers
//! "who owns this key".

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod node;
mod ring;

pub use node::{NodeId, NodeIdentity};
pub use ring::{Ring, DEFAULT_VNODES_PER_NODE};
