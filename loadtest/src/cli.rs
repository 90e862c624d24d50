//! Command-line flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "ringcast-loadtest",
    version,
    about = "Load and correctness harness for ringcast",
    long_about = "Drives ringcast nodes (or the raw-broadcast yardstick) with one of four scenarios, checks \
                  every received message for sequence gaps, duplicates and reordering, and reports latency \
                  percentiles, throughput, errors and server memory. Exits 1 when a threshold is missed, 2 on \
                  a harness error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Ramp N idle connections at a given rate, hold them, report connect times and server RSS per connection
    Connect(ConnectArgs),
    /// R rooms × S subscribers × P publishers, at a fixed publish rate or closed-loop
    Fanout(FanoutArgs),
    /// A realistic mix: joins, leaves, sends, typing, receipts, presence pings, DMs
    Chat(ChatArgs),
    /// Connect/disconnect storms; every reconnect rejoins with `since` and counts recovery
    Churn(ChurnArgs),
    /// Fan-out traffic through a spawned cluster while nodes are killed, drained, restarted or
    /// partitioned; checks every acknowledged publish reached every connection that stayed
    Chaos(ChaosArgs),
    /// The standard benchmark scenarios, repeated and interleaved; writes a record
    /// (bench/results/<date>.json + .html) and compares it with the previous one
    Suite(SuiteArgs),
    /// (internal) run one worker share; the plan comes on stdin
    #[command(hide = true)]
    Worker,
}

impl Command {
    pub fn common(&self) -> Option<&Common> {
        match self {
            Command::Connect(a) => Some(&a.common),
            Command::Fanout(a) => Some(&a.common),
            Command::Chat(a) => Some(&a.common),
            Command::Churn(a) => Some(&a.common),
            Command::Chaos(a) => Some(&a.common),
            Command::Suite(_) | Command::Worker => None,
        }
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(index) => (&text[..index], &text[index..]),
        None => (text, "s"),
    };
    let value: f64 = number.parse().map_err(|_| format!("bad duration {text:?}"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("bad duration unit in {text:?} (use ms, s, m, h)")),
    };
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("duration {text:?} out of range (max 24h)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `A-B` or `A` (milliseconds).
pub fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let parse = |s: &str| s.trim().parse::<u64>().map_err(|_| format!("bad number in {text:?}"));
    match text.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (parse(lo)?, parse(hi)?);
            if hi < lo {
                return Err(format!("bad range {text:?}"));
            }
            Ok((lo, hi))
        }
        None => {
            let v = parse(text)?;
            Ok((v, v))
        }
    }
}

/// Flags every scenario takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// WebSocket URL of a node, ws://host:port/v1/ws (repeat for several nodes; clients are spread round-robin)
    #[arg(long = "url", value_name = "WS_URL")]
    pub urls: Vec<String>,
    /// PEM certificates to trust for wss:// URLs (e.g. the node's self-signed certificate)
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// HS256 secret the nodes verify tokens with; the harness mints tokens for users u0..uN
    #[arg(long, env = "RINGCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// tenant claim of the minted tokens
    #[arg(long, default_value = "default")]
    pub tenant: String,
    /// send the token as `Authorization: Bearer` instead of `?token=`
    #[arg(long)]
    pub auth_header: bool,
    /// offer permessage-deflate (and require it) and inflate compressed frames; spawned nodes get --compression on
    #[arg(long)]
    pub compression: bool,
    /// target a raw-broadcast server: no auth, no join protocol (`?room=` query, payload text only)
    #[arg(long)]
    pub raw: bool,
    /// raw mode: publish bare `t:<nanos>:...` texts instead of frames shaped and sized like ringcast's chat.message
    #[arg(long, requires = "raw")]
    pub raw_bare: bool,
    /// how long the measured phase lasts (hold time for `connect`), e.g. 30s, 2m
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// stop after this many publishes in total (also bounded by --duration)
    #[arg(long)]
    pub messages: Option<u64>,
    /// padding bytes added to each published text
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// rate at which connections are opened during setup (per second, all processes)
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,
    /// give up on a connection attempt (TCP + upgrade + `connected`) after this long
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// longest wait for in-flight messages once sending stops
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub drain: Duration,
    /// fork this many worker processes (a process is capped at 20,000 open files here)
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// runtime threads per process [default: cores / processes]
    #[arg(long)]
    pub threads: Option<usize>,
    /// source addresses for client sockets, e.g. 127.0.0.1-127.0.0.8 (chosen automatically above ~25k connections per loopback host)
    #[arg(long)]
    pub source_ips: Option<String>,
    /// server process to sample RSS and CPU of (repeatable)
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// start N local nodes from --server-bin for a one-command benchmark, stop them at the end
    #[arg(long)]
    pub spawn_cluster: Option<usize>,
    /// server binary for --spawn-cluster (target/release/ringcast, or target/release/raw-broadcast with --raw)
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// extra argument for spawned servers (repeatable), e.g. --server-arg=--history-size=1000
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// file for the spawned servers' stderr [default: discarded]
    #[arg(long)]
    pub server_log: Option<PathBuf>,
    /// allow non-loopback targets (never point this at a machine you do not own)
    #[arg(long)]
    pub allow_remote: bool,
    /// do not read the nodes' /metrics
    #[arg(long)]
    pub no_metrics: bool,
    /// write the JSON report here
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// write the HTML report (inline SVG plots) here
    #[arg(long)]
    pub html_out: Option<PathBuf>,
    /// fail when the delivery latency p99 exceeds this (ms)
    #[arg(long)]
    pub max_p99_ms: Option<f64>,
    /// fail when deliveries/s over the measured window fall below this
    #[arg(long)]
    pub min_deliveries_per_sec: Option<f64>,
    /// fail when more sequence violations are seen
    #[arg(long, default_value_t = 0)]
    pub max_violations: u64,
    /// fail when more errors are seen (error replies other than `unsupported`, plus failed connects)
    #[arg(long)]
    pub max_errors: Option<u64>,
    /// no live progress line
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: Common,
    /// connections to open
    #[arg(long, default_value_t = 1000)]
    pub connections: u64,
    /// connections opened per second
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// each connection joins one of N rooms (round robin) once connected, then stays idle [default: no join]
    #[arg(long)]
    pub join_rooms: Option<u64>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Feedback {
    /// the next send goes on each `chat.send` ack
    Ack,
    /// the next send goes when a witness subscriber of the room received an earlier one
    Delivery,
}

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 1)]
    pub rooms: u64,
    /// subscribers per room
    #[arg(long, default_value_t = 100)]
    pub subscribers: u64,
    /// publishers per room
    #[arg(long, default_value_t = 1)]
    pub publishers: u64,
    /// total publishes per second over all publishers (open loop)
    #[arg(long, conflicts_with = "closed_loop")]
    pub rate: Option<f64>,
    /// each publisher keeps up to --in-flight sends outstanding and sends the next as one completes
    #[arg(long)]
    pub closed_loop: bool,
    /// outstanding sends per publisher in closed loop
    #[arg(long, default_value_t = 8)]
    pub in_flight: u32,
    /// what completes a send in closed loop [default: ack; raw mode always uses delivery]
    #[arg(long, value_enum)]
    pub feedback: Option<Feedback>,
}

#[derive(Args, Debug, Clone)]
pub struct ChatArgs {
    #[command(flatten)]
    pub common: Common,
    /// connected users (one connection each)
    #[arg(long, default_value_t = 100)]
    pub users: u64,
    /// rooms in the pool
    #[arg(long, default_value_t = 10)]
    pub rooms: u64,
    /// rooms each user joins
    #[arg(long, default_value_t = 3)]
    pub rooms_per_user: u64,
    /// total actions per second over all users [default: 2 per user]
    #[arg(long)]
    pub rate: Option<f64>,
    /// action weights
    #[arg(long, default_value = "send=50,typing=15,read=8,delivered=4,ping=10,dm=6,rejoin=4,members=3")]
    pub mix: String,
}

#[derive(Args, Debug, Clone)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub common: Common,
    /// clients that keep disconnecting and reconnecting
    #[arg(long, default_value_t = 100)]
    pub clients: u64,
    #[arg(long, default_value_t = 10)]
    pub rooms: u64,
    /// rooms each client joins
    #[arg(long, default_value_t = 2)]
    pub rooms_per_client: u64,
    /// stable publishing connections [default: one per room]
    #[arg(long)]
    pub publishers: Option<u64>,
    /// total publishes per second
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// how long a client stays connected, ms (range)
    #[arg(long, default_value = "500-3000", value_parser = parse_range)]
    pub hold_ms: (u64, u64),
    /// pause before reconnecting, ms (range)
    #[arg(long, default_value = "0-500", value_parser = parse_range)]
    pub reconnect_delay_ms: (u64, u64),
    /// storm mode: every client drops at the same instant every this often (overrides --hold-ms)
    #[arg(long, value_parser = parse_duration)]
    pub storm_every: Option<Duration>,
    /// share of disconnects that just drop the socket (no close frame), percent
    #[arg(long, default_value_t = 50)]
    pub abrupt_percent: u32,
}

/// A fault the chaos scenario injects.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// SIGKILL, stay down `--down-for`, start again (same node id and ports)
    Kill,
    /// SIGTERM (the node hands off its rooms and closes clients with 1012), wait for the
    /// exit, stay down `--down-for`, start again
    Drain,
    /// SIGTERM, wait for the exit, start again at once
    Restart,
    /// cut the node off from the others with nftables for `--partition-for`, then heal
    Partition,
    /// SIGSTOP for `--pause-for`, then SIGCONT: a node that stalls (a long GC-like pause, a
    /// starved VM) and comes back with its state, its links and its queued frames
    Pause,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Drain => "drain",
            FaultKind::Restart => "restart",
            FaultKind::Partition => "partition",
            FaultKind::Pause => "pause",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct ChaosArgs {
    #[command(flatten)]
    pub common: Common,
    /// nodes to spawn (needs --server-bin)
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    #[arg(long, default_value_t = 4)]
    pub rooms: u64,
    /// subscribers per room
    #[arg(long, default_value_t = 6)]
    pub subscribers: u64,
    /// publishers per room
    #[arg(long, default_value_t = 1)]
    pub publishers: u64,
    /// total publishes per second over all publishers
    #[arg(long, default_value_t = 40.0)]
    pub rate: f64,
    /// faults to pick from, comma-separated
    #[arg(long, value_enum, value_delimiter = ',', default_value = "kill,drain,restart,partition")]
    pub faults: Vec<FaultKind>,
    /// time between the starts of two faults
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub fault_interval: Duration,
    /// inject at most this many faults
    #[arg(long, default_value_t = 50)]
    pub max_faults: u64,
    /// fail the run when fewer faults were injected
    #[arg(long, default_value_t = 1)]
    pub min_faults: u64,
    /// how long a killed or drained node stays down
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub down_for: Duration,
    /// how long a partition lasts
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub partition_for: Duration,
    /// how long a paused node stays stopped (the default outlasts the failure detector's
    /// 1.5 s but not the links' 3 s read timeout)
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub pause_for: Duration,
    /// longest wait for the cluster to be whole again after a fault (then no more faults)
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub settle_timeout: Duration,
    /// a connection that stays this long after a publish's ack is owed that publish
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub check_window: Duration,
    /// seed of the fault picker [default: from the clock]
    #[arg(long)]
    pub seed: Option<u64>,
    /// persistence for the spawned nodes (passed as their --redis-url)
    #[arg(long, conflicts_with = "spawn_redis")]
    pub redis_url: Option<String>,
    /// start a redis-server on a free loopback port for the run, stop it at the end
    #[arg(long)]
    pub spawn_redis: bool,
    /// redis-server binary for --spawn-redis
    #[arg(long, default_value = "redis-server")]
    pub redis_bin: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct SuiteArgs {
    /// tiny sizes, one run each (a smoke of under a minute)
    #[arg(long)]
    pub quick: bool,
    /// the record to write [default: bench/results/<YYYY-MM-DD>.json]; the HTML page goes beside it
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// compare with this record [default: the newest older record in the directory of --out]
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// exit 1 when a figure regressed beyond the measured noise
    #[arg(long)]
    pub fail_on_regression: bool,
    /// ringcast binary [default: `ringcast` beside this binary]
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// raw-broadcast binary [default: `raw-broadcast` beside this binary]
    #[arg(long)]
    pub raw_bin: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_durations_and_ranges() {
        assert_eq!(parse_duration("1500ms").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3x").is_err());
        assert!(parse_duration("48h").is_err());
        assert_eq!(parse_range("10-20").unwrap(), (10, 20));
        assert_eq!(parse_range("7").unwrap(), (7, 7));
        assert!(parse_range("20-10").is_err());
    }

    #[test]
    fn test_cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "x",
            "fanout",
            "--url",
            "ws://127.0.0.1:1/v1/ws",
            "--rooms",
            "2",
            "--closed-loop",
            "--in-flight",
            "4",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Fanout(ref a) if a.closed_loop && a.rooms == 2));
    }
}
