//! Token forging for tests: valid tokens, and every kind of bad one an attacker would try.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::{ISSUER, JWT_SECRET};

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims a user's own tooling might mint: just what the gateway requires.
pub fn claims(openid: &str) -> Value {
    json!({ "sub": openid, "iss": ISSUER, "exp": now() + 600 })
}

/// Signs `claims` with `algorithm` and `key`.
pub fn sign(algorithm: Algorithm, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), claims, key).expect("sign test token")
}

/// An HS256 token with the harness secret.
pub fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
}

/// A token with the given header and claims and no signature (`alg: none` forgeries).
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// `token` with its payload replaced and its signature kept.
pub fn with_payload(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    )
}

/// The decoded payload of a token.
pub fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
}

/// A fresh RSA-2048 key: (private PKCS#8 PEM, public SPKI PEM).
pub fn rsa_key() -> (String, String) {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let public = private.to_public_key();
    (
        private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        public.to_public_key_pem(LineEnding::LF).unwrap(),
    )
}

/// A fresh P-256 key as PKCS#8 PEM.
pub fn ec_key() -> String {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    secret.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
}

/// A fresh Ed25519 key as PKCS#8 PEM.
pub fn ed_key() -> String {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey};
    let seed: [u8; 32] = rand::random();
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    signing.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
}

/// Writes `contents` to a fresh file under the system temp dir.
pub fn temp_file(contents: &str) -> PathBuf {
    let name = format!(
        "wxgate-test-{}-{}.pem",
        std::process::id(),
        rand::random::<u64>()
    );
    let path = std::env::temp_dir().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// A `[jwt]` section for an asymmetric algorithm with the key at `path`.
pub fn jwt_section(algorithm: &str, path: &std::path::Path, extra: &str) -> String {
    format!(
        "[jwt]\nalgorithm = \"{algorithm}\"\nprivate_key_file = \"{}\"\nissuer = \"{ISSUER}\"\n{extra}\n",
        path.display()
    )
}

/// A `[jwt]` section that signs with a fresh ES256 key (written to a scratch file) for `issuer`,
/// and the key's PEM.
pub fn es256_jwt_section(issuer: &str) -> (String, String) {
    let pem = ec_key();
    let path = super::scratch_dir("es256-key").join("es256.pem");
    std::fs::write(&path, &pem).unwrap();
    let section = format!(
        "[jwt]\nalgorithm = \"ES256\"\nprivate_key_file = \"{}\"\nissuer = \"{issuer}\"\n",
        path.display()
    );
    (section, pem)
}
