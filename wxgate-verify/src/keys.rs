//! The gateway's verification keys: its JWKS, fetched when first needed and again when a token
//! names a key id not seen yet (a rotation) or the set is older than its maximum age, never more
//! than once per interval; or the HS256 secret shared with the gateway.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::error::Refusal;

/// A fetched key set older than this is fetched again (a withdrawn key stops verifying).
const MAX_AGE: Duration = Duration::from_secs(600);
/// How long fetching the JWKS may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWKS read.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// One verification key, with the only algorithm it verifies.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) algorithm: Algorithm,
    pub(crate) decoding: DecodingKey,
}

/// Where the keys come from.
pub(crate) enum KeySource {
    /// The gateway's `/.well-known/jwks.json` (RS256, ES256, EdDSA).
    Jwks {
        url: String,
        client: reqwest::Client,
    },
    /// The `[jwt] secret` shared with the gateway (HS256).
    Secret(Key),
}

#[derive(Default)]
struct Known {
    keys: Vec<(String, Key)>,
    fetched_at: Option<Instant>,
}

/// The keys, cached.
pub(crate) struct KeyStore {
    source: KeySource,
    known: RwLock<Known>,
    /// When a fetch was last tried; held while one runs, so concurrent callers wait for it.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
    refetch_interval: Duration,
}

impl KeyStore {
    pub(crate) fn new(source: KeySource, refetch_interval: Duration) -> Self {
        KeyStore {
            source,
            known: RwLock::new(Known::default()),
            last_attempt: tokio::sync::Mutex::new(None),
            refetch_interval,
        }
    }

    /// The key named `kid`.
    pub(crate) async fn key(&self, kid: Option<&str>) -> Result<Key, Refusal> {
        let url = match &self.source {
            KeySource::Secret(key) => return Ok(key.clone()),
            KeySource::Jwks { url, .. } => url,
        };
        let kid = kid.ok_or(Refusal::Invalid("no key id"))?;
        if let Some(key) = self.cached(kid, true) {
            return Ok(key);
        }
        let mut last_attempt = self.last_attempt.lock().await;
        // Another caller may have fetched while this one waited.
        if let Some(key) = self.cached(kid, true) {
            return Ok(key);
        }
        let recently = last_attempt.is_some_and(|at| at.elapsed() < self.refetch_interval);
        if !recently {
            *last_attempt = Some(Instant::now());
            match self.fetch(url).await {
                Ok(keys) => {
                    let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
                    *known = Known {
                        keys,
                        fetched_at: Some(Instant::now()),
                    };
                }
                Err(error) => tracing::warn!(%error, "wxgate-verify: cannot fetch the JWKS"),
            }
        }
        // A set too old to be fresh still serves while a new one cannot be had.
        match self.cached(kid, false) {
            Some(key) => Ok(key),
            None if self.never_fetched() => Err(Refusal::KeysUnavailable),
            None => Err(Refusal::Invalid("unknown key id")),
        }
    }

    fn cached(&self, kid: &str, fresh_only: bool) -> Option<Key> {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        let fresh = known.fetched_at.is_some_and(|at| at.elapsed() < MAX_AGE);
        if fresh_only && !fresh {
            return None;
        }
        known
            .keys
            .iter()
            .find(|(known, _)| known == kid)
            .map(|(_, key)| key.clone())
    }

    fn never_fetched(&self) -> bool {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        known.fetched_at.is_none()
    }

    async fn fetch(&self, url: &str) -> Result<Vec<(String, Key)>, String> {
        let KeySource::Jwks { client, .. } = &self.source else {
            return Ok(Vec::new());
        };
        let mut response = client
            .get(url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|error| error.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| error.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err("the JWKS is too large".into());
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|error| error.to_string())?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let algorithm = match jwk.common.key_algorithm {
                    Some(algorithm) => Algorithm::try_from(algorithm).ok()?,
                    None => algorithm_of(&jwk.algorithm)?,
                };
                // Asymmetric keys only: a JWKS never vouches for an HMAC secret.
                if matches!(
                    algorithm,
                    Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
                ) {
                    return None;
                }
                let decoding = DecodingKey::from_jwk(jwk).ok()?;
                Some((
                    kid,
                    Key {
                        algorithm,
                        decoding,
                    },
                ))
            })
            .collect())
    }
}

/// The algorithm of a key that does not name one, from its type (as the gateway publishes them).
fn algorithm_of(parameters: &AlgorithmParameters) -> Option<Algorithm> {
    match parameters {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Some(Algorithm::ES256)
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Some(Algorithm::EdDSA)
        }
        _ => None,
    }
}
