//! HS256 tokens for the harness's users.

use anyhow::Result;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::Serialize;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
    iat: u64,
    tenant: &'a str,
    name: &'a str,
}

pub struct Minter {
    key: EncodingKey,
    header: Header,
    tenant: String,
    exp: u64,
}

impl Minter {
    /// Tokens valid for `ttl_secs` from now.
    pub fn new(secret: &str, tenant: &str, ttl_secs: u64) -> Minter {
        let now = crate::proto::now_micros() / 1_000_000;
        Minter {
            key: EncodingKey::from_secret(secret.as_bytes()),
            header: Header::new(Algorithm::HS256),
            tenant: tenant.to_string(),
            exp: now + ttl_secs,
        }
    }

    pub fn token(&self, user: &str) -> Result<String> {
        let now = crate::proto::now_micros() / 1_000_000;
        let claims = Claims { sub: user, exp: self.exp, iat: now, tenant: &self.tenant, name: user };
        Ok(encode(&self.header, &claims, &self.key)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_token_verifies() {
        let minter = Minter::new("s3cret", "default", 3600);
        let token = minter.token("u7").unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(b"s3cret"),
            &validation,
        )
        .unwrap();
        assert_eq!(data.claims["sub"], "u7");
        assert_eq!(data.claims["tenant"], "default");
    }
}
