//! Forged-token classes from real JWT CVEs, over real sockets: key-id injection, keys offered by the
//! token itself (`jku`, `x5u`, `jwk`), HS/ES key confusion, JWE-shaped and `crit` tokens, oversized
//! tokens. Each is refused with 401 before the upstream is contacted. (alg `none`, HS/RS confusion,
//! two Authorization headers and a token in both header and query are in `tokens.rs` and
//! `websocket.rs`.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::common::tokens::{self, claims, hs256};
use crate::common::{bind, Harness, Setup};

/// Asserts `token` gets a 401 naming `reason` and the upstream saw nothing.
async fn assert_refused(gateway: &Harness, token: &str, reason: &str) {
    let before = gateway.echo.requests();
    let response = gateway.get_with_token("/api/x", token, &[]).await;
    assert_eq!(response.status, 401, "{reason}: {}", response.text());
    assert_eq!(response.error_code(), "invalid_token");
    let message = response.json()["message"].as_str().unwrap().to_string();
    assert!(message.contains(reason), "{reason:?} in {message:?}");
    assert_eq!(gateway.echo.requests(), before, "upstream contacted");
}

/// Signs `claims` under a hand-made JSON `header` (fields jsonwebtoken's `Header` cannot express).
fn sign_with_header(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{signature}")
}

/// A gateway signing with a fresh key of `algorithm` (PEM returned for key-confusion attempts).
async fn asymmetric_gateway(algorithm: &str, pem: &str) -> Harness {
    let path = tokens::temp_file(pem);
    let gateway = Harness::start_with(Setup {
        jwt: tokens::jwt_section(algorithm, &path, ""),
        ..Setup::default()
    })
    .await;
    // The gateway reads its keys when it starts serving: answered once, it holds them.
    assert_eq!(gateway.get("/.well-known/jwks.json", &[]).await.status, 200);
    std::fs::remove_file(path).ok();
    gateway
}

/// Catches a build that resolves `kid` as a file path or database key, or falls back to the
/// signing key when the kid is unknown: each forgery is signed with what such a lookup would yield.
#[tokio::test]
async fn kid_injection_names_no_key_and_is_refused() {
    let gateway = Harness::start().await;
    let forgeries: [(&str, &[u8]); 5] = [
        ("../../../../../../dev/null", b""),
        ("/dev/null", b""),
        (
            "x' UNION SELECT 'attacker-secret-of-thirty-two-bytes!!'--",
            b"attacker-secret-of-thirty-two-bytes!!",
        ),
        ("' OR '1'='1", b"1"),
        ("unknown-kid", crate::common::JWT_SECRET.as_bytes()),
    ];
    for (kid, secret) in forgeries {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.to_string());
        let token = jsonwebtoken::encode(
            &header,
            &claims("o-admin"),
            &EncodingKey::from_secret(secret),
        )
        .unwrap();
        assert_refused(&gateway, &token, "unknown key id").await;
    }
}

/// A server that counts every connection made to it: where a `jku`/`x5u` would send the gateway.
async fn counting_server() -> (String, Arc<AtomicUsize>) {
    let listener = bind().await;
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = stream
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    (url, connections)
}

/// Catches a build that trusts a key the token brings along (CVE-2018-0114 style embedded `jwk`)
/// or fetches one from `jku`/`x5u`: the forgery names the gateway's own kid, is signed with the
/// attacker's key, and carries the attacker's public key and URLs.
#[tokio::test]
async fn keys_offered_by_the_token_are_never_used_or_fetched() {
    use rsa::traits::PublicKeyParts;
    let (gateway_key, _) = tokens::rsa_key();
    let gateway = asymmetric_gateway("RS256", &gateway_key).await;
    let kid = jsonwebtoken::decode_header(&gateway.login("mallory.1").await)
        .unwrap()
        .kid
        .unwrap();
    let attacker = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let attacker_pem = {
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        attacker.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    };
    let public = attacker.to_public_key();
    let jwk = json!({
        "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
        "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
    });
    let (url, fetches) = counting_server().await;
    let header = json!({
        "alg": "RS256", "typ": "JWT", "kid": kid, "jku": url, "x5u": url, "jwk": jwk,
    });
    let token = sign_with_header(
        &header,
        &claims("o-admin"),
        &EncodingKey::from_rsa_pem(attacker_pem.as_bytes()).unwrap(),
        Algorithm::RS256,
    );
    assert_refused(&gateway, &token, "bad signature").await;
    assert_eq!(fetches.load(Ordering::SeqCst), 0, "jku/x5u fetched");
}

/// Catches a build that picks the verification algorithm from the token's `alg`: an HS256 token
/// whose HMAC secret is the ES256 public key (as PEM, and as the published JWKS text).
#[tokio::test]
async fn hs256_signed_with_the_ec_public_key_is_refused() {
    use p256::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
    let private = tokens::ec_key();
    let gateway = asymmetric_gateway("ES256", &private).await;
    let public_pem = p256::SecretKey::from_pkcs8_pem(&private)
        .unwrap()
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let jwks_text = gateway.get("/.well-known/jwks.json", &[]).await.text();
    for secret in [public_pem.as_bytes(), jwks_text.as_bytes()] {
        let token = tokens::sign(
            Algorithm::HS256,
            &claims("o-admin"),
            &EncodingKey::from_secret(secret),
        );
        assert_refused(&gateway, &token, "algorithm not accepted").await;
    }
}

/// Catches a build that accepts JWE-shaped input (five segments, or `enc`/`zip` headers on a
/// signed token) and reads claims it could not have verified.
#[tokio::test]
async fn jwe_shaped_tokens_are_refused() {
    let gateway = Harness::start().await;
    let segment = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let five_segments = format!(
        "{}.{}.{}.{}.{}",
        segment(&json!({"alg": "dir", "enc": "A128GCM"})),
        "",
        URL_SAFE_NO_PAD.encode([7u8; 12]),
        segment(&claims("o-admin")),
        URL_SAFE_NO_PAD.encode([9u8; 16]),
    );
    assert_refused(&gateway, &five_segments, "malformed token").await;
    let key = EncodingKey::from_secret(crate::common::JWT_SECRET.as_bytes());
    for extra in [json!({"enc": "A256GCM"}), json!({"zip": "DEF"})] {
        let mut header = json!({"alg": "HS256", "typ": "JWT"});
        header
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let token = sign_with_header(&header, &claims("o-admin"), &key, Algorithm::HS256);
        assert_refused(&gateway, &token, "encrypted tokens are not supported").await;
    }
}

/// Catches a build that ignores `crit` (RFC 7515 4.1.11: an extension the recipient does not
/// understand makes the token invalid), e.g. `b64: false` payloads read as if encoded.
#[tokio::test]
async fn critical_header_extensions_are_refused() {
    let gateway = Harness::start().await;
    let key = EncodingKey::from_secret(crate::common::JWT_SECRET.as_bytes());
    let header = json!({"alg": "HS256", "typ": "JWT", "crit": ["b64"], "b64": false});
    let token = sign_with_header(&header, &claims("o-admin"), &key, Algorithm::HS256);
    assert_refused(
        &gateway,
        &token,
        "critical header extensions are not supported",
    )
    .await;
    // The same claims and key without `crit` are fine: the refusal is about the header.
    let plain = json!({"alg": "HS256", "typ": "JWT"});
    let token = sign_with_header(&plain, &claims("o-ok"), &key, Algorithm::HS256);
    assert_eq!(
        gateway.get_with_token("/api/x", &token, &[]).await.status,
        200
    );
}

/// Catches a build without the size check in front of base64/JSON/signature work: a validly
/// signed 9 KiB token is refused as too large, and a token past the header limit is a 431.
#[tokio::test]
async fn oversized_tokens_are_refused_before_parsing() {
    let gateway = Harness::start().await;
    let mut padded = claims("o-big");
    padded["pad"] = json!("x".repeat(9 * 1024));
    assert_refused(&gateway, &hs256(&padded), "token too large").await;
    padded["pad"] = json!("x".repeat(64 * 1024));
    let response = gateway.get_with_token("/api/x", &hs256(&padded), &[]).await;
    assert_eq!(response.status, 431);
    assert_eq!(gateway.echo.requests(), 0);
}
