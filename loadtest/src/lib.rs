//! ringcast-loadtest: a load generator that is also a correctness checker.
//!
//! The binary drives ringcast (or the `raw-broadcast` yardstick) with one of four scenarios
//! (`connect`, `fanout`, `chat`, `churn`), checks every received `chat.message` for sequence
//! gaps, duplicates and reordering, measures end-to-end latency from timestamps carried in
//! the payloads, and writes a human table, a JSON report and an HTML report with plots.
//!
//! Layout: [`cli`] (flags) → [`plan`] (the resolved, serializable run plan) →
//! [`orchestrate`] (parent: spawns servers and workers, merges, reports) → [`worker`]
//! (runs one share of a scenario in [`scenario`]). The pure parts — [`seqcheck`],
//! [`report`] (merging, thresholds), [`proto`] (frame scanning) — carry the unit tests.

pub mod cli;
pub mod deflate;
pub mod html;
pub mod jwt;
pub mod ledger;
pub mod orchestrate;
pub mod plan;
pub mod procfs;
pub mod promscrape;
pub mod proto;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod seqcheck;
pub mod spawn;
pub mod stats;
pub mod suite;
pub mod tls;
pub mod urls;
pub mod worker;
pub mod ws;
