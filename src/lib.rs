//! ringcast: a horizontally sharded WebSocket messaging server.
//!
//! The table of contents of the crate, from the bottom layer up: no module imports one
//! listed after it (ARCHITECTURE.md "Layers"; the `mod` lines below are sorted by name
//! within the same three groups). Public: what the binary (`src/main.rs`) and the
//! integration tests use; everything else is private to the crate.
//!
//! Names, rules and settings:
//! - [`config`]: flags, env twins and TOML file merged into a validated [`Config`].
//! - `tls`: the certificate and key of wss, reloaded on SIGHUP.
//! - `admission`: the client IP behind trusted proxies; new connections per IP.
//! - [`auth`]: JWT validation with a pinned algorithm; token minting.
//! - `ids`, `time`, `close`, [`metrics`], `procstat`: identifiers, clocks, close codes,
//!   metric declarations, the process's own figures from `/proc/self`.
//! - `room`: room names, keys and the join rules.
//! - [`webhook`]: lifecycle events posted to the application, signed and retried; the
//!   authorization hooks asked before a connection or a join.
//! - `protocol`: the client envelope and typed requests, parsed in place with simd-json.
//! - `frames`: server frames, rendered once into shared `Bytes`.
//! - `codec`: the byte reader and writer of peer payloads, and `Encode`/`Decode`.
//!
//! The data path, edge → owner → edge:
//! - `ops`: the values between an edge and an owner (`OwnerOp`, `EdgeMsg`).
//! - `store`: durable state (memory, Redis) and the write journal.
//! - `owner`: the rooms this node owns: seq, epoch, history, members, fan-out per node.
//! - `takeover`: ops held for keys a ring change gave this node, until the hand-offs are in.
//! - `peer`: the edge↔owner values and hand-off snapshots on the wire.
//! - `edge`: the connection side: sessions, dispatch, the hub, outboxes, writes.
//! - `route`: the router: ops to owners, messages to edges, in-process or over peer links.
//!
//! The process:
//! - [`node`]: [`Node`], the wiring of owner, router and edge.
//! - `rebalance`: hand-offs and resubscriptions on every change of the cluster view.
//! - `quorum`: a node cut off from its cluster's majority fences itself (no rooms, no
//!   clients) until it is back.
//! - `admin`: the admin API (PROTOCOL.md §11), answered cluster-wide over peer frames.
//! - `respond`: HTTP responses the routes share.
//! - `demo`: the demo chat page at `/demo` and the SDK bundle it runs on, embedded.
//! - [`peering`]: joining the cluster; peer frames in, each to the part that owns it.
//! - `http`: health, readiness, `/metrics`, the WebSocket upgrade, the admin routes.
//! - [`server`]: [`run`], the accept loops, background tasks and the shutdown sequence.
//! - `fuzzing` (hidden): the decoders of outside bytes, one entry point each, for `fuzz/`
//!   and the corpus replay test.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod admission;
pub mod auth;
mod close;
mod codec;
pub mod config;
mod frames;
mod ids;
pub mod metrics;
mod procstat;
mod protocol;
mod room;
mod stall;
mod time;
mod tls;
pub mod webhook;

mod edge;
mod ops;
mod owner;
mod peer;
mod route;
mod store;
mod takeover;

mod admin;
mod demo;
mod http;
pub mod node;
pub mod peering;
mod quorum;
mod rebalance;
mod respond;
pub mod server;

/// The decoders of outside bytes, one entry point each, for `fuzz/` and the corpus replay
/// test; not an API.
#[doc(hidden)]
pub mod fuzzing;

pub use config::Config;
pub use node::Node;
pub use server::run;
