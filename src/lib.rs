//! ringcast: a horizontally sharded WebSocket messaging server.
//!
//! # Layout
//! - `config`: flags, env twins and TOML file merged into a validated [`Config`].
//! - `auth`: JWT validation with a pinned algorithm; token minting.
//! - `server`: [`run`], the accept loops and the shutdown sequence.
//! - `http`: health, `/metrics`, and the WebSocket upgrade (origin, token).
//! - `admin`: the admin API (PROTOCOL.md §11), answered cluster-wide over peer frames.
//! - `session`: one client connection on one task: read, limits, parsing, dispatch, timers.
//! - `wsframe`: client WebSocket frames decoded in place from a buffer that exists only
//!   while bytes are pending.
//! - `ratelimit`: the per-connection token bucket of client messages.
//! - `writer`: the write queue: batched non-blocking vectored writes of shared `Bytes`.
//! - `conn`: the shared half of a connection: the bounded [`conn::Outbox`], rooms, identity.
//! - `protocol`: the client envelope and typed requests, parsed in place with simd-json.
//! - `frames`: server frames, rendered once into shared `Bytes`.
//! - `route`: the edge↔owner interface ([`route::OwnerOp`], [`route::EdgeMsg`]).
//! - `owner`: the rooms this node owns: seq, epoch, history, members, fan-out per node.
//! - `hub`: this node's connections and their local fan-out.
//! - `node`: [`Node`], everything a process holds, and the router to owners.
//! - `room`, `ids`, `time`, `close`, `metrics`: names and rules, identifiers, clocks,
//!   close codes, metric declarations.
//! - `procstat`: the process's RSS, CPU time and file descriptors from `/proc/self`.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod admin;
pub mod auth;
pub mod close;
pub mod codec;
pub mod config;
pub mod edge;
pub mod frames;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod node;
pub mod ops;
pub mod owner;
pub mod peer;
pub mod peering;
pub mod procstat;
pub mod protocol;
pub mod rebalance;
pub mod respond;
pub mod room;
pub mod route;
pub mod server;
pub mod store;
pub mod takeover;
pub mod time;
pub mod tls;

pub use config::Config;
pub use node::Node;
pub use server::run;
