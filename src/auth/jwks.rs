//! Keys from a JWKS URL (`--jwt-jwks-url`): fetched with an HTTP client of their own (reqwest,
//! rustls with aws-lc-rs), selected by `kid`, refreshed on a timer and on an unknown `kid`
//! (at most once per `--jwt-jwks-min-interval-secs`); when the endpoint fails, the last good
//! key set stays in use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio_util::sync::CancellationToken;

use super::KeyError;

/// Where the keys come from and how often they are read again.
#[derive(Debug, Clone)]
pub struct JwksSettings {
    pub url: String,
    /// The timer: the set is fetched again this often.
    pub refresh: Duration,
    /// An unknown `kid` fetches the set again at most this often.
    pub min_interval: Duration,
}

/// One verification key of the set and the algorithms it may verify.
pub struct JwkKey {
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
}

/// The keys of one successful fetch.
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<JwkKey>>,
    all: Vec<Arc<JwkKey>>,
}

impl KeySet {
    /// The keys a token with `kid` and `alg` may be checked with: the key of that `kid`, or
    /// every key of the algorithm for a token without one.
    pub fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Vec<Arc<JwkKey>> {
        let fits = |key: &&Arc<JwkKey>| key.algorithms.contains(&alg);
        match kid {
            Some(kid) => self.by_kid.get(kid).filter(fits).cloned().into_iter().collect(),
            None => self.all.iter().filter(fits).cloned().collect(),
        }
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// The usable signature keys of a JWKS document.
    pub fn parse(body: &[u8]) -> Result<KeySet, String> {
        let set: JwkSet = serde_json::from_slice(body).map_err(|err| format!("not a jwks document: {err}"))?;
        let mut keys = KeySet::default();
        for jwk in &set.keys {
            let Some(algorithms) = algorithms_of(jwk) else {
                tracing::debug!(kid = ?jwk.common.key_id, "jwks key skipped: not a supported signature key");
                continue;
            };
            let key = match DecodingKey::from_jwk(jwk) {
                Ok(key) => Arc::new(JwkKey { key, algorithms }),
                Err(err) => {
                    tracing::debug!(kid = ?jwk.common.key_id, %err, "jwks key skipped");
                    continue;
                }
            };
            if let Some(kid) = &jwk.common.key_id {
                keys.by_kid.insert(kid.clone(), key.clone());
            }
            keys.all.push(key);
        }
        if keys.all.is_empty() {
            return Err("jwks document has no usable signature key".into());
        }
        Ok(keys)
    }
}

/// The algorithms a JWK may verify: its `alg`, or those of its key type (RSA: RS256, RS384,
/// RS512, PS256; P-256: ES256; P-384: ES384; Ed25519: EdDSA). Encryption keys and symmetric
/// keys are not used.
fn algorithms_of(jwk: &Jwk) -> Option<Vec<Algorithm>> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))) {
        return None;
    }
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256],
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(family),
        Some(declared) => {
            let declared = match declared {
                KeyAlgorithm::RS256 => Algorithm::RS256,
                KeyAlgorithm::RS384 => Algorithm::RS384,
                KeyAlgorithm::RS512 => Algorithm::RS512,
                KeyAlgorithm::PS256 => Algorithm::PS256,
                KeyAlgorithm::ES256 => Algorithm::ES256,
                KeyAlgorithm::ES384 => Algorithm::ES384,
                KeyAlgorithm::EdDSA => Algorithm::EdDSA,
                _ => return None,
            };
            family.contains(&declared).then(|| vec![declared])
        }
    }
}

/// The cached key set of a JWKS URL.
pub struct Jwks {
    settings: JwksSettings,
    client: reqwest::Client,
    keys: parking_lot::RwLock<Arc<KeySet>>,
    /// When the last fetch started (an unknown `kid` waits out `min_interval` from it).
    last_attempt: parking_lot::Mutex<Option<Instant>>,
    /// One fetch at a time; the others wait for it and use its result.
    fetching: tokio::sync::Mutex<()>,
    /// Successful fetches so far: a caller that waited for another's fetch sees it changed.
    fetched: AtomicU64,
    /// Failed fetches so far (the metrics sample them).
    failed: AtomicU64,
}

impl Jwks {
    pub fn new(settings: JwksSettings) -> Result<Jwks, KeyError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|err| KeyError(format!("--jwt-jwks-url: cannot make an http client: {err}")))?;
        Ok(Jwks {
            settings,
            client,
            keys: parking_lot::RwLock::new(Arc::new(KeySet::default())),
            last_attempt: parking_lot::Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            fetched: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
    }

    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.read().clone()
    }

    /// Fetches that succeeded and failed so far, and the keys in use.
    pub fn stats(&self) -> (u64, u64, usize) {
        (self.fetched.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed), self.keys().all.len())
    }

    /// Fetches the set again, unless one was fetched within `min_interval` (`forced`: the
    /// timer's fetch ignores that). Returns whether the set in use changed.
    pub async fn refresh(&self, forced: bool) -> bool {
        let before = self.fetched.load(Ordering::Acquire);
        let _one_at_a_time = self.fetching.lock().await;
        if self.fetched.load(Ordering::Acquire) != before {
            return true;
        }
        {
            let mut last = self.last_attempt.lock();
            if !forced && last.is_some_and(|at| at.elapsed() < self.settings.min_interval) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(url = %self.settings.url, keys = keys.all.len(), "jwks fetched");
                *self.keys.write() = Arc::new(keys);
                self.fetched.fetch_add(1, Ordering::Release);
                true
            }
            Err(err) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(url = %self.settings.url, %err, "jwks fetch failed; keeping the last good keys");
                false
            }
        }
    }

    /// An unknown `kid` seen where nothing can wait: fetch in the background.
    pub fn refresh_soon(self: &Arc<Self>) {
        if self.last_attempt.lock().is_some_and(|at| at.elapsed() < self.settings.min_interval) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let jwks = self.clone();
            runtime.spawn(async move { jwks.refresh(false).await });
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let response = self.client.get(&self.settings.url).send().await.map_err(|err| err.to_string())?;
        if !response.status().is_success() {
            return Err(format!("http status {}", response.status().as_u16()));
        }
        let body = response.bytes().await.map_err(|err| err.to_string())?;
        KeySet::parse(&body)
    }

    /// The timer: fetches at once, then every `refresh`, until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            self.refresh(true).await;
            tokio::select! {
                _ = tokio::time::sleep(self.settings.refresh) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
