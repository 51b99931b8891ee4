//! The gateway's tokens: loading the signing key, issuing a JWT at login, and verifying one on every
//! request with the algorithm pinned.
//!
//! A token is valid if and only if its signature verifies with the configured key and algorithm
//! (`none`, any other algorithm and HS/RS key confusion are refused), `exp` is present and not
//! passed, `nbf` (if present) has passed, `iss` equals the configured issuer, `aud` matches when an
//! audience is configured, and `sub` (the openid) is present. Leeway applies to the time checks.
//! Nothing else is required, so tokens minted by a user's own tooling with the same key work.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::auth::Identity;
use crate::error::GatewayError;

/// Tokens longer than this are refused before any parsing: nothing we issue comes close.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The shortest HS256 secret accepted (RFC 7518 section 3.2: at least the hash output size).
pub(crate) const MIN_HS256_SECRET_BYTES: usize = 32;
/// The smallest RSA modulus accepted for RS256.
const MIN_RSA_BITS: usize = 2048;

/// What the key configuration provides.
pub(crate) enum KeyMaterial<'a> {
    /// The shared HS256 secret.
    Secret(&'a [u8]),
    /// A PEM private key (PKCS#8, or PKCS#1 for RSA, or SEC1 for EC) for RS256, ES256 or EdDSA.
    PrivateKeyPem(&'a str),
}

/// The settings `TokenKeys` is built from, as validated by the config.
pub(crate) struct TokenSettings<'a> {
    /// The one algorithm tokens are signed and accepted with.
    pub(crate) algorithm: Algorithm,
    /// The key, as configured.
    pub(crate) material: KeyMaterial<'a>,
    /// Required `iss`.
    pub(crate) issuer: &'a str,
    /// Required `aud`, when configured.
    pub(crate) audience: Option<&'a str>,
    /// Lifetime of issued tokens.
    pub(crate) ttl_secs: u64,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub(crate) leeway_secs: u64,
}

/// Signs and verifies the gateway's tokens; built once at start from the `[jwt]` config.
pub struct TokenKeys {
    header: Header,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: Option<String>,
    ttl_secs: u64,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys")
            .field("algorithm", &self.header.alg)
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
}

/// Claims the gateway reads back; standard time claims are checked by `Validation`.
#[derive(Deserialize)]
struct VerifiedClaims {
    // Defaulted so a missing `sub` is reported by `Validation` as a missing required claim.
    #[serde(default)]
    sub: String,
    unionid: Option<String>,
    appid: Option<String>,
}

impl TokenKeys {
    /// Loads and checks the key; errors are sentences naming what is wrong with it.
    pub(crate) fn new(settings: TokenSettings<'_>) -> Result<Self, String> {
        let (encoding, decoding) = key_pair(settings.algorithm, &settings.material)?;
        let mut validation = Validation::new(settings.algorithm);
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
        Ok(TokenKeys {
            header: Header::new(settings.algorithm),
            encoding,
            decoding,
            validation,
            issuer: settings.issuer.to_string(),
            audience: settings.audience.map(str::to_string),
            ttl_secs: settings.ttl_secs,
        })
    }

    /// Signs a token for a user who just logged in.
    pub fn issue(&self, identity: &Identity) -> Result<IssuedToken, GatewayError> {
        let now = unix_now();
        let claims = IssuedClaims {
            sub: &identity.openid,
            iss: &self.issuer,
            aud: self.audience.as_deref(),
            iat: now,
            exp: now + self.ttl_secs,
            jti: random_id()?,
            unionid: identity.unionid.as_deref(),
            appid: identity.appid.as_deref(),
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.encoding)
            .map_err(|_| GatewayError::Internal("the token could not be signed"))?;
        Ok(IssuedToken {
            token,
            expires_in: self.ttl_secs,
        })
    }

    /// Verifies a presented token; the error names the reason in words safe to show the client.
    pub fn verify(&self, token: &str) -> Result<Identity, GatewayError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(GatewayError::InvalidToken("token too large"));
        }
        let data = jsonwebtoken::decode::<VerifiedClaims>(token, &self.decoding, &self.validation)
            .map_err(|error| GatewayError::InvalidToken(rejection_reason(error.kind())))?;
        let claims = data.claims;
        if claims.sub.is_empty() {
            return Err(GatewayError::InvalidToken("empty subject"));
        }
        Ok(Identity {
            openid: claims.sub,
            unionid: claims.unionid,
            appid: claims.appid,
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

/// Builds the signing key and the matching verification key (derived from the private key, so
/// the two can never disagree).
fn key_pair(
    algorithm: Algorithm,
    material: &KeyMaterial<'_>,
) -> Result<(EncodingKey, DecodingKey), String> {
    use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
    use rsa::traits::PublicKeyParts;

    let invalid = |what: &str| format!("is not a valid {what} private key in PEM form");
    match (algorithm, material) {
        (Algorithm::HS256, KeyMaterial::Secret(secret)) => {
            if secret.len() < MIN_HS256_SECRET_BYTES {
                return Err(format!(
                    "must be at least {MIN_HS256_SECRET_BYTES} bytes for HS256"
                ));
            }
            Ok((
                EncodingKey::from_secret(secret),
                DecodingKey::from_secret(secret),
            ))
        }
        (Algorithm::RS256, KeyMaterial::PrivateKeyPem(pem)) => {
            let private = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
                .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem))
                .map_err(|_| invalid("RSA"))?;
            if private.size() * 8 < MIN_RSA_BITS {
                return Err(format!("is an RSA key under {MIN_RSA_BITS} bits"));
            }
            let der = private.to_pkcs1_der().map_err(|_| invalid("RSA"))?;
            let n = URL_SAFE_NO_PAD.encode(private.n().to_bytes_be());
            let e = URL_SAFE_NO_PAD.encode(private.e().to_bytes_be());
            let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(|_| invalid("RSA"))?;
            Ok((EncodingKey::from_rsa_der(der.as_bytes()), decoding))
        }
        (Algorithm::ES256, KeyMaterial::PrivateKeyPem(pem)) => {
            let secret = p256::SecretKey::from_pkcs8_pem(pem)
                .or_else(|_| p256::SecretKey::from_sec1_pem(pem))
                .map_err(|_| invalid("P-256 EC"))?;
            let der = secret.to_pkcs8_der().map_err(|_| invalid("P-256 EC"))?;
            let point = secret.public_key().to_encoded_point(false);
            let (Some(x), Some(y)) = (point.x(), point.y()) else {
                return Err(invalid("P-256 EC"));
            };
            let decoding = DecodingKey::from_ec_components(
                &URL_SAFE_NO_PAD.encode(x),
                &URL_SAFE_NO_PAD.encode(y),
            )
            .map_err(|_| invalid("P-256 EC"))?;
            Ok((EncodingKey::from_ec_der(der.as_bytes()), decoding))
        }
        (Algorithm::EdDSA, KeyMaterial::PrivateKeyPem(pem)) => {
            let signing =
                ed25519_dalek::SigningKey::from_pkcs8_pem(pem).map_err(|_| invalid("Ed25519"))?;
            let der = signing.to_pkcs8_der().map_err(|_| invalid("Ed25519"))?;
            let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
            let decoding = DecodingKey::from_ed_components(&x).map_err(|_| invalid("Ed25519"))?;
            Ok((EncodingKey::from_ed_der(der.as_bytes()), decoding))
        }
        (Algorithm::HS256, KeyMaterial::PrivateKeyPem(_)) => {
            Err("HS256 takes jwt.secret, not a private key file".into())
        }
        (_, KeyMaterial::Secret(_)) => {
            Err("this algorithm takes jwt.private_key_file, not a shared secret".into())
        }
        (other, _) => Err(format!("algorithm {other:?} is not supported")),
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// 128 random bits, hex-encoded: the token's `jti`.
fn random_id() -> Result<String, GatewayError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| GatewayError::Internal("no randomness available"))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

#[cfg(test)]
mod tests;
