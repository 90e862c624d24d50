//! The resolved run plan: everything a worker needs, serializable so that forked workers
//! get exactly what the parent resolved.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cli::{Command, Common, Feedback};
use crate::rng::Rng;
use crate::urls::{parse_ip_list, Target};

/// Connections per source address and destination before another source address is used
/// (the ephemeral range here is 32768–60999, ~28k ports).
pub const CONNS_PER_SOURCE: u64 = 25_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Send,
    Typing,
    Read,
    Delivered,
    Ping,
    Dm,
    Rejoin,
    Members,
}

impl Action {
    fn parse(name: &str) -> Result<Action> {
        Ok(match name {
            "send" => Action::Send,
            "typing" => Action::Typing,
            "read" => Action::Read,
            "delivered" => Action::Delivered,
            "ping" => Action::Ping,
            "dm" => Action::Dm,
            "rejoin" => Action::Rejoin,
            "members" => Action::Members,
            other => {
                bail!("unknown action {other:?} in --mix (send, typing, read, delivered, ping, dm, rejoin, members)")
            }
        })
    }
}

/// `send=50,typing=15` → weights.
pub fn parse_mix(text: &str) -> Result<Vec<(Action, u32)>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) =
            part.split_once('=').with_context(|| format!("bad --mix entry {part:?} (want name=weight)"))?;
        let weight: u32 = weight.trim().parse().with_context(|| format!("bad weight in {part:?}"))?;
        if weight > 0 {
            out.push((Action::parse(name.trim())?, weight));
        }
    }
    if out.is_empty() {
        bail!("--mix has no action with a positive weight");
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    Connect {
        connections: u64,
        rate: f64,
        /// Each connection joins room `i % join_rooms` (`None`: none).
        #[serde(default)]
        join_rooms: Option<u64>,
    },
    Fanout {
        rooms: u64,
        subscribers: u64,
        publishers: u64,
        rate: Option<f64>,
        closed_loop: bool,
        in_flight: u32,
        feedback: Feedback,
    },
    Chat {
        users: u64,
        rooms: u64,
        rooms_per_user: u64,
        rate: f64,
        mix: Vec<(Action, u32)>,
    },
    Churn {
        clients: u64,
        rooms: u64,
        rooms_per_client: u64,
        publishers: u64,
        rate: f64,
        hold_ms: (u64, u64),
        reconnect_delay_ms: (u64, u64),
        storm_every_ms: Option<u64>,
        abrupt_percent: u32,
    },
    Chaos {
        rooms: u64,
        subscribers: u64,
        publishers: u64,
        rate: f64,
        check_window_ms: u64,
        faults: Vec<crate::cli::FaultKind>,
        fault_interval_ms: u64,
        nodes: usize,
    },
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Connect { .. } => "connect",
            Scenario::Fanout { .. } => "fanout",
            Scenario::Chat { .. } => "chat",
            Scenario::Churn { .. } => "churn",
            Scenario::Chaos { .. } => "chaos",
        }
    }

    /// Connections open at once, over all workers.
    pub fn connections(&self) -> u64 {
        match self {
            Scenario::Connect { connections, .. } => *connections,
            Scenario::Fanout { rooms, subscribers, publishers, .. } => rooms * (subscribers + publishers),
            Scenario::Chat { users, .. } => *users,
            Scenario::Churn { clients, publishers, .. } => clients + publishers,
            Scenario::Chaos { rooms, subscribers, publishers, .. } => rooms * (subscribers + publishers),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub scenario: Scenario,
    pub raw: bool,
    /// Raw mode: publish bare stamps instead of chat.message-shaped frames.
    #[serde(default)]
    pub raw_bare: bool,
    pub urls: Vec<String>,
    /// Trust for wss:// targets.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    pub allow_remote: bool,
    pub jwt_secret: Option<String>,
    pub tenant: String,
    pub auth_header: bool,
    /// Offer permessage-deflate on every connection (`--compression`).
    #[serde(default)]
    pub compression: bool,
    pub duration_ms: u64,
    pub messages: Option<u64>,
    pub payload_bytes: usize,
    pub connect_rate: f64,
    pub connect_timeout_ms: u64,
    pub drain_ms: u64,
    pub source_ips: Vec<IpAddr>,
    /// Prefix of room names, unique per run.
    pub run_id: String,
    pub worker_index: usize,
    pub worker_count: usize,
    pub threads: usize,
    /// Workers align their seconds on this instant.
    pub start_at_unix_ms: u64,
}

impl Plan {
    /// Resolves the scenario flags (targets may still be filled in by `--spawn-cluster`).
    pub fn from_command(command: &Command) -> Result<Plan> {
        let common = command.common().context("no scenario")?;
        let scenario = match command {
            Command::Connect(a) => {
                if a.rate <= 0.0 {
                    bail!("--rate must be positive");
                }
                if a.join_rooms == Some(0) {
                    bail!("--join-rooms must be at least 1");
                }
                Scenario::Connect { connections: a.connections, rate: a.rate, join_rooms: a.join_rooms }
            }
            Command::Fanout(a) => {
                if a.rooms == 0 || a.subscribers == 0 || a.publishers == 0 {
                    bail!("--rooms, --subscribers and --publishers must be at least 1");
                }
                if a.rate.is_none() && !a.closed_loop {
                    bail!("fanout needs --rate N (open loop) or --closed-loop");
                }
                if a.rate.is_some_and(|r| r <= 0.0) {
                    bail!("--rate must be positive");
                }
                if a.in_flight == 0 {
                    bail!("--in-flight must be at least 1");
                }
                let feedback = match (common.raw, a.feedback) {
                    (true, Some(Feedback::Ack)) => bail!("raw mode has no acks: use --feedback delivery"),
                    (true, _) => Feedback::Delivery,
                    (false, feedback) => feedback.unwrap_or(Feedback::Ack),
                };
                Scenario::Fanout {
                    rooms: a.rooms,
                    subscribers: a.subscribers,
                    publishers: a.publishers,
                    rate: a.rate,
                    closed_loop: a.closed_loop,
                    in_flight: a.in_flight,
                    feedback,
                }
            }
            Command::Chat(a) => {
                if common.raw {
                    bail!("the chat scenario needs the ringcast protocol (no --raw)");
                }
                if a.users < 2 || a.rooms == 0 || a.rooms_per_user == 0 || a.rooms_per_user > a.rooms {
                    bail!("chat needs --users ≥ 2, --rooms ≥ 1 and 1 ≤ --rooms-per-user ≤ --rooms");
                }
                let rate = a.rate.unwrap_or(a.users as f64 * 2.0);
                if rate <= 0.0 {
                    bail!("--rate must be positive");
                }
                Scenario::Chat {
                    users: a.users,
                    rooms: a.rooms,
                    rooms_per_user: a.rooms_per_user,
                    rate,
                    mix: parse_mix(&a.mix)?,
                }
            }
            Command::Churn(a) => {
                if common.raw {
                    bail!("the churn scenario needs the ringcast protocol (no --raw)");
                }
                if a.clients == 0 || a.rooms == 0 || a.rooms_per_client == 0 || a.rooms_per_client > a.rooms {
                    bail!("churn needs --clients ≥ 1, --rooms ≥ 1 and 1 ≤ --rooms-per-client ≤ --rooms");
                }
                if a.abrupt_percent > 100 {
                    bail!("--abrupt-percent is a percentage");
                }
                Scenario::Churn {
                    clients: a.clients,
                    rooms: a.rooms,
                    rooms_per_client: a.rooms_per_client,
                    publishers: a.publishers.unwrap_or(a.rooms).max(1),
                    rate: a.rate.max(0.0),
                    hold_ms: a.hold_ms,
                    reconnect_delay_ms: a.reconnect_delay_ms,
                    storm_every_ms: a.storm_every.map(|d| d.as_millis().max(100) as u64),
                    abrupt_percent: a.abrupt_percent,
                }
            }
            Command::Chaos(a) => {
                if common.raw {
                    bail!("the chaos scenario needs the ringcast protocol (no --raw)");
                }
                if a.rooms == 0 || a.subscribers == 0 || a.publishers == 0 {
                    bail!("--rooms, --subscribers and --publishers must be at least 1");
                }
                if a.rate.is_nan() || a.rate <= 0.0 {
                    bail!("--rate must be positive");
                }
                if !(2..=9).contains(&a.nodes) {
                    bail!("chaos needs --nodes 2..=9");
                }
                if a.faults.is_empty() {
                    bail!("--faults is empty");
                }
                if common.processes != 1 {
                    bail!("chaos runs in one process (its delivery ledger is in memory): drop --processes");
                }
                if !common.urls.is_empty() || common.spawn_cluster.is_some() {
                    bail!("chaos spawns its own nodes (--nodes, --server-bin): drop --url and --spawn-cluster");
                }
                Scenario::Chaos {
                    rooms: a.rooms,
                    subscribers: a.subscribers,
                    publishers: a.publishers,
                    rate: a.rate,
                    check_window_ms: a.check_window.as_millis() as u64,
                    faults: a.faults.clone(),
                    fault_interval_ms: a.fault_interval.as_millis().max(100) as u64,
                    nodes: a.nodes,
                }
            }
            Command::Suite(_) | Command::Worker => bail!("no scenario"),
        };
        Plan::with_common(scenario, common)
    }

    fn with_common(scenario: Scenario, common: &Common) -> Result<Plan> {
        if common.processes == 0 || common.processes > 64 {
            bail!("--processes must be 1..=64");
        }
        if common.connect_rate <= 0.0 {
            bail!("--connect-rate must be positive");
        }
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let threads = common.threads.unwrap_or((cores / common.processes).max(1)).clamp(1, 256);
        let source_ips = match &common.source_ips {
            Some(list) => parse_ip_list(list)?,
            None => Vec::new(),
        };
        Ok(Plan {
            scenario,
            raw: common.raw,
            raw_bare: common.raw_bare,
            urls: common.urls.clone(),
            ca_file: common.ca_file.clone(),
            allow_remote: common.allow_remote,
            jwt_secret: common.jwt_secret.clone(),
            tenant: common.tenant.clone(),
            auth_header: common.auth_header,
            compression: common.compression,
            duration_ms: common.duration.as_millis() as u64,
            messages: common.messages,
            payload_bytes: common.payload_bytes.min(256 * 1024),
            connect_rate: common.connect_rate,
            connect_timeout_ms: common.connect_timeout.as_millis().max(100) as u64,
            drain_ms: common.drain.as_millis() as u64,
            source_ips,
            run_id: Rng::from_time(std::process::id() as u64).hex_id(6),
            worker_index: 0,
            worker_count: common.processes,
            threads,
            start_at_unix_ms: 0,
        })
    }

    /// Checks the targets and picks source addresses when one host would get more
    /// connections than one source address has ports.
    pub fn finish(&mut self) -> Result<Vec<Target>> {
        if self.urls.is_empty() {
            bail!("give at least one --url ws://127.0.0.1:PORT/v1/ws, or --spawn-cluster 1 --server-bin PATH");
        }
        let targets = self.urls.iter().map(|url| Target::parse(url, self.allow_remote)).collect::<Result<Vec<_>>>()?;
        match (&self.ca_file, targets.iter().any(|target| target.tls)) {
            (None, true) => bail!("wss:// targets need --ca-file with the certificates to trust"),
            (Some(ca_file), _) => {
                crate::tls::client_config(ca_file)?;
            }
            (None, false) => {}
        }
        if !self.raw && self.jwt_secret.is_none() {
            bail!("--jwt-secret is needed to mint tokens (or use --raw against raw-broadcast)");
        }
        let mut hosts: Vec<_> = targets.iter().map(|t| t.addr).collect();
        hosts.sort();
        hosts.dedup();
        let per_host = self.scenario.connections().div_ceil(hosts.len() as u64);
        if self.source_ips.is_empty()
            && per_host > CONNS_PER_SOURCE
            && targets.iter().all(|t| t.addr.is_ipv4() && t.addr.ip().is_loopback())
        {
            let needed = per_host.div_ceil(CONNS_PER_SOURCE).min(250) as u32;
            let base = u32::from(std::net::Ipv4Addr::new(127, 0, 0, 1));
            self.source_ips = (0..needed).map(|i| IpAddr::V4((base + i).into())).collect();
        }
        let per_process = self.scenario.connections().div_ceil(self.worker_count as u64);
        if per_process > 19_000 {
            bail!(
                "{} connections in one process exceed the 20,000 open files a process may have here: use --processes {}",
                per_process,
                self.scenario.connections().div_ceil(18_000)
            );
        }
        Ok(targets)
    }

    pub fn for_worker(&self, index: usize) -> Plan {
        Plan { worker_index: index, ..self.clone() }
    }

    /// Whether this worker owns item `i` of a list shared round-robin.
    pub fn mine(&self, i: u64) -> bool {
        i % self.worker_count as u64 == self.worker_index as u64
    }

    /// This worker's share of `total` (items `i` with `mine(i)`).
    pub fn share_of(&self, total: u64) -> u64 {
        let wc = self.worker_count as u64;
        let wi = self.worker_index as u64;
        total / wc + u64::from(wi < total % wc)
    }

    pub fn room_name(&self, kind: &str, index: u64) -> String {
        format!("lt{}-{kind}{index}", self.run_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn plan(args: &[&str]) -> Result<Plan> {
        let cli = Cli::try_parse_from(args).unwrap();
        Plan::from_command(&cli.command)
    }

    #[test]
    fn test_mix_parse() {
        let mix = parse_mix("send=5, ping=0,dm=1").unwrap();
        assert_eq!(mix, vec![(Action::Send, 5), (Action::Dm, 1)]);
        assert!(parse_mix("bogus=1").is_err());
        assert!(parse_mix("send=0").is_err());
    }

    #[test]
    fn test_fanout_needs_mode_and_feedback_rules() {
        assert!(plan(&["x", "fanout", "--url", "ws://127.0.0.1:1/"]).is_err());
        let p = plan(&["x", "fanout", "--raw", "--closed-loop", "--url", "ws://127.0.0.1:1/"]).unwrap();
        assert!(matches!(p.scenario, Scenario::Fanout { feedback: Feedback::Delivery, .. }));
        assert!(plan(&["x", "fanout", "--raw", "--closed-loop", "--feedback", "ack"]).is_err());
        assert!(plan(&["x", "chat", "--raw"]).is_err());
    }

    #[test]
    fn test_finish_checks_targets_and_sources() {
        let mut p = plan(&[
            "x",
            "connect",
            "--raw",
            "--connections",
            "60000",
            "--processes",
            "4",
            "--url",
            "ws://127.0.0.1:9/",
        ])
        .unwrap();
        p.finish().unwrap();
        assert_eq!(p.source_ips.len(), 3);
        let mut p = plan(&["x", "connect", "--raw", "--connections", "30000", "--url", "ws://127.0.0.1:9/"]).unwrap();
        assert!(p.finish().is_err(), "30k connections in one process must be refused");
        let mut p = plan(&["x", "connect", "--url", "ws://127.0.0.1:9/"]).unwrap();
        assert!(p.finish().is_err(), "no secret");
        let mut p = plan(&["x", "connect", "--raw", "--url", "ws://192.168.1.1:9/"]).unwrap();
        assert!(p.finish().is_err(), "not loopback");
    }

    #[test]
    fn test_shares_cover_everything_once() {
        let mut p = plan(&["x", "connect", "--raw", "--processes", "3", "--url", "ws://127.0.0.1:9/"]).unwrap();
        let mut total = 0;
        for w in 0..3 {
            p.worker_index = w;
            let mine = (0..10).filter(|&i| p.mine(i)).count() as u64;
            assert_eq!(mine, p.share_of(10));
            total += mine;
        }
        assert_eq!(total, 10);
    }
}
