//! The TOML config file named by `--config`: parsed with the flags' names as keys and merged
//! under the flags and env.

use serde::Deserialize;

use super::{ConfigError, ServeArgs};

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
            cluster_id,
            gossip_interval_ms,
            failure_timeout_ms,
            peer_queue_frames,
            jwt_secret,
            jwt_public_key,
            jwt_alg,
            jwt_previous_secret,
            jwt_previous_public_key,
            jwt_audience,
            jwt_issuer,
            jwt_leeway_secs,
            jwt_jwks_url,
            jwt_jwks_refresh_secs,
            jwt_jwks_min_interval_secs,
            jwt_roles_claim,
            jwt_groups_claim,
            jwt_tenant_claim,
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
            max_connections_per_user,
            connect_rate_per_ip,
            trusted_proxies,
            drain_timeout_secs,
            log_format,
            dev,
            demo,
            webhook_url,
            webhook_secret,
            webhook_events,
            webhook_retry_secs,
            webhook_timeout_ms,
            webhook_queue_limit,
            connect_hook_url,
            join_hook_url,
            join_hook_rooms,
            hook_timeout_ms,
            hook_failure
        );
        Ok(self)
    }
}

/// Parses a TOML config file; keys may use `-` or `_`.
fn parse_file(text: &str) -> Result<ServeArgs, String> {
    let table: toml::Table = text.parse().map_err(|err: toml::de::Error| err.message().to_string())?;
    let normalized: toml::Table = table.into_iter().map(|(key, value)| (key.replace('_', "-"), value)).collect();
    ServeArgs::deserialize(normalized).map_err(|err| err.message().to_string())
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
    fn test_cluster_keys_of_the_file_fill_what_the_flags_left_empty() {
        let path = std::env::temp_dir().join(format!("ringcast-config-{}.toml", std::process::id()));
        let text = "cluster-id = \"blue\"\ngossip-interval-ms = 50\nfailure-timeout-ms = 900\npeer-queue-frames = 64\n";
        std::fs::write(&path, text).unwrap();
        let flags = ServeArgs { config: Some(path.clone()), gossip_interval_ms: Some(70), ..Default::default() };
        let args = flags.merge_file();
        std::fs::remove_file(&path).unwrap();
        let args = args.unwrap();
        assert_eq!(args.cluster_id.as_deref(), Some("blue"));
        assert_eq!(args.gossip_interval_ms, Some(70), "a flag wins over the file");
        assert_eq!(args.failure_timeout_ms, Some(900));
        assert_eq!(args.peer_queue_frames, Some(64));
    }

    #[test]
    fn test_file_rejects_unknown_keys() {
        assert!(parse_file("lisen = \"x\"").unwrap_err().contains("lisen"));
    }
}
