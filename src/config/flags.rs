//! The `ringcast serve` flags: clap arguments with their `RINGCAST_*` env twins, whose names
//! are also the keys of the TOML file.

use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;

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
    /// frames queued per peer link before forwards to it are refused (`unavailable`) [default: 16384]
    #[arg(long, env = "RINGCAST_PEER_QUEUE_FRAMES")]
    pub peer_queue_frames: Option<usize>,
    /// HS256 key of client tokens
    #[arg(long, env = "RINGCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key of client tokens (with --jwt-alg)
    #[arg(long, env = "RINGCAST_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// HS256 | RS256 | RS384 | RS512 | PS256 | ES256 | ES384 | EdDSA [default: HS256, or RS256 with a public key]
    #[arg(long, env = "RINGCAST_JWT_ALG")]
    pub jwt_alg: Option<String>,
    /// previous HS256 key, still accepted while a rotation lasts
    #[arg(long, env = "RINGCAST_JWT_PREVIOUS_SECRET", hide_env_values = true)]
    pub jwt_previous_secret: Option<String>,
    /// previous PEM public key (of --jwt-alg), still accepted while a rotation lasts
    #[arg(long, env = "RINGCAST_JWT_PREVIOUS_PUBLIC_KEY")]
    pub jwt_previous_public_key: Option<PathBuf>,
    /// comma-separated accepted `aud` values; unset = aud not checked
    #[arg(long, env = "RINGCAST_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// comma-separated accepted `iss` values; unset = iss not checked
    #[arg(long, env = "RINGCAST_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// clock skew allowed on exp, nbf and iat, in seconds [default: 30]
    #[arg(long, env = "RINGCAST_JWT_LEEWAY_SECS")]
    pub jwt_leeway_secs: Option<u64>,
    /// URL of a JWKS whose keys (by kid) verify tokens
    #[arg(long, env = "RINGCAST_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,
    /// seconds between fetches of the JWKS [default: 300]
    #[arg(long, env = "RINGCAST_JWT_JWKS_REFRESH_SECS")]
    pub jwt_jwks_refresh_secs: Option<f64>,
    /// an unknown kid fetches the JWKS at most this often, in seconds [default: 10]
    #[arg(long, env = "RINGCAST_JWT_JWKS_MIN_INTERVAL_SECS")]
    pub jwt_jwks_min_interval_secs: Option<f64>,
    /// claim (or dotted path) holding the roles [default: roles]
    #[arg(long, env = "RINGCAST_JWT_ROLES_CLAIM")]
    pub jwt_roles_claim: Option<String>,
    /// claim (or dotted path) holding the groups [default: groups]
    #[arg(long, env = "RINGCAST_JWT_GROUPS_CLAIM")]
    pub jwt_groups_claim: Option<String>,
    /// claim (or dotted path) holding the tenant [default: tenant]
    #[arg(long, env = "RINGCAST_JWT_TENANT_CLAIM")]
    pub jwt_tenant_claim: Option<String>,
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
    /// most connections of one user across the cluster; unset = no limit
    #[arg(long, env = "RINGCAST_MAX_CONNECTIONS_PER_USER")]
    pub max_connections_per_user: Option<usize>,
    /// new connections per second per client IP; unset = no limit
    #[arg(long, env = "RINGCAST_CONNECT_RATE_PER_IP")]
    pub connect_rate_per_ip: Option<f64>,
    /// comma-separated proxies (IPs, CIDRs) whose X-Forwarded-For names the client IP
    #[arg(long, env = "RINGCAST_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
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
    /// permessage-deflate (RFC 7692) for clients that offer it: off | on [default: off]
    #[arg(long, env = "RINGCAST_COMPRESSION")]
    pub compression: Option<String>,
    /// server messages shorter than this go uncompressed [default: 256]
    #[arg(long, env = "RINGCAST_COMPRESSION_MIN_BYTES")]
    pub compression_min_bytes: Option<usize>,
    /// runtime worker threads [default: one per CPU]
    #[arg(long, env = "RINGCAST_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// log format: text | json [default: text]
    #[arg(long, env = "RINGCAST_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// no key given: make one, print it and a ready token (never in production)
    #[arg(long, env = "RINGCAST_DEV")]
    pub dev: Option<bool>,
    /// serve the demo chat page at /demo [default: true in development mode]
    #[arg(long, env = "RINGCAST_DEMO")]
    pub demo: Option<bool>,
    /// comma-separated http URLs every event is posted to (PROTOCOL.md §12)
    #[arg(long, env = "RINGCAST_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// HMAC key of the webhook and hook signatures (whsec_ + base64, or the key itself)
    #[arg(long, env = "RINGCAST_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// comma-separated event types to post [default: all]
    #[arg(long, env = "RINGCAST_WEBHOOK_EVENTS")]
    pub webhook_events: Option<String>,
    /// how long a failing delivery is retried, in seconds [default: 3600]
    #[arg(long, env = "RINGCAST_WEBHOOK_RETRY_SECS")]
    pub webhook_retry_secs: Option<u64>,
    /// time allowed for one delivery attempt, in milliseconds [default: 5000]
    #[arg(long, env = "RINGCAST_WEBHOOK_TIMEOUT_MS")]
    pub webhook_timeout_ms: Option<u64>,
    /// events waiting per endpoint at most; more are dropped [default: 10000]
    #[arg(long, env = "RINGCAST_WEBHOOK_QUEUE_LIMIT")]
    pub webhook_queue_limit: Option<usize>,
    /// http URL asked before a connection is accepted
    #[arg(long, env = "RINGCAST_CONNECT_HOOK_URL")]
    pub connect_hook_url: Option<String>,
    /// http URL asked before a join of a room named by --join-hook-rooms
    #[arg(long, env = "RINGCAST_JOIN_HOOK_URL")]
    pub join_hook_url: Option<String>,
    /// comma-separated room name prefixes whose joins ask --join-hook-url
    #[arg(long, env = "RINGCAST_JOIN_HOOK_ROOMS")]
    pub join_hook_rooms: Option<String>,
    /// time allowed for a hook's answer, in milliseconds [default: 2000]
    #[arg(long, env = "RINGCAST_HOOK_TIMEOUT_MS")]
    pub hook_timeout_ms: Option<u64>,
    /// what a failed hook means: deny | allow [default: deny]
    #[arg(long, env = "RINGCAST_HOOK_FAILURE")]
    pub hook_failure: Option<String>,
}
