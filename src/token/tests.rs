use super::*;

const SECRET: &[u8] = b"unit-test-secret-that-is-32-bytes!!";

fn identity() -> Identity {
    Identity {
        openid: "o1".into(),
        unionid: Some("u1".into()),
        appid: Some("wx1".into()),
        platform: crate::identity::Platform::Douyin,
    }
}

/// `claims` signed with HS256 and the tests' secret, as other tooling might mint them.
fn sign_hs256(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn settings() -> TokenSettings<'static> {
    TokenSettings {
        issuer: "iss",
        audience: None,
        ttl_secs: 60,
        leeway_secs: 0,
    }
}

fn load(algorithm: Algorithm, material: KeyMaterial<'_>) -> Result<LoadedKey, String> {
    LoadedKey::load(&KeySpec {
        algorithm,
        material,
        kid: None,
    })
}

fn keys(algorithm: Algorithm, material: KeyMaterial<'_>) -> Result<TokenKeys, String> {
    TokenKeys::new(settings(), load(algorithm, material)?, Vec::new())
}

/// A verified token, for the tests of what keeps them.
pub(super) fn verified_for_tests() -> Arc<VerifiedToken> {
    let keys = keys(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap();
    let issued = keys.issue(&identity(), None).unwrap();
    keys.verify(&issued.token).unwrap()
}

#[test]
fn hs256_round_trip_carries_identity() {
    let keys = keys(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap();
    let issued = keys.issue(&identity(), None).unwrap();
    assert_eq!(issued.expires_in, 60);
    assert_eq!(*keys.verify(&issued.token).unwrap().identity, identity());
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
        let token = keys.issue(&identity(), None).unwrap().token;
        assert_eq!(
            keys.verify(&token).unwrap().identity.openid,
            "o1",
            "{algorithm:?}"
        );
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
    let first = keys.issue(&identity(), None).unwrap().token;
    let second = keys.issue(&identity(), None).unwrap().token;
    assert_ne!(first, second);
}

fn ec_pem() -> String {
    use p256::pkcs8::{EncodePrivateKey as _, LineEnding};
    let ec = p256::SecretKey::random(&mut rand::rngs::OsRng);
    ec.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
}

fn header_kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).unwrap().kid
}

#[test]
fn every_issued_token_names_the_signing_key() {
    let keys = keys(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap();
    let token = keys.issue(&identity(), None).unwrap().token;
    assert_eq!(header_kid(&token).as_deref(), Some(keys.signing_kid()));
    assert!(keys.signing_kid().starts_with("hs256-"));
}

#[test]
fn rotation_keeps_old_tokens_until_the_old_key_is_removed() {
    let old_secret = b"the-old-secret-that-is-32-bytes-long!!";
    let old_only = keys(Algorithm::HS256, KeyMaterial::Secret(old_secret)).unwrap();
    let old_token = old_only.issue(&identity(), None).unwrap().token;

    let old = load(Algorithm::HS256, KeyMaterial::Secret(old_secret)).unwrap();
    let new = load(Algorithm::ES256, KeyMaterial::PrivateKeyPem(&ec_pem())).unwrap();
    let new_kid = new.kid.clone();
    let rotated = TokenKeys::new(settings(), new, vec![old]).unwrap();
    assert_eq!(*rotated.verify(&old_token).unwrap().identity, identity());
    assert!(
        rotated.verify(&old_token).is_ok(),
        "kept in this thread's table"
    );
    let new_token = rotated.issue(&identity(), None).unwrap().token;
    assert_eq!(header_kid(&new_token), Some(new_kid));
    assert_eq!(
        jsonwebtoken::decode_header(&new_token).unwrap().alg,
        Algorithm::ES256
    );

    let new_only = TokenKeys::new(
        settings(),
        load(Algorithm::ES256, KeyMaterial::PrivateKeyPem(&ec_pem())).unwrap(),
        Vec::new(),
    )
    .unwrap();
    assert_eq!(
        new_only.verify(&old_token),
        Err(GatewayError::InvalidToken("unknown key id"))
    );
}

#[test]
fn a_key_verifies_only_its_own_algorithm() {
    // An HS384 token naming the HS256 key's kid, signed with the same secret.
    let keys = keys(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap();
    let mut header = Header::new(Algorithm::HS384);
    header.kid = Some(keys.signing_kid().to_string());
    let claims = serde_json::json!({ "sub": "o1", "iss": "iss", "exp": unix_now() + 60 });
    let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap();
    assert!(keys.verify(&token).is_err());
}

/// Catches a build that lets jsonwebtoken ignore `crit` (RFC 7515 says refuse what you do not
/// understand) or reads tokens that claim to be encrypted or compressed.
#[test]
fn critical_extensions_and_encryption_headers_are_refused() {
    let keys = keys(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap();
    let claims = serde_json::json!({ "sub": "o1", "iss": "iss", "exp": unix_now() + 60 });
    let sign = |header: &Header| {
        jsonwebtoken::encode(header, &claims, &EncodingKey::from_secret(SECRET)).unwrap()
    };
    assert!(keys.verify(&sign(&Header::new(Algorithm::HS256))).is_ok());
    let mut critical = Header::new(Algorithm::HS256);
    critical.crit = Some(vec!["b64".into()]);
    assert_eq!(
        keys.verify(&sign(&critical)),
        Err(GatewayError::InvalidToken(
            "critical header extensions are not supported"
        ))
    );
    let encrypted: Header =
        serde_json::from_value(serde_json::json!({"alg": "HS256", "zip": "DEF"})).unwrap();
    assert_eq!(
        keys.verify(&sign(&encrypted)),
        Err(GatewayError::InvalidToken(
            "encrypted tokens are not supported"
        ))
    );
}

/// Catches a build that accepts a subject the proxy then cannot set as X-OpenId, forwarding the
/// request on a required route with no identity.
#[test]
fn identities_that_cannot_be_header_values_are_refused() {
    let keys = keys(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap();
    let exp = unix_now() + 60;
    for claims in [
        serde_json::json!({ "sub": "o1\r\nx-admin: 1", "iss": "iss", "exp": exp }),
        serde_json::json!({ "sub": "o1\u{0}", "iss": "iss", "exp": exp }),
        serde_json::json!({ "sub": "o1", "unionid": "u\n1", "iss": "iss", "exp": exp }),
    ] {
        assert_eq!(
            keys.verify(&sign_hs256(claims)),
            Err(GatewayError::InvalidToken(
                "identity cannot be forwarded as a header"
            ))
        );
    }
}

#[test]
fn tokens_without_a_kid_are_checked_against_the_signing_key_only() {
    let verify_secret = b"a-verify-only-secret-of-32-bytes-long!";
    let keys = TokenKeys::new(
        settings(),
        load(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap(),
        vec![load(Algorithm::HS256, KeyMaterial::Secret(verify_secret)).unwrap()],
    )
    .unwrap();
    let claims = serde_json::json!({ "sub": "o1", "iss": "iss", "exp": unix_now() + 60 });
    let sign = |secret: &[u8]| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    assert_eq!(keys.verify(&sign(SECRET)).unwrap().identity.openid, "o1");
    assert!(keys.verify(&sign(verify_secret)).is_err());
}

#[test]
fn duplicate_kids_and_public_signing_keys_are_refused() {
    let same = || load(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap();
    assert!(TokenKeys::new(settings(), same(), vec![same()]).is_err());

    let pem = ec_pem();
    let public_pem = {
        use p256::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _, LineEnding};
        let secret = p256::SecretKey::from_pkcs8_pem(&pem).unwrap();
        secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
    };
    let public = load(Algorithm::ES256, KeyMaterial::PublicKeyPem(&public_pem)).unwrap();
    let private = load(Algorithm::ES256, KeyMaterial::PrivateKeyPem(&pem)).unwrap();
    assert_eq!(
        public.kid, private.kid,
        "the kid is derived from the public half"
    );
    assert!(TokenKeys::new(settings(), public, Vec::new()).is_err());
}

#[test]
fn jwks_publishes_asymmetric_keys_only() {
    let keys = TokenKeys::new(
        settings(),
        load(Algorithm::ES256, KeyMaterial::PrivateKeyPem(&ec_pem())).unwrap(),
        vec![load(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap()],
    )
    .unwrap();
    let jwks: serde_json::Value = serde_json::from_slice(&keys.jwks()).unwrap();
    let published = jwks["keys"].as_array().unwrap();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["kid"], keys.signing_kid());
    assert_eq!(published[0]["kty"], "EC");
    assert_eq!(published[0]["alg"], "ES256");
    assert!(!String::from_utf8_lossy(&keys.jwks()).contains("unit-test-secret"));
}

#[test]
fn refresh_accepts_a_recently_expired_token_and_carries_the_session() {
    let keys = keys(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap();
    let issued = keys.issue(&identity(), Some("sid-1")).unwrap().token;
    let verified = keys.verify(&issued).unwrap();
    assert_eq!(verified.sid.as_deref(), Some("sid-1"));
    assert_eq!(verified.jti.as_ref().map(String::len), Some(32));

    let expired_at = |ago: u64| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(keys.signing_kid().to_string());
        let claims = serde_json::json!({
            "sub": "o1", "iss": "iss", "sid": "s", "exp": unix_now() - ago
        });
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap()
    };
    let recent = expired_at(100);
    assert!(keys.verify(&recent).is_err());
    assert_eq!(
        keys.verify_for_refresh(&recent, 3600)
            .unwrap()
            .sid
            .as_deref(),
        Some("s")
    );
    assert_eq!(
        keys.verify_for_refresh(&expired_at(7200), 3600),
        Err(GatewayError::InvalidToken(
            "token expired too long ago to refresh"
        ))
    );
}

#[test]
fn verified_tokens_are_remembered_but_only_successes() {
    let keys = keys(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap();
    let token = keys.issue(&identity(), None).unwrap().token;
    let first = keys.verify(&token).unwrap();
    assert_eq!(keys.verified.len(), 1);
    assert_eq!(
        keys.verify(&token).unwrap(),
        first,
        "the cached answer is the same"
    );
    // One changed byte is another token, verified in full and refused.
    let tampered = format!("{}x", &token[..token.len() - 1]);
    assert!(keys.verify(&tampered).is_err());
    assert_eq!(keys.verified.len(), 1);
}

#[test]
fn a_remembered_token_is_refused_once_it_expires() {
    let short = TokenSettings {
        ttl_secs: 1,
        ..settings()
    };
    let key = load(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap();
    let keys = TokenKeys::new(short, key, Vec::new()).unwrap();
    let token = keys.issue(&identity(), None).unwrap().token;
    assert!(keys.verify(&token).is_ok());
    assert!(keys.verify(&token).is_ok(), "kept in this thread's table");
    assert!(keys.verified.get_recent(token.as_bytes()).is_some());
    std::thread::sleep(std::time::Duration::from_millis(2200));
    assert_eq!(
        keys.verify(&token),
        Err(GatewayError::InvalidToken("token expired"))
    );
}

#[test]
fn a_threads_recent_verification_is_never_another_key_sets() {
    let old = keys(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap();
    let token = old.issue(&identity(), None).unwrap().token;
    assert!(old.verify(&token).is_ok());
    assert!(old.verify(&token).is_ok(), "kept in this thread's table");
    assert!(old.verified.get_recent(token.as_bytes()).is_some());
    let other_secret = b"another-secret-0123456789abcdef0123456789abcdef";
    let reloaded = keys(Algorithm::HS256, KeyMaterial::Secret(other_secret)).unwrap();
    assert_eq!(
        reloaded.verify(&token),
        Err(GatewayError::InvalidToken("unknown key id"))
    );
}

#[test]
fn tokens_sharing_a_threads_slot_each_get_their_own_answer() {
    let keys = keys(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap();
    let mut by_slot: std::collections::HashMap<usize, (String, String)> = Default::default();
    let (first, second) = (0..10_000)
        .find_map(|index| {
            let mut who = identity();
            who.openid = format!("o-{index}");
            let token = keys.issue(&who, None).unwrap().token;
            let slot = super::cache::recent_slot(token.as_bytes());
            match by_slot.get(&slot) {
                Some(earlier) => Some((earlier.clone(), (token, who.openid))),
                None => {
                    by_slot.insert(slot, (token, who.openid));
                    None
                }
            }
        })
        .expect("two tokens in one slot");
    // Each asks twice in a row, so each takes the slot from the other in turn.
    for _ in 0..3 {
        for (token, openid) in [&first, &second] {
            for _ in 0..2 {
                assert_eq!(&keys.verify(token).unwrap().identity.openid, openid);
            }
            assert!(keys.verified.get_recent(token.as_bytes()).is_some());
        }
    }
}

#[test]
fn a_token_takes_a_threads_slot_only_when_it_comes_back_before_another() {
    let keys = keys(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap();
    let mut by_slot: std::collections::HashMap<usize, Vec<String>> = Default::default();
    let tokens = (0..20_000)
        .find_map(|index| {
            let mut who = identity();
            who.openid = format!("o-{index}");
            let token = keys.issue(&who, None).unwrap().token;
            let same = by_slot
                .entry(super::cache::recent_slot(token.as_bytes()))
                .or_default();
            same.push(token);
            (same.len() == 3).then(|| same.clone())
        })
        .expect("three tokens in one slot");
    let kept = |token: &String| keys.verified.get_recent(token.as_bytes()).is_some();
    let (a, b, c) = (&tokens[0], &tokens[1], &tokens[2]);
    keys.verify(a).unwrap();
    assert!(!kept(a), "a token seen once is not copied");
    keys.verify(a).unwrap();
    assert!(kept(a), "a token back before any other takes the slot");
    // Two users taking turns: neither ever comes back first, and the slot stays a's.
    for _ in 0..3 {
        for token in [b, c] {
            assert!(keys.verify(token).is_ok());
        }
    }
    assert!(kept(a) && !kept(b) && !kept(c));
    keys.verify(b).unwrap();
    keys.verify(b).unwrap();
    assert!(kept(b) && !kept(a));
    let openid = |token: &String| keys.verify(token).unwrap().identity.openid.clone();
    assert_ne!(openid(a), openid(b), "each answered with its own identity");
}

/// The hot path's shortcut answers from the shared cache too: a token the thread's table does not
/// keep (seen once, as with many users in rotation) is found by its bytes without being read
/// again; only the exact bytes of a verified token are.
#[test]
fn the_shortcut_finds_a_token_the_threads_table_does_not_keep() {
    let keys = keys(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap();
    let token = keys.issue(&identity(), None).unwrap().token;
    assert!(
        keys.recently_verified(token.as_bytes()).is_none(),
        "never verified"
    );
    let verified = keys.verify(&token).unwrap();
    assert!(keys.verified.get_recent(token.as_bytes()).is_none());
    let found = keys
        .recently_verified(token.as_bytes())
        .expect("in the shared cache");
    assert!(
        Arc::ptr_eq(&found, &verified),
        "the shared cache's own entry"
    );
    let tampered = format!("{}x", &token[..token.len() - 1]);
    assert!(keys.recently_verified(tampered.as_bytes()).is_none());
    assert!(keys.recently_verified(&token.as_bytes()[1..]).is_none());
}

/// The platform rides in the token (the identity above is Douyin's); tokens from before platforms
/// are WeChat's; a platform the gateway does not know is refused, never guessed.
#[test]
fn the_platform_claim_round_trips_and_an_unknown_one_is_refused() {
    let keys = keys(Algorithm::HS256, KeyMaterial::Secret(SECRET)).unwrap();
    let issued = keys.issue(&identity(), None).unwrap();
    assert_eq!(
        keys.verify(&issued.token).unwrap().identity.platform,
        crate::identity::Platform::Douyin
    );
    let exp = unix_now() + 60;
    let old = sign_hs256(serde_json::json!({ "sub": "o1", "iss": "iss", "exp": exp }));
    assert_eq!(
        keys.verify(&old).unwrap().identity.platform,
        crate::identity::Platform::WeChat
    );
    let unknown = sign_hs256(
        serde_json::json!({ "sub": "o1", "iss": "iss", "exp": exp, "platform": "myspace" }),
    );
    assert_eq!(
        keys.verify(&unknown),
        Err(GatewayError::InvalidToken("unknown platform"))
    );
}
