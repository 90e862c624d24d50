//! [`ServeArgs::resolve`]: the defaults and the checks that turn the merged flags, env and
//! file into a [`Config`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{
    split_list, Admission, ClusterSettings, CompressionSettings, Config, ConfigError, Limits, ServeArgs, TrustedProxies,
};
use crate::auth::KeyConfig;
use crate::tls::Tls;

impl ServeArgs {
    /// Applies defaults and checks every value.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let this = self.merge_file()?;
        let (webhooks, hooks) = (this.webhooks()?, this.hooks()?);
        let jwt = this.jwt_settings(this.jwt_secret.is_some() || this.jwt_public_key.is_some())?;
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
                    peer_queue_frames: positive("--peer-queue-frames", this.peer_queue_frames, 16 * 1024)?,
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
            // With only a JWKS, the made-up key verifies nothing (`jwt.static_key` is false).
            None => (KeyConfig::Hs256(crate::auth::random_secret()), jwt.jwks.is_none()),
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
        let compression = CompressionSettings {
            enabled: match this.compression.as_deref() {
                None | Some("off") => false,
                Some("on") => true,
                Some(other) => return Err(ConfigError::new(format!("--compression {other:?} must be off or on"))),
            },
            min_bytes: this.compression_min_bytes.unwrap_or(CompressionSettings::default().min_bytes),
        };
        Ok(Config {
            webhooks,
            compression,
            hooks,
            listen,
            admin_listen,
            node_id,
            key,
            jwt,
            dev,
            demo: this.demo.unwrap_or(dev),
            allowed_origins,
            limits,
            history_size: positive("--history-size", this.history_size, 100)?,
            inbox_size: positive("--inbox-size", this.inbox_size, 1000)?,
            max_connections: positive("--max-connections", this.max_connections, 100_000)?,
            admission: Admission {
                max_connections_per_user: match this.max_connections_per_user {
                    None => None,
                    Some(limit) => Some(positive("--max-connections-per-user", Some(limit), 1)?),
                },
                connect_rate_per_ip: match this.connect_rate_per_ip {
                    None => None,
                    Some(rate) => Some(positive_f64("--connect-rate-per-ip", Some(rate), 1.0)?),
                },
                trusted_proxies: match &this.trusted_proxies {
                    None => TrustedProxies::default(),
                    Some(list) => TrustedProxies::parse(list)
                        .map_err(|err| ConfigError::new(format!("--trusted-proxies: {err}")))?,
                },
            },
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

fn parse_addr(flag: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    value
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| ConfigError::new(format!("{flag} {value:?} is not a host:port address")))
}

pub(super) fn positive<T: PartialOrd + Default + Copy + std::fmt::Display>(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_demo_defaults_to_development_mode() {
        let dev = ServeArgs::default().resolve().unwrap();
        assert!(dev.dev && dev.demo);
        let keyed = ServeArgs { jwt_secret: Some("k".into()), ..Default::default() }.resolve().unwrap();
        assert!(!keyed.dev && !keyed.demo);
        let on = ServeArgs { jwt_secret: Some("k".into()), demo: Some(true), ..Default::default() };
        assert!(on.resolve().unwrap().demo);
        assert!(!ServeArgs { demo: Some(false), ..Default::default() }.resolve().unwrap().demo);
    }

    #[test]
    fn test_compression_flags() {
        let keyed = || ServeArgs { jwt_secret: Some("k".into()), ..Default::default() };
        assert_eq!(keyed().resolve().unwrap().compression, CompressionSettings { enabled: false, min_bytes: 256 });
        let on = ServeArgs { compression: Some("on".into()), compression_min_bytes: Some(0), ..keyed() };
        assert_eq!(on.resolve().unwrap().compression, CompressionSettings { enabled: true, min_bytes: 0 });
        let bad = ServeArgs { compression: Some("yes".into()), ..keyed() };
        assert_eq!(bad.resolve().unwrap_err().0, r#"--compression "yes" must be off or on"#);
    }

    #[test]
    fn test_zero_limits_are_rejected() {
        let args = ServeArgs { queue_frames: Some(0), jwt_secret: Some("k".into()), ..Default::default() };
        assert!(args.resolve().unwrap_err().0.contains("--queue-frames"));
    }
}
