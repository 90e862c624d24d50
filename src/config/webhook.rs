//! The settings of webhooks and of the authorization hooks (PROTOCOL.md §12): where events
//! are posted, with which key they are signed, which events, and how long a delivery is
//! retried; where connections and joins are asked about.

use std::time::Duration;

use base64::Engine as _;

use super::resolve::positive;
use super::{split_list, ConfigError, ServeArgs};

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

impl ServeArgs {
    /// The webhooks configured, if any.
    pub(super) fn webhooks(&self) -> Result<Option<WebhookSettings>, ConfigError> {
        let Some(list) = self.webhook_url.as_deref() else {
            for (flag, value) in [("--webhook-events", &self.webhook_events)] {
                if value.is_some() {
                    return Err(ConfigError::new(format!("{flag} needs --webhook-url")));
                }
            }
            return Ok(None);
        };
        let urls = split_list(list).iter().map(|url| parse_url("--webhook-url", url)).collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Ok(None);
        }
        let events = match self.webhook_events.as_deref() {
            None => u16::MAX >> (16 - EVENT_TYPES.len()),
            Some(list) => {
                let mut bits = 0u16;
                for name in split_list(list) {
                    let index = EVENT_TYPES.iter().position(|known| *known == name).ok_or_else(|| {
                        ConfigError::new(format!(
                            "--webhook-events: unknown event {name:?} (known: {})",
                            EVENT_TYPES.join(", ")
                        ))
                    })?;
                    bits |= 1 << index;
                }
                bits
            }
        };
        Ok(Some(WebhookSettings {
            urls,
            secret: self.hook_secret()?,
            events,
            retry_window: Duration::from_secs(positive("--webhook-retry-secs", self.webhook_retry_secs, 3600)?),
            timeout: Duration::from_millis(positive("--webhook-timeout-ms", self.webhook_timeout_ms, 5000)?),
            queue_limit: positive("--webhook-queue-limit", self.webhook_queue_limit, 10_000)?,
        }))
    }

    /// The authorization hooks configured (`None` when neither is).
    pub(super) fn hooks(&self) -> Result<Option<HookSettings>, ConfigError> {
        let connect_url =
            self.connect_hook_url.as_deref().map(|url| parse_url("--connect-hook-url", url)).transpose()?;
        let join_url = self.join_hook_url.as_deref().map(|url| parse_url("--join-hook-url", url)).transpose()?;
        let join_rooms = self.join_hook_rooms.as_deref().map(split_list).unwrap_or_default();
        if join_url.is_some() && join_rooms.is_empty() {
            return Err(ConfigError::new("--join-hook-url needs --join-hook-rooms (room name prefixes)"));
        }
        if join_url.is_none() && !join_rooms.is_empty() {
            return Err(ConfigError::new("--join-hook-rooms needs --join-hook-url"));
        }
        let allow_on_failure = match self.hook_failure.as_deref() {
            None | Some("deny") => false,
            Some("allow") => true,
            Some(other) => return Err(ConfigError::new(format!("--hook-failure {other:?} must be deny or allow"))),
        };
        let timeout = Duration::from_millis(positive("--hook-timeout-ms", self.hook_timeout_ms, 2000)?);
        if connect_url.is_none() && join_url.is_none() {
            return Ok(None);
        }
        Ok(Some(HookSettings {
            connect_url,
            join_url,
            join_rooms,
            timeout,
            allow_on_failure,
            secret: self.hook_secret()?,
        }))
    }

    fn hook_secret(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        self.webhook_secret.as_deref().filter(|secret| !secret.is_empty()).map(parse_secret).transpose()
    }
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

fn parse_url(flag: &str, url: &str) -> Result<hyper::Uri, ConfigError> {
    let uri: hyper::Uri = url.parse().map_err(|_| ConfigError::new(format!("{flag} {url:?} is not a url")))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(_)) => Ok(uri),
        (Some("https"), _) => Err(ConfigError::new(format!("{flag} {url:?}: https is not supported, use http"))),
        _ => Err(ConfigError::new(format!("{flag} {url:?} must be http://host[:port]/path"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_secrets() {
        assert_eq!(parse_secret("whsec_aGVsbG8=").unwrap(), b"hello");
        assert!(parse_secret("whsec_!!").is_err());
        assert!(parse_secret("short").is_err());
        assert_eq!(parse_secret("long enough").unwrap(), b"long enough");
    }

    #[test]
    fn test_events_and_urls() {
        let args = ServeArgs {
            webhook_url: Some("http://127.0.0.1:9/a, http://localhost/b".into()),
            webhook_events: Some("room.joined,dm.sent".into()),
            ..Default::default()
        };
        let settings = args.webhooks().unwrap().unwrap();
        assert_eq!(settings.urls.len(), 2);
        assert_eq!(settings.events, 1 << 2 | 1 << 7);
        let bad = ServeArgs { webhook_url: Some("ftp://x".into()), ..Default::default() };
        assert!(bad.webhooks().unwrap_err().0.contains("--webhook-url"));
        let unknown = ServeArgs {
            webhook_url: Some("http://x/".into()),
            webhook_events: Some("nope".into()),
            ..Default::default()
        };
        assert!(unknown.webhooks().unwrap_err().0.contains("nope"));
    }
}
