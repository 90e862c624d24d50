//! Configuration: command-line flags, their `RINGCAST_*` environment twins and an optional
//! TOML file, merged as flags > env > file > defaults, then validated once.
//!
//! Every key of the file has the name of its flag (`max-message-bytes`, or with
//! underscores, `max_message_bytes`). A bad value is a [`ConfigError`]: the binary prints it on
//! one line and exits 64.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::auth::{KeyConfig, KeyError};
use crate::tls::Tls;

/// The exit code of a bad configuration (`EX_USAGE` of sysexits.h).
pub const EX_USAGE: i32 = 64;

/// A configuration error, printed on one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError(message.into())
    }
}

impl From<KeyError> for ConfigError {
    fn from(err: KeyError) -> Self {
        ConfigError(err.0)
    }
}

/// `ringcast serve` flags. Every field is optional here so that env and file can fill it;
/// [`ServeArgs::resolve`] applies the precedence and the defaults.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ServeArgs {
    /// TOML file with keys named like the flags
    #[arg(long, env = "RINGCAST_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// client WebSocket + HTTP API address [default: 127.0.0.1:8080]
    #[arg(long, env = "RINGCAST_LISTEN")]
    pub listen: Option<String>,
    /// serve /metrics (and health) here as well, for Prometheus and operators
    #[arg(long, env = "RINGCAST_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// stable node name [default: host name]
    #[arg(long, env = "RINGCAST_NODE_ID")]
    pub node_id: Option<String>,
    /// internal TCP links and gossip UDP on one port; unset = single node
    #[arg(long, env = "RINGCAST_CLUSTER_LISTEN")]
    pub cluster_listen: Option<String>,
    /// address other nodes reach this node at [default: cluster-listen]
    #[arg(long, env = "RINGCAST_CLUSTER_ADVERTISE")]
    pub cluster_advertise: Option<String>,
    /// comma-separated host:port of other nodes
    #[arg(long, env = "RINGCAST_SEEDS")]
    pub seeds: Option<String>,
    /// shared secret of the internal protocol
    #[arg(long, env = "RINGCAST_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// nodes with another cluster id ignore each other [default: ringcast]
    #[arg(long, env = "RINGCAST_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// gossip round interval in milliseconds [default: 100]
    #[arg(long, env = "RINGCAST_GOSSIP_INTERVAL_MS")]
    pub gossip_interval_ms: Option<u64>,
    /// silence after which a node is declared dead, in milliseconds [default: 1500]
    #[arg(long, env = "RINGCAST_FAILURE_TIMEOUT_MS")]
    pub failure_timeout_ms: Option<u64>,
    /// HS256 key of client tokens
    #[arg(long, env = "RINGCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key of client tokens (with --jwt-alg)
    #[arg(long, env = "RINGCAST_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// HS256 | RS256 | ES256 | EdDSA [default: HS256, or RS256 with a public key]
    #[arg(long, env = "RINGCAST_JWT_ALG")]
    pub jwt_alg: Option<String>,
    /// bearer key of the admin API
    #[arg(long, env = "RINGCAST_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Redis URL for persistence; unset = memory
    #[arg(long, env = "RINGCAST_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// PEM certificate chain for wss/https
    #[arg(long, env = "RINGCAST_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for wss/https
    #[arg(long, env = "RINGCAST_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// comma-separated allowed Origin values; unset = any origin
    #[arg(long, env = "RINGCAST_ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,
    /// largest client message in bytes, after reassembly [default: 524288]
    #[arg(long, env = "RINGCAST_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// sustained client messages per second per connection [default: 10]
    #[arg(long, env = "RINGCAST_RATE_PER_SECOND")]
    pub rate_per_second: Option<f64>,
    /// burst of client messages per connection [default: 20]
    #[arg(long, env = "RINGCAST_RATE_BURST")]
    pub rate_burst: Option<u32>,
    /// seconds of continued excess before close 4008 [default: 10]
    #[arg(long, env = "RINGCAST_RATE_LIMIT_CLOSE_SECS")]
    pub rate_limit_close_secs: Option<f64>,
    /// outbound queue per connection in frames [default: 256]
    #[arg(long, env = "RINGCAST_QUEUE_FRAMES")]
    pub queue_frames: Option<usize>,
    /// close a connection silent this long [default: 60]
    #[arg(long, env = "RINGCAST_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<f64>,
    /// interval of server WebSocket pings [default: 25]
    #[arg(long, env = "RINGCAST_PING_INTERVAL_SECS")]
    pub ping_interval_secs: Option<f64>,
    /// time allowed for the in-band auth frame [default: 10]
    #[arg(long, env = "RINGCAST_AUTH_TIMEOUT_SECS")]
    pub auth_timeout_secs: Option<f64>,
    /// failed requests within the error window before close 1008 [default: 50]
    #[arg(long, env = "RINGCAST_ERROR_LIMIT")]
    pub error_limit: Option<u32>,
    /// the error window in seconds [default: 60]
    #[arg(long, env = "RINGCAST_ERROR_WINDOW_SECS")]
    pub error_window_secs: Option<f64>,
    /// messages kept per room [default: 100]
    #[arg(long, env = "RINGCAST_HISTORY_SIZE")]
    pub history_size: Option<usize>,
    /// offline direct messages kept per user [default: 1000]
    #[arg(long, env = "RINGCAST_INBOX_SIZE")]
    pub inbox_size: Option<usize>,
    /// most connections this node accepts [default: 100000]
    #[arg(long, env = "RINGCAST_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// seconds a graceful shutdown may take [default: 30]
    #[arg(long, env = "RINGCAST_DRAIN_TIMEOUT_SECS")]
    pub drain_timeout_secs: Option<f64>,
    /// offline direct messages are kept this long [default: 86400]
    #[arg(long, env = "RINGCAST_INBOX_TTL_SECS")]
    pub inbox_ttl_secs: Option<f64>,
    /// a user stays online this long after its last connection closes [default: 5000]
    #[arg(long, env = "RINGCAST_PRESENCE_GRACE_MS")]
    pub presence_grace_ms: Option<u64>,
    /// a typing:true not renewed within this many milliseconds is ended [default: 6000]
    #[arg(long, env = "RINGCAST_TYPING_TIMEOUT_MS")]
    pub typing_timeout_ms: Option<u64>,
    /// runtime worker threads [default: one per CPU]
    #[arg(long, env = "RINGCAST_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// log format: text | json [default: text]
    #[arg(long, env = "RINGCAST_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// no key given: make one, print it and a ready token (never in production)
    #[arg(long, env = "RINGCAST_DEV")]
    pub dev: Option<bool>,
}

/// The validated configuration of a node.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub node_id: String,
    /// How client tokens are checked.
    pub key: KeyConfig,
    /// True when the key was made up at start (`--dev`, or no key configured).
    pub dev: bool,
    /// `None` = any origin.
    pub allowed_origins: Option<Vec<String>>,
    pub limits: Limits,
    pub history_size: usize,
    pub inbox_size: usize,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    pub log_json: bool,
    /// `None` = a single node.
    pub cluster: Option<ClusterSettings>,
    /// Bearer key of the admin API (besides admin JWTs).
    pub admin_key: Option<String>,
    /// Runtime worker threads; `None` = one per CPU.
    pub worker_threads: Option<usize>,
    /// How long a `typing:true` lasts without renewal.
    pub typing_timeout: Duration,
    /// How long an offline direct message is kept.
    pub inbox_ttl: Duration,
    /// How long a user stays online after its last connection closes.
    pub presence_grace: Duration,
    /// Persistence in Redis; `None` = memory only.
    pub redis_url: Option<String>,
    /// wss/https on the client and admin ports; `None` = plain.
    pub tls: Option<Arc<Tls>>,
}

/// How a node joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub listen: SocketAddr,
    pub advertise: SocketAddr,
    pub seeds: Vec<String>,
    pub secret: String,
    pub cluster_id: String,
    pub gossip_interval: Duration,
    pub failure_timeout: Duration,
}

/// Per-connection limits (PROTOCOL.md §1).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub rate_per_second: f64,
    pub rate_burst: u32,
    pub rate_limit_close_after: Duration,
    pub queue_frames: usize,
    pub idle_timeout: Duration,
    pub ping_interval: Duration,
    pub auth_timeout: Duration,
    pub error_limit: u32,
    pub error_window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 512 * 1024,
            rate_per_second: 10.0,
            rate_burst: 20,
            rate_limit_close_after: Duration::from_secs(10),
            queue_frames: 256,
            idle_timeout: Duration::from_secs(60),
            ping_interval: Duration::from_secs(25),
            auth_timeout: Duration::from_secs(10),
            error_limit: 50,
            error_window: Duration::from_secs(60),
        }
    }
}

impl ServeArgs {
    /// Reads the file named by `--config` (if any) and fills every field the flags and env
    /// left empty.
    pub fn merge_file(mut self) -> Result<Self, ConfigError> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|err| ConfigError::new(format!("cannot read config file {}: {err}", path.display())))?;
        let file =
            parse_file(&text).map_err(|err| ConfigError::new(format!("config file {}: {err}", path.display())))?;
        macro_rules! fill {
            ($($field:ident),*) => { $( if self.$field.is_none() { self.$field = file.$field; } )* };
        }
        fill!(
            listen,
            admin_listen,
            node_id,
            cluster_listen,
            cluster_advertise,
            seeds,
            cluster_secret,
            jwt_secret,
            jwt_public_key,
            jwt_alg,
            admin_key,
            redis_url,
            tls_cert,
            tls_key,
            allowed_origins,
            max_message_bytes,
            rate_per_second,
            rate_burst,
            rate_limit_close_secs,
            queue_frames,
            idle_timeout_secs,
            ping_interval_secs,
            auth_timeout_secs,
            error_limit,
            error_window_secs,
            history_size,
            inbox_size,
            max_connections,
            drain_timeout_secs,
            log_format,
            dev
        );
        Ok(self)
    }

    /// Applies defaults and checks every value.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let this = self.merge_file()?;
        let listen = parse_addr("--listen", this.listen.as_deref().unwrap_or("127.0.0.1:8080"))?;
        let admin_listen = this.admin_listen.as_deref().map(|addr| parse_addr("--admin-listen", addr)).transpose()?;
        let redis_url = match this.redis_url.filter(|url| !url.is_empty()) {
            None => None,
            Some(url) => match redis::Client::open(url.as_str()) {
                Ok(_) => Some(url),
                Err(err) => return Err(ConfigError::new(format!("--redis-url is not usable: {err}"))),
            },
        };
        let cluster = match &this.cluster_listen {
            None => {
                for (flag, value) in [("--seeds", &this.seeds), ("--cluster-advertise", &this.cluster_advertise)] {
                    if value.is_some() {
                        return Err(ConfigError::new(format!("{flag} needs --cluster-listen")));
                    }
                }
                None
            }
            Some(cluster_listen) => {
                let listen = parse_addr("--cluster-listen", cluster_listen)?;
                let advertise = match &this.cluster_advertise {
                    Some(addr) => parse_addr("--cluster-advertise", addr)?,
                    None if listen.ip().is_unspecified() => {
                        return Err(ConfigError::new("--cluster-listen on 0.0.0.0 needs --cluster-advertise"))
                    }
                    None => listen,
                };
                let secret = this
                    .cluster_secret
                    .clone()
                    .ok_or_else(|| ConfigError::new("--cluster-secret is required with --cluster-listen"))?;
                if secret.len() < 8 {
                    return Err(ConfigError::new("--cluster-secret must be at least 8 characters"));
                }
                let gossip_interval =
                    Duration::from_millis(positive("--gossip-interval-ms", this.gossip_interval_ms, 100)?);
                let failure_timeout =
                    Duration::from_millis(positive("--failure-timeout-ms", this.failure_timeout_ms, 1500)?);
                if failure_timeout < gossip_interval * 3 {
                    return Err(ConfigError::new("--failure-timeout-ms must be at least 3 gossip intervals"));
                }
                Some(ClusterSettings {
                    listen,
                    advertise,
                    seeds: this.seeds.as_deref().map(split_list).unwrap_or_default(),
                    secret,
                    cluster_id: this.cluster_id.clone().unwrap_or_else(|| "ringcast".to_string()),
                    gossip_interval,
                    failure_timeout,
                })
            }
        };
        let tls = match (&this.tls_cert, &this.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(Arc::new(Tls::load(cert, key).map_err(ConfigError::new)?)),
            (Some(_), None) => return Err(ConfigError::new("--tls-cert needs --tls-key")),
            (None, Some(_)) => return Err(ConfigError::new("--tls-key needs --tls-cert")),
        };
        let node_id = match this.node_id {
            Some(node_id) => node_id,
            None => host_name(),
        };
        if node_id.is_empty()
            || node_id.len() > 64
            || !node_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ConfigError::new(format!("--node-id {node_id:?} must be 1-64 chars of [A-Za-z0-9-_.]")));
        }
        let dev_flag = this.dev.unwrap_or(false);
        let key_opt = KeyConfig::from_options(
            this.jwt_secret.as_deref(),
            this.jwt_public_key.as_deref(),
            this.jwt_alg.as_deref(),
            None,
        )?;
        let (key, dev) = match key_opt {
            Some(key) => (key, false),
            None => (KeyConfig::Hs256(crate::auth::random_secret()), true),
        };
        if dev_flag && !dev {
            tracing::warn!("--dev given with a configured key: using the configured key");
        }
        let allowed_origins = this.allowed_origins.map(|list| split_list(&list));
        let defaults = Limits::default();
        let limits = Limits {
            max_message_bytes: positive("--max-message-bytes", this.max_message_bytes, defaults.max_message_bytes)?,
            rate_per_second: positive_f64("--rate-per-second", this.rate_per_second, defaults.rate_per_second)?,
            rate_burst: positive("--rate-burst", this.rate_burst, defaults.rate_burst)?,
            rate_limit_close_after: seconds(
                "--rate-limit-close-secs",
                this.rate_limit_close_secs,
                defaults.rate_limit_close_after,
            )?,
            queue_frames: positive("--queue-frames", this.queue_frames, defaults.queue_frames)?,
            idle_timeout: seconds("--idle-timeout-secs", this.idle_timeout_secs, defaults.idle_timeout)?,
            ping_interval: seconds("--ping-interval-secs", this.ping_interval_secs, defaults.ping_interval)?,
            auth_timeout: seconds("--auth-timeout-secs", this.auth_timeout_secs, defaults.auth_timeout)?,
            error_limit: positive("--error-limit", this.error_limit, defaults.error_limit)?,
            error_window: seconds("--error-window-secs", this.error_window_secs, defaults.error_window)?,
        };
        let log_json = match this.log_format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => return Err(ConfigError::new(format!("--log-format {other:?} must be text or json"))),
        };
        Ok(Config {
            listen,
            admin_listen,
            node_id,
            key,
            dev,
            allowed_origins,
            limits,
            history_size: positive("--history-size", this.history_size, 100)?,
            inbox_size: positive("--inbox-size", this.inbox_size, 1000)?,
            max_connections: positive("--max-connections", this.max_connections, 100_000)?,
            drain_timeout: seconds("--drain-timeout-secs", this.drain_timeout_secs, Duration::from_secs(30))?,
            log_json,
            cluster,
            admin_key: this.admin_key.filter(|key| !key.is_empty()),
            redis_url,
            typing_timeout: Duration::from_millis(positive("--typing-timeout-ms", this.typing_timeout_ms, 6000)?),
            inbox_ttl: seconds("--inbox-ttl-secs", this.inbox_ttl_secs, Duration::from_secs(86_400))?,
            presence_grace: Duration::from_millis(positive("--presence-grace-ms", this.presence_grace_ms, 5000)?),
            tls,
            worker_threads: match this.worker_threads {
                None => None,
                Some(threads) if (1..=1024).contains(&threads) => Some(threads),
                Some(threads) => {
                    return Err(ConfigError::new(format!("--worker-threads must be 1-1024, got {threads}")))
                }
            },
        })
    }
}

/// Parses a TOML config file; keys may use `-` or `_`.
fn parse_file(text: &str) -> Result<ServeArgs, String> {
    let table: toml::Table = text.parse().map_err(|err: toml::de::Error| err.message().to_string())?;
    let normalized: toml::Table = table.into_iter().map(|(key, value)| (key.replace('_', "-"), value)).collect();
    ServeArgs::deserialize(normalized).map_err(|err| err.message().to_string())
}

pub fn split_list(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_string).collect()
}

fn parse_addr(flag: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    value
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| ConfigError::new(format!("{flag} {value:?} is not a host:port address")))
}

fn positive<T: PartialOrd + Default + Copy + std::fmt::Display>(
    flag: &str,
    value: Option<T>,
    default: T,
) -> Result<T, ConfigError> {
    let value = value.unwrap_or(default);
    if value <= T::default() {
        return Err(ConfigError::new(format!("{flag} must be greater than 0, got {value}")));
    }
    Ok(value)
}

fn positive_f64(flag: &str, value: Option<f64>, default: f64) -> Result<f64, ConfigError> {
    let value = value.unwrap_or(default);
    if !(value.is_finite() && value > 0.0) {
        return Err(ConfigError::new(format!("{flag} must be greater than 0, got {value}")));
    }
    Ok(value)
}

fn seconds(flag: &str, value: Option<f64>, default: Duration) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(secs) => Ok(Duration::from_secs_f64(positive_f64(flag, Some(secs), 1.0)?)),
    }
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|name| name.trim().to_string()))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "ringcast".to_string())
}

/// Parses a duration such as `90`, `90s`, `15m`, `1h` or `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, ConfigError> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(index) => text.split_at(index),
        None => (text, "s"),
    };
    let number: u64 =
        digits.parse().map_err(|_| ConfigError::new(format!("{text:?} is not a duration like 90s, 15m, 1h")))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(ConfigError::new(format!("{text:?} is not a duration like 90s, 15m, 1h"))),
    };
    Ok(Duration::from_secs(number * unit_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_file_keys_accept_dashes_and_underscores() {
        let args = parse_file("listen = \"127.0.0.1:9\"\nmax_message_bytes = 10\nrate-burst = 3\n").unwrap();
        assert_eq!(args.listen.as_deref(), Some("127.0.0.1:9"));
        assert_eq!(args.max_message_bytes, Some(10));
        assert_eq!(args.rate_burst, Some(3));
    }

    #[test]
    fn test_file_rejects_unknown_keys() {
        assert!(parse_file("lisen = \"x\"").unwrap_err().contains("lisen"));
    }

    #[test]
    fn test_durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn test_zero_limits_are_rejected() {
        let args = ServeArgs { queue_frames: Some(0), jwt_secret: Some("k".into()), ..Default::default() };
        assert!(args.resolve().unwrap_err().0.contains("--queue-frames"));
    }
}
