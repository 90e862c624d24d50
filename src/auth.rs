//! Client authentication: JWT validation with pinned algorithms (a configured key, the
//! previous one during a rotation, and keys from a JWKS URL), the claims read from a token
//! (`auth/claims.rs`: claim paths, user ids and their escape), and token minting.

use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod claims;
mod jwks;

/// The sender id prefix of the server API's messages (`service:{name}`), refused in tokens.
pub const SERVICE_PREFIX: &str = "service:";

pub use claims::{check_claim_path, escape_user_id, is_valid_user_id, unescape_user_id, ClaimPaths, MAX_USER_ID_BYTES};
pub use jwks::{Jwks, JwksSettings};

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
    Rs384,
    Rs512,
    Ps256,
    Es256,
    Es384,
    EdDsa,
}

impl JwtAlgorithm {
    fn parse(name: &str) -> Result<Self, KeyError> {
        match name.to_ascii_uppercase().as_str() {
            "HS256" => Ok(JwtAlgorithm::Hs256),
            "RS256" => Ok(JwtAlgorithm::Rs256),
            "RS384" => Ok(JwtAlgorithm::Rs384),
            "RS512" => Ok(JwtAlgorithm::Rs512),
            "PS256" => Ok(JwtAlgorithm::Ps256),
            "ES256" => Ok(JwtAlgorithm::Es256),
            "ES384" => Ok(JwtAlgorithm::Es384),
            "EDDSA" => Ok(JwtAlgorithm::EdDsa),
            _ => Err(KeyError::new(format!(
                "--jwt-alg {name:?} must be HS256, RS256, RS384, RS512, PS256, ES256, ES384 or EdDSA"
            ))),
        }
    }

    fn algorithm(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Rs384 => Algorithm::RS384,
            JwtAlgorithm::Rs512 => Algorithm::RS512,
            JwtAlgorithm::Ps256 => Algorithm::PS256,
            JwtAlgorithm::Es256 => Algorithm::ES256,
            JwtAlgorithm::Es384 => Algorithm::ES384,
            JwtAlgorithm::EdDsa => Algorithm::EdDSA,
        }
    }

    /// The kind of key the algorithm takes.
    fn family(self) -> KeyFamily {
        match self {
            JwtAlgorithm::Hs256 => KeyFamily::Secret,
            JwtAlgorithm::Rs256 | JwtAlgorithm::Rs384 | JwtAlgorithm::Rs512 | JwtAlgorithm::Ps256 => KeyFamily::Rsa,
            JwtAlgorithm::Es256 | JwtAlgorithm::Es384 => KeyFamily::Ec,
            JwtAlgorithm::EdDsa => KeyFamily::Ed,
        }
    }
}

#[derive(Clone, Copy)]
enum KeyFamily {
    Secret,
    Rsa,
    Ec,
    Ed,
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
                    return Err(KeyError::new(
                        "--jwt-public-key needs --jwt-alg RS256, RS384, RS512, PS256, ES256, ES384 or EdDSA",
                    ));
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
            KeyConfig::PublicKey { algorithm, pem } => match algorithm.family() {
                KeyFamily::Rsa => DecodingKey::from_rsa_pem(pem).map_err(bad),
                KeyFamily::Ec => DecodingKey::from_ec_pem(pem).map_err(bad),
                KeyFamily::Ed => DecodingKey::from_ed_pem(pem).map_err(bad),
                KeyFamily::Secret => Err(KeyError::new("HS256 takes a secret, not a key file")),
            },
        }
    }

    fn encoding_key(&self) -> Result<EncodingKey, KeyError> {
        let bad = |err: jsonwebtoken::errors::Error| {
            KeyError::new(format!("--jwt-private-key is not a valid PEM key: {err}"))
        };
        match self {
            KeyConfig::Hs256(secret) => Ok(EncodingKey::from_secret(secret)),
            KeyConfig::PublicKey { algorithm, pem } => match algorithm.family() {
                KeyFamily::Rsa => EncodingKey::from_rsa_pem(pem).map_err(bad),
                KeyFamily::Ec => EncodingKey::from_ec_pem(pem).map_err(bad),
                KeyFamily::Ed => EncodingKey::from_ed_pem(pem).map_err(bad),
                KeyFamily::Secret => Err(KeyError::new("HS256 takes a secret, not a key file")),
            },
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

/// Why a token was refused. The text goes to the client in `error.message` (or the 401's
/// body); [`AuthError::reason`] labels the failures metric.
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
    #[error("token signed with an unknown key")]
    UnknownKey,
    #[error("token audience rejected")]
    Audience,
    #[error("token issuer rejected")]
    Issuer,
    #[error("malformed token")]
    Malformed,
    #[error("token claims invalid: {0}")]
    BadClaims(&'static str),
}

impl AuthError {
    /// The label of `ringcast_auth_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::BadSignature => "bad_signature",
            AuthError::UnknownKey => "unknown_key",
            AuthError::Audience => "audience",
            AuthError::Issuer => "issuer",
            AuthError::Malformed => "malformed",
            AuthError::BadClaims(_) => "claims",
        }
    }

    /// Every reason, for registering the metric's series.
    pub const REASONS: [&'static str; 9] = [
        "missing",
        "expired",
        "not_yet_valid",
        "bad_signature",
        "unknown_key",
        "audience",
        "issuer",
        "malformed",
        "claims",
    ];
}

/// How tokens are checked besides the key: audience, issuer, clock skew, the previous key of
/// a rotation, where roles, groups and tenant are read, and a JWKS URL.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// When not empty, `aud` must hold one of these.
    pub audiences: Vec<String>,
    /// When not empty, `iss` must be one of these.
    pub issuers: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// The key being rotated out, still accepted.
    pub previous: Option<KeyConfig>,
    pub claims: ClaimPaths,
    pub jwks: Option<JwksSettings>,
    /// False when tokens are checked against the JWKS only (no secret or key file).
    pub static_key: bool,
}

impl Default for JwtSettings {
    fn default() -> Self {
        JwtSettings {
            audiences: Vec::new(),
            issuers: Vec::new(),
            leeway_secs: 30,
            previous: None,
            claims: ClaimPaths::default(),
            jwks: None,
            static_key: true,
        }
    }
}

/// Validates tokens with the configured keys and pinned algorithms.
pub struct Authenticator {
    /// The configured key and the previous one, each with its algorithm.
    static_keys: Vec<(DecodingKey, Algorithm)>,
    /// Audience, issuer, leeway and required claims; the algorithm is set per key.
    validation: Validation,
    claims: ClaimPaths,
    leeway_secs: u64,
    jwks: Option<Arc<Jwks>>,
    /// The tenant of the last identity made: a node mostly serves one tenant, whose
    /// connections then share one string instead of holding one each.
    last_tenant: parking_lot::Mutex<Option<Arc<str>>>,
}

impl Authenticator {
    pub fn new(key: &KeyConfig, settings: &JwtSettings) -> Result<Self, KeyError> {
        let mut validation = Validation::new(key.algorithm());
        validation.leeway = settings.leeway_secs;
        validation.validate_nbf = true;
        validation.validate_exp = true;
        let mut required = vec!["exp", "sub"];
        required.extend(settings.audiences.first().map(|_| "aud"));
        required.extend(settings.issuers.first().map(|_| "iss"));
        validation.set_required_spec_claims(&required);
        if settings.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&settings.audiences);
        }
        if !settings.issuers.is_empty() {
            validation.set_issuer(&settings.issuers);
        }
        let mut static_keys = Vec::new();
        if settings.static_key {
            static_keys.push((key.decoding_key()?, key.algorithm()));
        }
        if let Some(previous) = &settings.previous {
            static_keys.push((previous.decoding_key()?, previous.algorithm()));
        }
        let jwks = settings.jwks.clone().map(Jwks::new).transpose()?.map(Arc::new);
        Ok(Authenticator {
            static_keys,
            validation,
            claims: settings.claims.clone(),
            leeway_secs: settings.leeway_secs,
            jwks,
            last_tenant: parking_lot::Mutex::new(None),
        })
    }

    /// The JWKS cache, whose timer the server runs.
    pub fn jwks(&self) -> Option<&Arc<Jwks>> {
        self.jwks.as_ref()
    }

    /// Checks `token` with what is known now; a `kid` the JWKS does not know fetches the set
    /// in the background (see [`Authenticator::authenticate_fetching`] to wait for it).
    pub fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        let result = self.check(token);
        if let (Err(AuthError::UnknownKey), Some(jwks)) = (&result, &self.jwks) {
            jwks.refresh_soon();
        }
        result
    }

    /// Like [`Authenticator::authenticate`], but a `kid` the JWKS does not know fetches the set
    /// again (at most once per `--jwt-jwks-min-interval-secs`) and checks the token once more.
    pub async fn authenticate_fetching(&self, token: &str) -> Result<Identity, AuthError> {
        match (self.check(token), &self.jwks) {
            (Err(AuthError::UnknownKey), Some(jwks)) => {
                jwks.refresh(false).await;
                self.check(token)
            }
            (result, _) => result,
        }
    }

    fn check(&self, token: &str) -> Result<Identity, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let jwks_keys = self.jwks.as_ref().map(|jwks| jwks.keys());
        let mut candidates: Vec<(&DecodingKey, Algorithm)> = Vec::new();
        let from_jwks = jwks_keys.as_ref().map(|keys| keys.candidates(header.kid.as_deref(), header.alg));
        if let Some(keys) = &from_jwks {
            candidates.extend(keys.iter().map(|key| (&key.key, header.alg)));
        }
        candidates.extend(self.static_keys.iter().filter(|(_, alg)| *alg == header.alg).map(|(key, alg)| (key, *alg)));
        let unknown_kid = match (&jwks_keys, &header.kid) {
            (Some(keys), Some(kid)) => !keys.has_kid(kid),
            (Some(_), None) => candidates.is_empty(),
            (None, _) => false,
        };
        for (key, alg) in candidates {
            match self.decode(token, key, alg) {
                Err(AuthError::BadSignature) => continue,
                result => return result,
            }
        }
        Err(if unknown_kid { AuthError::UnknownKey } else { AuthError::BadSignature })
    }

    fn decode(&self, token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Identity, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let mut validation = self.validation.clone();
        validation.algorithms = vec![alg];
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, key, &validation).map_err(|err| match err
                .kind()
            {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
                ErrorKind::InvalidAudience => AuthError::Audience,
                ErrorKind::InvalidIssuer => AuthError::Issuer,
                ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => AuthError::Audience,
                ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthError::Issuer,
                ErrorKind::MissingRequiredClaim(_) => AuthError::BadClaims("sub and exp are required"),
                _ => AuthError::Malformed,
            })?;
        self.identity(data.claims)
    }

    /// The identity of verified claims.
    fn identity(&self, claims: serde_json::Map<String, Value>) -> Result<Identity, AuthError> {
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
        if !is_valid_user_id(sub) {
            return Err(AuthError::BadClaims("sub must be 1-256 bytes of UTF-8 without control characters"));
        }
        if sub.starts_with(SERVICE_PREFIX) {
            // The server API's messages come from `service:{name}`: no user may pass for one.
            return Err(AuthError::BadClaims("sub must not start with service:"));
        }
        let exp = claims.get("exp").and_then(Value::as_f64).filter(|exp| *exp >= 0.0);
        let exp = exp.ok_or(AuthError::BadClaims("exp must be a number"))? as u64;
        if let Some(iat) = claims.get("iat").and_then(Value::as_f64) {
            if iat > (now_secs() + self.leeway_secs) as f64 {
                return Err(AuthError::NotYetValid);
            }
        }
        let tenant = match claims::at_path(&claims, &self.claims.tenant) {
            None | Some(Value::Null) => DEFAULT_TENANT,
            Some(Value::String(tenant)) if is_valid_id(tenant) && !tenant.contains(':') => tenant.as_str(),
            Some(_) => return Err(AuthError::BadClaims("tenant must be 1-128 chars of [A-Za-z0-9_.@-]")),
        };
        let roles = claims::string_list(claims::at_path(&claims, &self.claims.roles))
            .map_err(|()| AuthError::BadClaims("roles must be a string or an array of strings"))?;
        let groups = claims::string_list(claims::at_path(&claims, &self.claims.groups))
            .map_err(|()| AuthError::BadClaims("groups must be a string or an array of strings"))?;
        if groups.iter().any(|group| !is_valid_id(group)) {
            return Err(AuthError::BadClaims("groups must be 1-128 chars of [A-Za-z0-9_.:@-]"));
        }
        let name = match claims.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => name,
            _ => sub,
        };
        let user_id: Arc<str> = Arc::from(sub);
        // Most tokens name no one but their subject: the name is then the id's own string.
        let name = if name == sub { user_id.clone() } else { Arc::from(name) };
        let tenant = {
            let mut last = self.last_tenant.lock();
            match &*last {
                Some(last) if **last == *tenant => last.clone(),
                _ => last.insert(Arc::from(tenant)).clone(),
            }
        };
        Ok(Identity { user_id, tenant, name, roles, groups, expires_at: exp })
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
        let identity = Authenticator::new(&key, &JwtSettings::default()).unwrap().authenticate(&token).unwrap();
        assert_eq!(&*identity.user_id, "alice");
        assert_eq!(&*identity.tenant, "default");
        assert_eq!(&*identity.name, "alice");
    }

    #[test]
    fn test_rejections() {
        let key = KeyConfig::Hs256(b"k".to_vec());
        let auth = Authenticator::new(&key, &JwtSettings::default()).unwrap();
        assert_eq!(auth.authenticate(&mint(&key, &claims(now_secs() - 60)).unwrap()), Err(AuthError::Expired));
        let other = KeyConfig::Hs256(b"other".to_vec());
        assert_eq!(auth.authenticate(&mint(&other, &claims(now_secs() + 60)).unwrap()), Err(AuthError::BadSignature));
        assert_eq!(auth.authenticate("abc.def"), Err(AuthError::Malformed));
        assert_eq!(auth.authenticate(""), Err(AuthError::Missing));
        let mut future = claims(now_secs() + 600);
        future.nbf = Some(now_secs() + 300);
        assert_eq!(auth.authenticate(&mint(&key, &future).unwrap()), Err(AuthError::NotYetValid));
    }
}
