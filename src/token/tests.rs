use super::*;

const SECRET: &[u8] = b"unit-test-secret-that-is-32-bytes!!";

fn identity() -> Identity {
    Identity {
        openid: "o1".into(),
        unionid: Some("u1".into()),
        appid: Some("wx1".into()),
    }
}

fn keys(algorithm: Algorithm, material: KeyMaterial<'_>) -> Result<TokenKeys, String> {
    TokenKeys::new(TokenSettings {
        algorithm,
        material,
        issuer: "iss",
        audience: None,
        ttl_secs: 60,
        leeway_secs: 0,
    })
}

#[test]
fn hs256_round_trip_carries_identity() {
    let keys = keys(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap();
    let issued = keys.issue(&identity()).unwrap();
    assert_eq!(issued.expires_in, 60);
    assert_eq!(keys.verify(&issued.token).unwrap(), identity());
}

#[test]
fn every_asymmetric_key_format_loads_and_round_trips() {
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    use p256::pkcs8::LineEnding;
    use rsa::pkcs1::EncodeRsaPrivateKey as _;

    let rsa = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let ec = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let ed = ed25519_dalek::SigningKey::from_bytes(&rand::random());
    let pems = [
        (
            Algorithm::RS256,
            rsa.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        ),
        (
            Algorithm::RS256,
            rsa.to_pkcs1_pem(LineEnding::LF).unwrap().to_string(),
        ),
        (
            Algorithm::ES256,
            ec.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        ),
        (
            Algorithm::ES256,
            ec.to_sec1_pem(LineEnding::LF).unwrap().to_string(),
        ),
        (
            Algorithm::EdDSA,
            ed.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        ),
    ];
    for (algorithm, pem) in pems {
        let keys = keys(algorithm, KeyMaterial::PrivateKeyPem(&pem))
            .unwrap_or_else(|error| panic!("{algorithm:?}: {error}"));
        let token = keys.issue(&identity()).unwrap().token;
        assert_eq!(keys.verify(&token).unwrap().openid, "o1", "{algorithm:?}");
    }
}

#[test]
fn mismatched_or_weak_keys_are_refused() {
    assert!(keys(Algorithm::HS256, KeyMaterial::Secret(b"short")).is_err());
    assert!(keys(Algorithm::ES256, KeyMaterial::Secret(SECRET)).is_err());
    assert!(keys(Algorithm::HS256, KeyMaterial::PrivateKeyPem("x")).is_err());
    assert!(keys(Algorithm::RS256, KeyMaterial::PrivateKeyPem("not a pem")).is_err());
    let ec = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let ec_pem = {
        use p256::pkcs8::{EncodePrivateKey as _, LineEnding};
        ec.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    };
    assert!(keys(Algorithm::RS256, KeyMaterial::PrivateKeyPem(&ec_pem)).is_err());
    assert!(keys(Algorithm::EdDSA, KeyMaterial::PrivateKeyPem(&ec_pem)).is_err());
}

#[test]
fn debug_output_hides_the_keys() {
    let keys = keys(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap();
    let debug = format!("{keys:?}");
    assert!(!debug.contains("unit-test-secret"));
    assert!(debug.contains("<redacted>"));
}

#[test]
fn issued_tokens_have_unique_ids() {
    let keys = keys(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap();
    let first = keys.issue(&identity()).unwrap().token;
    let second = keys.issue(&identity()).unwrap().token;
    assert_ne!(first, second);
}
