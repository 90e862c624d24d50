//! The flags of webhooks and of the authorization hooks (PROTOCOL.md §12) checked into
//! [`WebhookSettings`] and [`HookSettings`].

use std::time::Duration;

use super::resolve::positive;
use super::{parse_secret, split_list, ConfigError, HookSettings, ServeArgs, WebhookSettings, EVENT_TYPES};

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
        // A connection waiting for the connect hook is still within its auth timeout.
        if connect_url.is_some() && timeout.as_secs_f64() >= self.auth_timeout_secs.unwrap_or(10.0) {
            return Err(ConfigError::new("--hook-timeout-ms must be below --auth-timeout-secs"));
        }
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
