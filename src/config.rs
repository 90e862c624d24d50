//! Configuration: command-line flags, their `RINGCAST_*` environment twins and an optional
//! TOML file, merged as flags > env > file > defaults, then validated once.
//!
//! Every key of the file has the name of its flag (`max-message-bytes`, or with
//! underscores, `max_message_bytes`). A bad value is a [`ConfigError`]: the binary prints it on
//! one line and exits 64.
//!
//! The flags are [`ServeArgs`] (`config/flags.rs`), the file is read in `config/file.rs`, and
//! `config/resolve.rs` applies the defaults and checks every value.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

pub use crate::admission::TrustedProxies;
use crate::auth::{JwtSettings, KeyConfig, KeyError};
use crate::tls::Tls;

mod file;
mod flags;
mod jwt;
mod resolve;
mod webhook;

pub use flags::ServeArgs;

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

/// The validated configuration of a node.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub node_id: String,
    /// How client tokens are checked.
    pub key: KeyConfig,
    /// Audience, issuer, leeway, rotation, JWKS and claim paths of client tokens.
    pub jwt: JwtSettings,
    /// True when the key was made up at start (`--dev`, or no key configured).
    pub dev: bool,
    /// Serve the demo chat at `/demo` (`--demo`; default: in development mode).
    pub demo: bool,
    /// `None` = any origin.
    pub allowed_origins: Option<Vec<String>>,
    pub limits: Limits,
    pub history_size: usize,
    pub inbox_size: usize,
    pub max_connections: usize,
    /// permessage-deflate (`--compression`, `--compression-min-bytes`).
    pub compression: CompressionSettings,
    /// `--max-connections-per-user`, `--connect-rate-per-ip`, `--trusted-proxies`.
    pub admission: Admission,
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
    /// Lifecycle webhooks; `None` = none.
    pub webhooks: Option<WebhookSettings>,
    /// Authorization hooks; `None` = none.
    pub hooks: Option<HookSettings>,
}

/// permessage-deflate (RFC 7692), negotiated per connection with the clients that offer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionSettings {
    /// Accept a client's offer (`--compression on`); off by default: see docs/compression.md.
    pub enabled: bool,
    /// Server messages shorter than this are sent uncompressed.
    pub min_bytes: usize,
}

impl Default for CompressionSettings {
    fn default() -> Self {
        CompressionSettings { enabled: false, min_bytes: 256 }
    }
}

/// Per-user and per-IP limits on new connections.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    /// A user's connections across the cluster at most; `None` = no limit.
    pub max_connections_per_user: Option<usize>,
    /// New connections per second per client IP; `None` = no limit.
    pub connect_rate_per_ip: Option<f64>,
    /// The proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
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
    /// Frames a peer link queues before forwards over it are refused.
    pub peer_queue_frames: usize,
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

/// Every event type, in the order of PROTOCOL.md §12.
pub const EVENT_TYPES: [&str; 9] = [
    "connection.opened",
    "connection.closed",
    "room.joined",
    "room.left",
    "message.created",
    "message.edited",
    "message.deleted",
    "dm.sent",
    "presence.changed",
];

/// Where and how events are posted.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The endpoints (`http://host:port/path`); every event goes to each.
    pub urls: Vec<hyper::Uri>,
    /// The HMAC key of the signature; `None` = events are not signed.
    pub secret: Option<Vec<u8>>,
    /// The event types posted, as bits by their index in [`EVENT_TYPES`].
    pub events: u16,
    /// How long a failing delivery is retried before it is dropped.
    pub retry_window: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Events waiting per endpoint at most; more are dropped and counted.
    pub queue_limit: usize,
}

/// The synchronous authorization hooks.
#[derive(Debug, Clone)]
pub struct HookSettings {
    /// Asked before `connected`.
    pub connect_url: Option<hyper::Uri>,
    /// Asked before a join of a room whose name starts with one of `join_rooms`.
    pub join_url: Option<hyper::Uri>,
    pub join_rooms: Vec<String>,
    /// How long a hook may take to answer.
    pub timeout: Duration,
    /// What a hook that fails (times out, errs, answers garbage) means: allow when true.
    pub allow_on_failure: bool,
    /// The HMAC key of the signature (the webhooks' secret); `None` = not signed.
    pub secret: Option<Vec<u8>>,
}

/// The key bytes of a secret: a `whsec_` prefix means base64 bytes follow (Standard
/// Webhooks); anything else is used as it is.
pub fn parse_secret(secret: &str) -> Result<Vec<u8>, ConfigError> {
    match secret.strip_prefix("whsec_") {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .filter(|key| !key.is_empty())
            .ok_or_else(|| ConfigError::new("--webhook-secret: whsec_ must be followed by base64")),
        None if secret.len() < 8 => Err(ConfigError::new("--webhook-secret must be at least 8 characters")),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

pub fn split_list(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_string).collect()
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
    fn test_durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
    }
}
