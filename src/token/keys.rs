//! Loading one JWT key: its algorithm (pinned to the key, never taken from a token), its key id,
//! the signing half when the key is private, the verification half, and the public JWK that
//! `/.well-known/jwks.json` publishes for asymmetric keys.
//!
//! A key id not set in the config is derived from the key itself, so it stays the same when the
//! key moves from signing to verify-only during a rotation: the RFC 7638 thumbprint for RS256,
//! ES256 and EdDSA, and a hash of the secret for HS256 (an HS256 token already lets anyone test
//! guesses of the secret offline, so the hash gives nothing more away).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sha2::{Digest, Sha256};

/// The shortest HS256 secret accepted (RFC 7518 section 3.2: at least the hash output size).
const MIN_HS256_SECRET_BYTES: usize = 32;
/// The smallest RSA modulus accepted for RS256.
const MIN_RSA_BITS: usize = 2048;
/// The longest key id accepted in the config.
const MAX_KID_CHARS: usize = 128;

/// What the key configuration provides.
pub(crate) enum KeyMaterial<'a> {
    /// A shared HS256 secret.
    Secret(&'a [u8]),
    /// A PEM private key (PKCS#8, or PKCS#1 for RSA, or SEC1 for EC) for RS256, ES256 or EdDSA.
    PrivateKeyPem(&'a str),
    /// A PEM public key (SPKI, or PKCS#1 for RSA): verifies, never signs.
    PublicKeyPem(&'a str),
}

/// One configured key, before loading.
pub(crate) struct KeySpec<'a> {
    /// The one algorithm this key signs and verifies with.
    pub(crate) algorithm: Algorithm,
    /// The key itself.
    pub(crate) material: KeyMaterial<'a>,
    /// The key id, when the config sets one; derived from the key otherwise.
    pub(crate) kid: Option<&'a str>,
}

/// A loaded key: verifies tokens naming its kid, and signs when it holds a private part.
pub(crate) struct LoadedKey {
    pub(crate) kid: String,
    pub(crate) algorithm: Algorithm,
    pub(crate) encoding: Option<EncodingKey>,
    pub(crate) decoding: DecodingKey,
    /// The public JWK (with kid, alg and use), for asymmetric keys only.
    pub(crate) jwk: Option<serde_json::Value>,
}

/// The public half of an asymmetric key, as base64url JWK members.
enum PublicParts {
    Rsa { n: String, e: String },
    P256 { x: String, y: String },
    Ed25519 { x: String },
}

impl LoadedKey {
    /// Loads and checks a key; errors are sentences naming what is wrong with it.
    pub(crate) fn load(spec: &KeySpec<'_>) -> Result<LoadedKey, String> {
        if let Some(kid) = spec.kid {
            check_kid(kid)?;
        }
        let (encoding, public) = match (spec.algorithm, &spec.material) {
            (Algorithm::HS256, KeyMaterial::Secret(secret)) => {
                if secret.len() < MIN_HS256_SECRET_BYTES {
                    return Err(format!(
                        "must be at least {MIN_HS256_SECRET_BYTES} bytes for HS256"
                    ));
                }
                return Ok(LoadedKey {
                    kid: spec.kid.map_or_else(|| secret_kid(secret), str::to_string),
                    algorithm: Algorithm::HS256,
                    encoding: Some(EncodingKey::from_secret(secret)),
                    decoding: DecodingKey::from_secret(secret),
                    jwk: None,
                });
            }
            (Algorithm::HS256, _) => return Err("HS256 takes a secret, not a key file".into()),
            (_, KeyMaterial::Secret(_)) => {
                return Err("this algorithm takes a PEM key file, not a shared secret".into())
            }
            (algorithm, KeyMaterial::PrivateKeyPem(pem)) => {
                let (encoding, public) = private_key(algorithm, pem)?;
                (Some(encoding), public)
            }
            (algorithm, KeyMaterial::PublicKeyPem(pem)) => (None, public_key(algorithm, pem)?),
        };
        let decoding = public.decoding_key()?;
        let kid = spec.kid.map_or_else(|| public.thumbprint(), str::to_string);
        let jwk = public.jwk(&kid, spec.algorithm);
        Ok(LoadedKey {
            kid,
            algorithm: spec.algorithm,
            encoding,
            decoding,
            jwk: Some(jwk),
        })
    }
}

/// Key ids are written into every token header: plain visible characters only.
fn check_kid(kid: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if kid.is_empty() || kid.chars().count() > MAX_KID_CHARS || !kid.chars().all(allowed) {
        return Err(format!(
            "kid must be 1 to {MAX_KID_CHARS} characters of A-Z a-z 0-9 . _ - :"
        ));
    }
    Ok(())
}

/// The derived key id of an HS256 secret: a domain-separated hash, never the secret.
fn secret_kid(secret: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"wxgate HS256 key id\0")
        .chain_update(secret)
        .finalize();
    format!("hs256-{}", URL_SAFE_NO_PAD.encode(&digest[..16]))
}

fn invalid(what: &str, half: &str) -> String {
    format!("is not a valid {what} {half} key in PEM form")
}

/// Parses a private key: the signing key and the public half.
fn private_key(algorithm: Algorithm, pem: &str) -> Result<(EncodingKey, PublicParts), String> {
    use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
    use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};

    match algorithm {
        Algorithm::RS256 => {
            let private = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
                .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem))
                .map_err(|_| invalid("RSA", "private"))?;
            let der = private
                .to_pkcs1_der()
                .map_err(|_| invalid("RSA", "private"))?;
            let public = rsa_parts(&private.to_public_key())?;
            Ok((EncodingKey::from_rsa_der(der.as_bytes()), public))
        }
        Algorithm::ES256 => {
            let secret = p256::SecretKey::from_pkcs8_pem(pem)
                .or_else(|_| p256::SecretKey::from_sec1_pem(pem))
                .map_err(|_| invalid("P-256 EC", "private"))?;
            let der = secret
                .to_pkcs8_der()
                .map_err(|_| invalid("P-256 EC", "private"))?;
            let public = p256_parts(&secret.public_key())?;
            Ok((EncodingKey::from_ec_der(der.as_bytes()), public))
        }
        Algorithm::EdDSA => {
            let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
                .map_err(|_| invalid("Ed25519", "private"))?;
            let der = signing
                .to_pkcs8_der()
                .map_err(|_| invalid("Ed25519", "private"))?;
            let public = PublicParts::Ed25519 {
                x: URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes()),
            };
            Ok((EncodingKey::from_ed_der(der.as_bytes()), public))
        }
        other => Err(format!("algorithm {other:?} is not supported")),
    }
}

/// Parses a public key (SPKI PEM, or PKCS#1 for RSA).
fn public_key(algorithm: Algorithm, pem: &str) -> Result<PublicParts, String> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    use rsa::pkcs1::DecodeRsaPublicKey;

    match algorithm {
        Algorithm::RS256 => rsa_parts(
            &rsa::RsaPublicKey::from_public_key_pem(pem)
                .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(pem))
                .map_err(|_| invalid("RSA", "public"))?,
        ),
        Algorithm::ES256 => p256_parts(
            &p256::PublicKey::from_public_key_pem(pem)
                .map_err(|_| invalid("P-256 EC", "public"))?,
        ),
        Algorithm::EdDSA => {
            let verifying = ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
                .map_err(|_| invalid("Ed25519", "public"))?;
            Ok(PublicParts::Ed25519 {
                x: URL_SAFE_NO_PAD.encode(verifying.as_bytes()),
            })
        }
        other => Err(format!("algorithm {other:?} is not supported")),
    }
}

fn rsa_parts(public: &rsa::RsaPublicKey) -> Result<PublicParts, String> {
    use rsa::traits::PublicKeyParts;
    if public.size() * 8 < MIN_RSA_BITS {
        return Err(format!("is an RSA key under {MIN_RSA_BITS} bits"));
    }
    Ok(PublicParts::Rsa {
        n: URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
        e: URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
    })
}

fn p256_parts(public: &p256::PublicKey) -> Result<PublicParts, String> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let point = public.to_encoded_point(false);
    match (point.x(), point.y()) {
        (Some(x), Some(y)) => Ok(PublicParts::P256 {
            x: URL_SAFE_NO_PAD.encode(x),
            y: URL_SAFE_NO_PAD.encode(y),
        }),
        _ => Err(invalid("P-256 EC", "public")),
    }
}

impl PublicParts {
    /// The verification key, built from the same components the JWK publishes.
    fn decoding_key(&self) -> Result<DecodingKey, String> {
        let built = match self {
            PublicParts::Rsa { n, e } => DecodingKey::from_rsa_components(n, e),
            PublicParts::P256 { x, y } => DecodingKey::from_ec_components(x, y),
            PublicParts::Ed25519 { x } => DecodingKey::from_ed_components(x),
        };
        built.map_err(|_| "is not a usable public key".to_string())
    }

    /// The RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order, written
    /// by hand so the order cannot depend on how a JSON library sorts maps.
    fn thumbprint(&self) -> String {
        let canonical = match self {
            PublicParts::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
            PublicParts::P256 { x, y } => {
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            PublicParts::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
        };
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The public JWK as published, marked for signatures with this one algorithm.
    fn jwk(&self, kid: &str, algorithm: Algorithm) -> serde_json::Value {
        let alg = match algorithm {
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            _ => "EdDSA",
        };
        let mut jwk = match self {
            PublicParts::Rsa { n, e } => serde_json::json!({ "kty": "RSA", "n": n, "e": e }),
            PublicParts::P256 { x, y } => {
                serde_json::json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y })
            }
            PublicParts::Ed25519 { x } => {
                serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": x })
            }
        };
        jwk["kid"] = kid.into();
        jwk["alg"] = alg.into();
        jwk["use"] = "sig".into();
        jwk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_thumbprint_of_the_rfc_example_key() {
        // RFC 7638 section 3.1: the example RSA key and its thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let parts = PublicParts::Rsa {
            n: n.into(),
            e: "AQAB".into(),
        };
        assert_eq!(
            parts.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn secret_kid_is_stable_and_does_not_contain_the_secret() {
        let secret = b"a-shared-secret-of-at-least-32-bytes!";
        let kid = secret_kid(secret);
        assert_eq!(kid, secret_kid(secret));
        assert_ne!(kid, secret_kid(b"another-secret-of-at-least-32-bytes!!"));
        assert!(!kid.contains("shared"));
    }

    #[test]
    fn configured_kids_are_plain_text() {
        assert!(check_kid("2026-11_a:b.c").is_ok());
        for bad in ["", "../etc/passwd", "a b", "x'; DROP TABLE", "\u{e9}"] {
            assert!(check_kid(bad).is_err(), "{bad:?}");
        }
        assert!(check_kid(&"k".repeat(MAX_KID_CHARS + 1)).is_err());
    }
}
