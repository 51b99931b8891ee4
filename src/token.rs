//! The gateway's tokens: issuing a JWT at login, and verifying one on every request with the
//! algorithm pinned to the key (key loading, key ids and JWKs are in `token/keys.rs`).
//!
//! A token is valid if and only if its header names a configured key (or names none, for the
//! signing key), its signature verifies with that key and that key's algorithm (`none`, any other
//! algorithm and HS/RS key confusion are refused), `exp` is present and not
//! passed, `nbf` (if present) has passed, `iss` equals the configured issuer, `aud` matches when an
//! audience is configured, and `sub` (the openid) is present. Leeway applies to the time checks.
//! A header with `crit` extensions or encryption parameters (`enc`, `zip`) is refused, and so is
//! one typed other than `JWT` (an identity assertion, `token/assertion.rs`, is no client token); `jku`,
//! `x5u`, `jwk` and `x5c` are never looked at: keys come from the config only.
//! Nothing else is required, so tokens minted by a user's own tooling with the same key work.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::http::error::GatewayError;
use crate::http::headers::IdentityHeaders;
use crate::identity::{Identity, Platform};

mod assertion;
mod cache;
mod keys;
mod load;
mod memo;
mod verified;
pub(crate) use assertion::AssertionOf;
pub use assertion::ASSERTION_TYPE;
pub(crate) use keys::LoadedKey;
#[cfg(any(test, feature = "dev-tools"))]
pub(crate) use keys::{KeyMaterial, KeySpec};
pub(crate) use memo::NotRevokedMemo;
pub use verified::VerifiedToken;

/// Tokens longer than this are refused before any parsing: nothing we issue comes close.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The settings every key shares, as validated by the config.
pub(crate) struct TokenSettings<'a> {
    /// Required `iss`.
    pub(crate) issuer: &'a str,
    /// Required `aud`, when configured.
    pub(crate) audience: Option<&'a str>,
    /// Lifetime of issued tokens.
    pub(crate) ttl_secs: u64,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub(crate) leeway_secs: u64,
}

/// One key that verifies: tokens whose header names its kid are checked with it, and with its
/// algorithm only.
struct VerificationKey {
    kid: String,
    decoding: DecodingKey,
    validation: Validation,
    /// The same checks but `exp`, which a refresh checks itself against its window.
    refresh_validation: Validation,
}

/// Signs and verifies the gateway's tokens; built once at start from the `[jwt]` config.
///
/// One key signs, and every issued token names it in its `kid` header. Every configured key
/// verifies the tokens that name it, so a rotation keeps old tokens valid until the old key is
/// removed from the config. A token without a kid is checked against the signing key only.
pub struct TokenKeys {
    header: Header,
    encoding: EncodingKey,
    /// The signing key first, then the verify-only keys.
    verifying: Vec<VerificationKey>,
    /// `{"keys": [...]}` with the public JWK of every asymmetric key, serialized once.
    jwks: Bytes,
    issuer: String,
    audience: Option<String>,
    ttl_secs: u64,
    /// Tokens already verified with these keys.
    verified: cache::VerifiedCache,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.verifying.iter().map(|key| key.kid.as_str()).collect();
        f.debug_struct("TokenKeys")
            .field("algorithm", &self.header.alg)
            .field("kids", &kids)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl_secs", &self.ttl_secs)
            .field("keys", &"<redacted>")
            .finish()
    }
}

/// A freshly issued token and its lifetime, as the login endpoint answers them.
pub struct IssuedToken {
    /// The compact JWT.
    pub token: String,
    /// Seconds until `exp`.
    pub expires_in: u64,
}

/// Claims the gateway writes.
#[derive(Serialize)]
struct IssuedClaims<'a> {
    sub: &'a str,
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    iat: u64,
    exp: u64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    unionid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    appid: Option<&'a str>,
    /// The platform the app runs on (`wechat`, `qq`, `douyin`, `baidu`, `kuaishou`, `alipay`).
    platform: &'static str,
    /// The login session the token belongs to (refresh, logout, revocation).
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
}

/// Claims the gateway reads back; standard time claims are checked by `Validation`.
#[derive(Deserialize)]
struct VerifiedClaims {
    // Defaulted so a missing `sub` is reported by `Validation` as a missing required claim.
    #[serde(default)]
    sub: String,
    unionid: Option<String>,
    appid: Option<String>,
    /// Absent in tokens from before platforms (and from other tooling): WeChat.
    platform: Option<String>,
    sid: Option<String>,
    jti: Option<String>,
    #[serde(default)]
    exp: u64,
    /// Absent (0) in tokens minted by other tooling; such a token counts as issued before any
    /// session store generation.
    #[serde(default)]
    iat: u64,
}

impl TokenKeys {
    /// Puts the loaded keys together: `signing` signs (and verifies), `verify_only` verify. Refuses
    /// a signing key without a private part and two keys with the same kid.
    pub(crate) fn new(
        settings: TokenSettings<'_>,
        signing: LoadedKey,
        verify_only: Vec<LoadedKey>,
    ) -> Result<Self, String> {
        let Some(encoding) = signing.encoding.clone() else {
            return Err("the signing key must be a private key or a secret".into());
        };
        let mut header = Header::new(signing.algorithm);
        header.kid = Some(signing.kid.clone());
        let all = std::iter::once(signing).chain(verify_only);
        let mut verifying: Vec<VerificationKey> = Vec::new();
        let mut published = Vec::new();
        for key in all {
            if verifying.iter().any(|seen| seen.kid == key.kid) {
                return Err(format!(
                    "two keys have the kid {:?}; every key needs its own",
                    key.kid
                ));
            }
            published.extend(key.jwk);
            let validation = validation(key.algorithm, &settings);
            let mut refresh_validation = validation.clone();
            refresh_validation.validate_exp = false;
            verifying.push(VerificationKey {
                validation,
                refresh_validation,
                kid: key.kid,
                decoding: key.decoding,
            });
        }
        let jwks = serde_json::to_vec(&serde_json::json!({ "keys": published }))
            .map_err(|_| "the public keys could not be serialized".to_string())?;
        Ok(TokenKeys {
            header,
            encoding,
            verifying,
            jwks: Bytes::from(jwks),
            issuer: settings.issuer.to_string(),
            audience: settings.audience.map(str::to_string),
            ttl_secs: settings.ttl_secs,
            verified: cache::VerifiedCache::new(),
        })
    }

    /// The key ids, the signing key's first: configured or derived from the keys (`wxgate check`
    /// shows them).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.verifying.iter().map(|key| key.kid.as_str())
    }

    /// The JSON Web Key Set of the public keys (empty for HS256 only), for
    /// `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }

    /// The kid written into newly issued tokens.
    pub fn signing_kid(&self) -> &str {
        self.header.kid.as_deref().unwrap_or_default()
    }

    /// Signs a token for a user of login session `sid`.
    pub fn issue(
        &self,
        identity: &Identity,
        sid: Option<&str>,
    ) -> Result<IssuedToken, GatewayError> {
        self.sign(identity, sid, self.ttl_secs)
    }

    /// Signs a token outside any login (no `sid`), valid for `ttl_secs`: what `wxgate token` mints
    /// to test a backend. Verified like any other token; it cannot be refreshed, and a logout
    /// cannot end it, so keep `ttl_secs` short.
    pub fn issue_without_session(
        &self,
        identity: &Identity,
        ttl_secs: u64,
    ) -> Result<IssuedToken, GatewayError> {
        self.sign(identity, None, ttl_secs)
    }

    fn sign(
        &self,
        identity: &Identity,
        sid: Option<&str>,
        ttl_secs: u64,
    ) -> Result<IssuedToken, GatewayError> {
        let now = unix_now();
        let claims = IssuedClaims {
            sub: &identity.openid,
            iss: &self.issuer,
            aud: self.audience.as_deref(),
            iat: now,
            exp: now.saturating_add(ttl_secs),
            jti: random_id()?,
            unionid: identity.unionid.as_deref(),
            appid: identity.appid.as_deref(),
            platform: identity.platform.name(),
            sid,
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.encoding)
            .map_err(|_| GatewayError::Internal("the token could not be signed"))?;
        Ok(IssuedToken {
            token,
            expires_in: ttl_secs,
        })
    }

    /// Verifies a presented token; the error names the reason in words safe to show the client.
    /// A token verified before is answered from a bounded cache until its `exp` (see
    /// `token/cache.rs`).
    pub fn verify(&self, token: &str) -> Result<Arc<VerifiedToken>, GatewayError> {
        if let Some(verified) = self.verified.get(token.as_bytes()) {
            return Ok(verified);
        }
        let verified = Arc::new(self.check(token, None)?);
        self.verified.remember(token, &verified);
        Ok(verified)
    }

    /// The remembered verification of `token`, if it is still good (this thread's table, else
    /// the shared cache): the hot path's shortcut, which reads the token as bytes and leaves every
    /// check of its text (done when it was verified) to [`TokenKeys::verify`] when it is not
    /// found. Looking the shared cache up here too spares a token that the thread's table does
    /// not keep (many users in rotation) a second reading of its header (bench/RESULTS.md,
    /// "Scale").
    pub fn recently_verified(&self, token: &[u8]) -> Option<Arc<VerifiedToken>> {
        self.verified.get(token)
    }

    /// Verifies a token presented for a refresh: like `verify`, but a token expired less than
    /// `window_secs` ago (beyond the leeway) is still accepted.
    pub fn verify_for_refresh(
        &self,
        token: &str,
        window_secs: u64,
    ) -> Result<VerifiedToken, GatewayError> {
        self.check(token, Some(window_secs))
    }

    fn check(
        &self,
        token: &str,
        refresh_window: Option<u64>,
    ) -> Result<VerifiedToken, GatewayError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(GatewayError::InvalidToken("token too large"));
        }
        let refused = |error: jsonwebtoken::errors::Error| {
            GatewayError::InvalidToken(rejection_reason(error.kind()))
        };
        let header = jsonwebtoken::decode_header(token).map_err(refused)?;
        // RFC 7515 4.1.11: a `crit` extension we do not implement (none) makes the token invalid;
        // `enc`/`zip` belong to encrypted tokens, which the gateway neither issues nor reads.
        if header.crit.is_some() {
            return Err(GatewayError::InvalidToken(
                "critical header extensions are not supported",
            ));
        }
        if header.enc.is_some() || header.zip.is_some() {
            return Err(GatewayError::InvalidToken(
                "encrypted tokens are not supported",
            ));
        }
        // An identity assertion (or any other typed JWT) signed with the same key is not a
        // client token.
        if header
            .typ
            .as_deref()
            .is_some_and(|typ| !typ.eq_ignore_ascii_case("JWT"))
        {
            return Err(GatewayError::InvalidToken("not a client token"));
        }
        let key = match header.kid.as_deref() {
            Some(kid) => self
                .verifying
                .iter()
                .find(|key| key.kid == kid)
                .ok_or(GatewayError::InvalidToken("unknown key id"))?,
            None => &self.verifying[0],
        };
        let validation = match refresh_window {
            Some(_) => &key.refresh_validation,
            None => &key.validation,
        };
        // Read as a whole JSON value first: decoding straight into the struct would skip unknown
        // members without checking them (invalid UTF-8, lone surrogates), and a backend parsing
        // the same token strictly would then disagree with the gateway about what it says.
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key.decoding, validation)
            .map_err(refused)?
            .claims;
        let claims: VerifiedClaims = serde_json::from_value(claims)
            .map_err(|_| GatewayError::InvalidToken("malformed token"))?;
        if let Some(window) = refresh_window {
            let leeway = key.validation.leeway;
            if claims.exp.saturating_add(leeway).saturating_add(window) < unix_now() {
                return Err(GatewayError::InvalidToken(
                    "token expired too long ago to refresh",
                ));
            }
        }
        if claims.sub.is_empty() {
            return Err(GatewayError::InvalidToken("empty subject"));
        }
        let platform = match claims.platform.as_deref() {
            None => Platform::WeChat,
            Some(name) => {
                Platform::named(name).ok_or(GatewayError::InvalidToken("unknown platform"))?
            }
        };
        let identity = Identity {
            openid: claims.sub,
            unionid: claims.unionid,
            appid: claims.appid,
            platform,
        };
        // Fail closed: an identity that cannot be a header value would reach the upstream as no
        // identity at all on a route that requires one.
        let Some(identity_headers) = IdentityHeaders::of(&identity) else {
            return Err(GatewayError::InvalidToken(
                "identity cannot be forwarded as a header",
            ));
        };
        let sid = claims.sid.iter().map(|sid| format!("sid:{sid}"));
        let jti = claims.jti.iter().map(|jti| format!("jti:{jti}"));
        Ok(VerifiedToken {
            revocation_ids: sid.chain(jti).collect(),
            identity: Arc::new(identity),
            identity_headers,
            not_revoked_at: NotRevokedMemo::default(),
            assertions: assertion::Assertions::default(),
            sid: claims.sid,
            jti: claims.jti,
            exp: claims.exp,
            iat: claims.iat,
        })
    }
}

/// A short, client-safe reason for a refused token.
fn rejection_reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not valid yet",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "algorithm not accepted",
        ErrorKind::MissingRequiredClaim(_) => "required claim missing",
        _ => "malformed token",
    }
}

/// The checks for tokens naming a key: its algorithm only, and the shared claim rules.
fn validation(algorithm: Algorithm, settings: &TokenSettings<'_>) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = settings.leeway_secs;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_issuer(&[settings.issuer]);
    let mut required = vec!["exp", "iss", "sub"];
    match settings.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// 128 random bits, hex-encoded: a token's `jti`, a login's `sid`.
pub(crate) fn random_id() -> Result<String, GatewayError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| GatewayError::Internal("no randomness available"))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

#[cfg(test)]
mod tests;
