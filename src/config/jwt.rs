//! The JWT options besides the key: audience, issuer, leeway, the previous key of a
//! rotation, the JWKS URL and the claim paths.

use std::time::Duration;

use super::{split_list, ConfigError, ServeArgs};
use crate::auth::{check_claim_path, ClaimPaths, JwksSettings, JwtSettings, KeyConfig};

impl ServeArgs {
    /// The checked JWT settings; `has_key` tells whether a secret or key file was given.
    pub(super) fn jwt_settings(&self, has_key: bool) -> Result<JwtSettings, ConfigError> {
        let previous = match (&self.jwt_previous_secret, &self.jwt_previous_public_key) {
            (None, None) => None,
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "give either --jwt-previous-secret or --jwt-previous-public-key, not both",
                ))
            }
            (Some(secret), None) => {
                if secret.is_empty() {
                    return Err(ConfigError::new("--jwt-previous-secret must not be empty"));
                }
                Some(KeyConfig::Hs256(secret.as_bytes().to_vec()))
            }
            (None, Some(path)) => {
                if self.jwt_alg.as_deref().is_some_and(|alg| alg.eq_ignore_ascii_case("HS256")) {
                    return Err(ConfigError::new("--jwt-previous-public-key needs a public-key --jwt-alg"));
                }
                KeyConfig::from_options(None, Some(path), self.jwt_alg.as_deref(), None).map_err(|err| {
                    match err.0.contains("--jwt-public-key") {
                        true => ConfigError::new(err.0.replace("--jwt-public-key", "--jwt-previous-public-key")),
                        false => ConfigError::new(format!("--jwt-previous-public-key: {}", err.0)),
                    }
                })?
            }
        };
        if previous.is_some() && !has_key {
            return Err(ConfigError::new("--jwt-previous-secret/--jwt-previous-public-key need a current key"));
        }
        let jwks = match self.jwt_jwks_url.as_deref().filter(|url| !url.is_empty()) {
            None => None,
            Some(url) => {
                let parsed = reqwest::Url::parse(url)
                    .map_err(|err| ConfigError::new(format!("--jwt-jwks-url {url:?} is not a url: {err}")))?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                    return Err(ConfigError::new(format!("--jwt-jwks-url {url:?} must be an http(s) url")));
                }
                Some(JwksSettings {
                    url: url.to_string(),
                    refresh: secs("--jwt-jwks-refresh-secs", self.jwt_jwks_refresh_secs, 300.0)?,
                    min_interval: secs("--jwt-jwks-min-interval-secs", self.jwt_jwks_min_interval_secs, 10.0)?,
                })
            }
        };
        if jwks.is_none() {
            for (flag, value) in [
                ("--jwt-jwks-refresh-secs", self.jwt_jwks_refresh_secs),
                ("--jwt-jwks-min-interval-secs", self.jwt_jwks_min_interval_secs),
            ] {
                if value.is_some() {
                    return Err(ConfigError::new(format!("{flag} needs --jwt-jwks-url")));
                }
            }
        }
        let leeway_secs = self.jwt_leeway_secs.unwrap_or(30);
        if leeway_secs > 3600 {
            return Err(ConfigError::new(format!("--jwt-leeway-secs must be at most 3600, got {leeway_secs}")));
        }
        let path = |flag: &str, value: &Option<String>, default: &str| -> Result<String, ConfigError> {
            let path = value.clone().unwrap_or_else(|| default.to_string());
            check_claim_path(&path).map_err(|err| ConfigError::new(format!("{flag}: {err}")))?;
            Ok(path)
        };
        let defaults = ClaimPaths::default();
        Ok(JwtSettings {
            audiences: list("--jwt-audience", &self.jwt_audience)?,
            issuers: list("--jwt-issuer", &self.jwt_issuer)?,
            leeway_secs,
            previous,
            claims: ClaimPaths {
                roles: path("--jwt-roles-claim", &self.jwt_roles_claim, &defaults.roles)?,
                groups: path("--jwt-groups-claim", &self.jwt_groups_claim, &defaults.groups)?,
                tenant: path("--jwt-tenant-claim", &self.jwt_tenant_claim, &defaults.tenant)?,
            },
            static_key: has_key || jwks.is_none(),
            jwks,
        })
    }
}

fn list(flag: &str, value: &Option<String>) -> Result<Vec<String>, ConfigError> {
    match value {
        None => Ok(Vec::new()),
        Some(text) => {
            let items = split_list(text);
            if items.is_empty() {
                return Err(ConfigError::new(format!("{flag} must list at least one value")));
            }
            Ok(items)
        }
    }
}

fn secs(flag: &str, value: Option<f64>, default: f64) -> Result<Duration, ConfigError> {
    let value = value.unwrap_or(default);
    if !(value.is_finite() && value > 0.0 && value <= 86_400.0) {
        return Err(ConfigError::new(format!("{flag} must be between 0 and 86400, got {value}")));
    }
    Ok(Duration::from_secs_f64(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        ServeArgs { jwt_secret: Some("k".into()), ..Default::default() }
    }

    #[test]
    fn test_defaults_and_lists() {
        let settings = args().jwt_settings(true).unwrap();
        assert_eq!(settings.leeway_secs, 30);
        assert!(settings.audiences.is_empty() && settings.issuers.is_empty());
        let settings = ServeArgs { jwt_audience: Some("a, b".into()), ..args() }.jwt_settings(true).unwrap();
        assert_eq!(settings.audiences, ["a", "b"]);
    }

    #[test]
    fn test_bad_values() {
        let bad = |args: ServeArgs| args.jwt_settings(true).unwrap_err().0;
        assert!(bad(ServeArgs { jwt_audience: Some(",".into()), ..args() }).contains("--jwt-audience"));
        assert!(bad(ServeArgs { jwt_jwks_url: Some("ftp://x".into()), ..args() }).contains("--jwt-jwks-url"));
        assert!(bad(ServeArgs { jwt_roles_claim: Some("a..b".into()), ..args() }).contains("--jwt-roles-claim"));
        assert!(bad(ServeArgs { jwt_jwks_refresh_secs: Some(5.0), ..args() }).contains("needs --jwt-jwks-url"));
        assert!(bad(ServeArgs { jwt_leeway_secs: Some(99_999), ..args() }).contains("--jwt-leeway-secs"));
    }
}
