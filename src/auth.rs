//! Client authentication: JWT validation with a pinned algorithm, and token minting.

use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The tenant of a token without a `tenant` claim.
pub const DEFAULT_TENANT: &str = "default";

/// A bad key setting, or a token that cannot be signed, printed on one line (configuration
/// turns it into a `ConfigError`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

impl KeyError {
    fn new(message: impl Into<String>) -> Self {
        KeyError(message.into())
    }
}

/// Algorithms a deployment may pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    Hs256,
    Rs256,
    Es256,
    EdDsa,
}

impl JwtAlgorithm {
    fn parse(name: &str) -> Result<Self, KeyError> {
        match name.to_ascii_uppercase().as_str() {
            "HS256" => Ok(JwtAlgorithm::Hs256),
            "RS256" => Ok(JwtAlgorithm::Rs256),
            "ES256" => Ok(JwtAlgorithm::Es256),
            "EDDSA" => Ok(JwtAlgorithm::EdDsa),
            _ => Err(KeyError::new(format!("--jwt-alg {name:?} must be HS256, RS256, ES256 or EdDSA"))),
        }
    }

    fn algorithm(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Es256 => Algorithm::ES256,
            JwtAlgorithm::EdDsa => Algorithm::EdDSA,
        }
    }
}

/// How tokens are checked: a shared HS256 secret or a public key with its algorithm.
#[derive(Clone)]
pub enum KeyConfig {
    Hs256(Vec<u8>),
    PublicKey { algorithm: JwtAlgorithm, pem: Vec<u8> },
}

impl std::fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyConfig::Hs256(_) => f.write_str("Hs256(..)"),
            KeyConfig::PublicKey { algorithm, .. } => write!(f, "PublicKey({algorithm:?})"),
        }
    }
}

impl KeyConfig {
    /// Builds the key from the flags; `Ok(None)` when none is given. `private_key` is the
    /// signing key of `ringcast token` for the public-key algorithms.
    pub fn from_options(
        secret: Option<&str>,
        public_key: Option<&Path>,
        alg: Option<&str>,
        private_key: Option<&Path>,
    ) -> Result<Option<KeyConfig>, KeyError> {
        let algorithm = alg.map(JwtAlgorithm::parse).transpose()?;
        match (secret, public_key.or(private_key)) {
            (Some(_), Some(_)) => Err(KeyError::new("give either --jwt-secret or --jwt-public-key, not both")),
            (Some(secret), None) => {
                if algorithm.is_some_and(|algorithm| algorithm != JwtAlgorithm::Hs256) {
                    return Err(KeyError::new("--jwt-secret needs --jwt-alg HS256"));
                }
                if secret.is_empty() {
                    return Err(KeyError::new("--jwt-secret must not be empty"));
                }
                Ok(Some(KeyConfig::Hs256(secret.as_bytes().to_vec())))
            }
            (None, Some(path)) => {
                let algorithm = algorithm.unwrap_or(JwtAlgorithm::Rs256);
                if algorithm == JwtAlgorithm::Hs256 {
                    return Err(KeyError::new("--jwt-public-key needs --jwt-alg RS256, ES256 or EdDSA"));
                }
                let pem = std::fs::read(path)
                    .map_err(|err| KeyError::new(format!("cannot read key {}: {err}", path.display())))?;
                let key = KeyConfig::PublicKey { algorithm, pem };
                if private_key.is_none() {
                    key.decoding_key()?;
                }
                Ok(Some(key))
            }
            (None, None) => match algorithm {
                Some(_) => Err(KeyError::new("--jwt-alg needs --jwt-secret or --jwt-public-key")),
                None => Ok(None),
            },
        }
    }

    fn algorithm(&self) -> Algorithm {
        match self {
            KeyConfig::Hs256(_) => Algorithm::HS256,
            KeyConfig::PublicKey { algorithm, .. } => algorithm.algorithm(),
        }
    }

    fn decoding_key(&self) -> Result<DecodingKey, KeyError> {
        let bad =
            |err: jsonwebtoken::errors::Error| KeyError::new(format!("--jwt-public-key is not a valid PEM key: {err}"));
        match self {
            KeyConfig::Hs256(secret) => Ok(DecodingKey::from_secret(secret)),
            KeyConfig::PublicKey { algorithm: JwtAlgorithm::Rs256, pem } => DecodingKey::from_rsa_pem(pem).map_err(bad),
            KeyConfig::PublicKey { algorithm: JwtAlgorithm::Es256, pem } => DecodingKey::from_ec_pem(pem).map_err(bad),
            KeyConfig::PublicKey { algorithm: JwtAlgorithm::EdDsa, pem } => DecodingKey::from_ed_pem(pem).map_err(bad),
            KeyConfig::PublicKey { algorithm: JwtAlgorithm::Hs256, .. } => {
                Err(KeyError::new("HS256 takes a secret, not a key file"))
            }
        }
    }

    fn encoding_key(&self) -> Result<EncodingKey, KeyError> {
        let bad = |err: jsonwebtoken::errors::Error| {
            KeyError::new(format!("--jwt-private-key is not a valid PEM key: {err}"))
        };
        match self {
            KeyConfig::Hs256(secret) => Ok(EncodingKey::from_secret(secret)),
            KeyConfig::PublicKey { algorithm: JwtAlgorithm::Rs256, pem } => EncodingKey::from_rsa_pem(pem).map_err(bad),
            KeyConfig::PublicKey { algorithm: JwtAlgorithm::Es256, pem } => EncodingKey::from_ec_pem(pem).map_err(bad),
            KeyConfig::PublicKey { algorithm: JwtAlgorithm::EdDsa, pem } => EncodingKey::from_ed_pem(pem).map_err(bad),
            KeyConfig::PublicKey { algorithm: JwtAlgorithm::Hs256, .. } => {
                Err(KeyError::new("HS256 takes a secret, not a key file"))
            }
        }
    }
}

/// The claims ringcast reads from a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// An authenticated user, shared by all frames of its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: Arc<str>,
    pub tenant: Arc<str>,
    pub name: Arc<str>,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub expires_at: u64,
}

impl Identity {
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|role| role == "admin")
    }

    pub fn is_moderator(&self) -> bool {
        self.is_admin() || self.roles.iter().any(|role| role == "moderator")
    }
}

/// Why a token was refused. The text goes to the client in `error.message`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token signature or algorithm rejected")]
    BadSignature,
    #[error("malformed token")]
    Malformed,
    #[error("token claims invalid: {0}")]
    BadClaims(&'static str),
}

/// Validates tokens with the configured key and pinned algorithm.
pub struct Authenticator {
    decoding_key: DecodingKey,
    validation: Validation,
}

impl Authenticator {
    pub fn new(key: &KeyConfig) -> Result<Self, KeyError> {
        let mut validation = Validation::new(key.algorithm());
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Authenticator { decoding_key: key.decoding_key()?, validation })
    }

    pub fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding_key, &self.validation).map_err(|err| {
                match err.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                    ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        AuthError::BadSignature
                    }
                    ErrorKind::MissingRequiredClaim(_) => AuthError::BadClaims("sub and exp are required"),
                    _ => AuthError::Malformed,
                }
            })?;
        let claims = data.claims;
        let tenant = claims.tenant.unwrap_or_else(|| DEFAULT_TENANT.to_string());
        if !is_valid_id(&claims.sub) {
            return Err(AuthError::BadClaims("sub must be 1-128 chars of [A-Za-z0-9_.:@-]"));
        }
        if !is_valid_id(&tenant) || tenant.contains(':') {
            return Err(AuthError::BadClaims("tenant must be 1-128 chars of [A-Za-z0-9_.@-]"));
        }
        if let Some(group) = claims.groups.iter().find(|group| !is_valid_id(group)) {
            let _ = group;
            return Err(AuthError::BadClaims("groups must be 1-128 chars of [A-Za-z0-9_.:@-]"));
        }
        let name = claims.name.unwrap_or_else(|| claims.sub.clone());
        Ok(Identity {
            user_id: Arc::from(claims.sub),
            tenant: Arc::from(tenant),
            name: Arc::from(name),
            roles: claims.roles,
            groups: claims.groups,
            expires_at: claims.exp,
        })
    }
}

/// Signs `claims` with `key` (the `ringcast token` command and `--dev`).
pub fn mint(key: &KeyConfig, claims: &Claims) -> Result<String, KeyError> {
    let header = Header::new(key.algorithm());
    jsonwebtoken::encode(&header, claims, &key.encoding_key()?)
        .map_err(|err| KeyError::new(format!("cannot sign token: {err}")))
}

/// A fresh 32-byte secret for `--dev`, hex-encoded so it can be printed and reused.
pub fn random_secret() -> Vec<u8> {
    let mut bytes = [0u8; 32];
    // aws-lc-rs is already linked for jsonwebtoken; std's RandomState is seeded from the OS
    // and is enough for a development key.
    for (index, chunk) in bytes.chunks_mut(8).enumerate() {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_usize(index);
        hasher.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect::<String>().into_bytes()
}

/// True for 1–128 chars of `[A-Za-z0-9_.:@-]`: user ids, tenants, groups and room names.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b))
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            exp,
            nbf: None,
            iat: None,
            tenant: None,
            name: None,
            roles: vec![],
            groups: vec![],
        }
    }

    #[test]
    fn test_round_trip_and_defaults() {
        let key = KeyConfig::Hs256(b"k".to_vec());
        let token = mint(&key, &claims(now_secs() + 60)).unwrap();
        let identity = Authenticator::new(&key).unwrap().authenticate(&token).unwrap();
        assert_eq!(&*identity.user_id, "alice");
        assert_eq!(&*identity.tenant, "default");
        assert_eq!(&*identity.name, "alice");
    }

    #[test]
    fn test_rejections() {
        let key = KeyConfig::Hs256(b"k".to_vec());
        let auth = Authenticator::new(&key).unwrap();
        assert_eq!(auth.authenticate(&mint(&key, &claims(now_secs() - 5)).unwrap()), Err(AuthError::Expired));
        let other = KeyConfig::Hs256(b"other".to_vec());
        assert_eq!(auth.authenticate(&mint(&other, &claims(now_secs() + 60)).unwrap()), Err(AuthError::BadSignature));
        assert_eq!(auth.authenticate("abc.def"), Err(AuthError::Malformed));
        assert_eq!(auth.authenticate(""), Err(AuthError::Missing));
        let mut future = claims(now_secs() + 600);
        future.nbf = Some(now_secs() + 300);
        assert_eq!(auth.authenticate(&mint(&key, &future).unwrap()), Err(AuthError::NotYetValid));
    }
}
