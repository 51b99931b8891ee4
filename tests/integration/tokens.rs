//! Token verification over real sockets: every forged-token class is refused with 401 and
//! `error="invalid_token"` before the upstream is contacted; valid tokens from any tool with the
//! same key and issuer work; each asymmetric algorithm round-trips.

use crate::common::tokens::{self, claims, hs256, now, sign, unsigned, with_payload};
use crate::common::{Harness, Setup};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

/// Asserts `token` is refused on a required route with the given reason in the message.
async fn assert_refused(gateway: &Harness, token: &str, reason: &str) {
    let before = gateway.echo.requests();
    let response = gateway.get_with_token("/api/x", token, &[]).await;
    assert_eq!(response.status, 401, "{reason}: {}", response.text());
    assert_eq!(
        response.header("www-authenticate"),
        Some(r#"Bearer realm="wxgate", error="invalid_token""#)
    );
    assert_eq!(response.error_code(), "invalid_token");
    let message = response.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(reason),
        "expected {reason:?} in {message:?}"
    );
    assert_eq!(
        gateway.echo.requests(),
        before,
        "upstream contacted for {reason}"
    );
}

#[tokio::test]
async fn a_token_minted_by_other_tooling_with_the_same_key_is_accepted() {
    let gateway = Harness::start().await;
    let response = gateway
        .get_with_token("/api/x", &hs256(&claims("o-tool")), &[])
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.upstream_header("x-openid"), ["o-tool"]);
    assert!(response.upstream_header("x-unionid").is_empty());
}

/// Catches a build that reads `alg` from the token (CVE-2015-9235 class): unsigned tokens in
/// every spelling of `none` are refused.
#[tokio::test]
async fn alg_none_in_every_spelling_is_refused() {
    let gateway = Harness::start().await;
    for alg in ["none", "None", "NONE", "nOnE"] {
        let token = unsigned(&json!({"alg": alg, "typ": "JWT"}), &claims("o-admin"));
        assert_refused(&gateway, &token, "malformed token").await;
    }
}

/// Catches a build that skips the signature check.
#[tokio::test]
async fn a_token_signed_with_another_key_is_refused() {
    let gateway = Harness::start().await;
    let other = EncodingKey::from_secret(b"another-secret-that-is-also-32-bytes-long!!");
    assert_refused(
        &gateway,
        &sign(Algorithm::HS256, &claims("o1"), &other),
        "bad signature",
    )
    .await;
}

/// Catches a build that accepts any HMAC algorithm for the key instead of the configured one.
#[tokio::test]
async fn another_algorithm_with_the_same_key_is_refused() {
    let gateway = Harness::start().await;
    let key = EncodingKey::from_secret(crate::common::JWT_SECRET.as_bytes());
    for algorithm in [Algorithm::HS384, Algorithm::HS512] {
        let token = sign(algorithm, &claims("o1"), &key);
        assert_refused(&gateway, &token, "algorithm not accepted").await;
    }
}

#[tokio::test]
async fn expired_tokens_are_refused_beyond_the_leeway_only() {
    let gateway = Harness::start().await;
    let mut expired = claims("o1");
    expired["exp"] = json!(now() - 120);
    assert_refused(&gateway, &hs256(&expired), "token expired").await;

    let mut within_leeway = claims("o1");
    within_leeway["exp"] = json!(now() - 5);
    let response = gateway
        .get_with_token("/api/x", &hs256(&within_leeway), &[])
        .await;
    assert_eq!(response.status, 200, "the default 30 s leeway applies");
}

#[tokio::test]
async fn a_token_without_exp_is_refused() {
    let gateway = Harness::start().await;
    let token = hs256(&json!({"sub": "o1", "iss": crate::common::ISSUER}));
    assert_refused(&gateway, &token, "required claim missing").await;
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused() {
    let gateway = Harness::start().await;
    let mut early = claims("o1");
    early["nbf"] = json!(now() + 300);
    assert_refused(&gateway, &hs256(&early), "token not valid yet").await;
    early["nbf"] = json!(now() - 1);
    assert_eq!(
        gateway
            .get_with_token("/api/x", &hs256(&early), &[])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_wrong_or_missing_issuer_is_refused() {
    let gateway = Harness::start().await;
    let mut wrong = claims("o1");
    wrong["iss"] = json!("someone-else");
    assert_refused(&gateway, &hs256(&wrong), "wrong issuer").await;
    let missing = json!({"sub": "o1", "exp": now() + 600});
    assert_refused(&gateway, &hs256(&missing), "required claim missing").await;
}

/// Catches a build that verifies the signature over something other than header.payload.
#[tokio::test]
async fn a_tampered_payload_is_refused() {
    let gateway = Harness::start().await;
    let token = gateway.login("grace.1").await;
    let mut forged = tokens::payload(&token);
    forged["sub"] = json!("oMock_admin");
    assert_refused(&gateway, &with_payload(&token, &forged), "bad signature").await;
}

#[tokio::test]
async fn a_token_without_subject_or_with_garbage_is_refused() {
    let gateway = Harness::start().await;
    let no_sub = json!({"iss": crate::common::ISSUER, "exp": now() + 600});
    assert_refused(&gateway, &hs256(&no_sub), "required claim missing").await;
    assert_refused(&gateway, "not-a-jwt", "malformed token").await;
    assert_refused(&gateway, &"a".repeat(9000), "token too large").await;
}

#[tokio::test]
async fn audience_is_required_and_checked_when_configured() {
    let gateway = Harness::start_with(Setup {
        jwt: format!(
            "[jwt]\nsecret = \"{}\"\nissuer = \"{}\"\naudience = \"shop\"\n",
            crate::common::JWT_SECRET,
            crate::common::ISSUER
        ),
        ..Setup::default()
    })
    .await;
    let mut token_claims = claims("o1");
    assert_refused(&gateway, &hs256(&token_claims), "required claim missing").await;
    token_claims["aud"] = json!("another-app");
    assert_refused(&gateway, &hs256(&token_claims), "wrong audience").await;
    token_claims["aud"] = json!("shop");
    assert_eq!(
        gateway
            .get_with_token("/api/x", &hs256(&token_claims), &[])
            .await
            .status,
        200
    );
    let issued = gateway.login("heidi.1").await;
    assert_eq!(tokens::payload(&issued)["aud"], "shop");
    assert_eq!(
        gateway.get_with_token("/api/x", &issued, &[]).await.status,
        200
    );
}

/// Catches a build that picks one of two Authorization headers (the backend may read the other):
/// ambiguous credentials are refused.
#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let gateway = Harness::start().await;
    let token = hs256(&claims("o1"));
    let response = gateway
        .get_with_token("/api/x", &token, &[("Authorization", "Bearer other")])
        .await;
    assert_eq!(response.status, 401);
    assert_eq!(gateway.echo.requests(), 0);
}

#[tokio::test]
async fn asymmetric_algorithms_round_trip_from_login_to_upstream() {
    let (rsa_private, _) = tokens::rsa_key();
    for (algorithm, pem) in [
        ("RS256", rsa_private),
        ("ES256", tokens::ec_key()),
        ("EdDSA", tokens::ed_key()),
    ] {
        let path = tokens::temp_file(&pem);
        let gateway = Harness::start_with(Setup {
            jwt: tokens::jwt_section(algorithm, &path, ""),
            ..Setup::default()
        })
        .await;
        let token = gateway.login("ivan.1").await;
        let header: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                token.split('.').next().unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], algorithm);
        let response = gateway.get_with_token("/api/x", &token, &[]).await;
        assert_eq!(response.status, 200, "{algorithm}");
        assert_eq!(response.upstream_header("x-openid"), ["oMock_ivan"]);
        // An HS256 token signed with the harness secret is another algorithm: refused.
        assert_refused(&gateway, &hs256(&claims("o1")), "algorithm not accepted").await;
        std::fs::remove_file(path).ok();
    }
}

/// Catches HS/RS key confusion (CVE-2016-10555 class): an HS256 token whose secret is the RSA
/// public key must not verify.
#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let (private, public) = tokens::rsa_key();
    let path = tokens::temp_file(&private);
    let gateway = Harness::start_with(Setup {
        jwt: tokens::jwt_section("RS256", &path, ""),
        ..Setup::default()
    })
    .await;
    let confused = sign(
        Algorithm::HS256,
        &claims("o-admin"),
        &EncodingKey::from_secret(public.as_bytes()),
    );
    assert_refused(&gateway, &confused, "algorithm not accepted").await;
    std::fs::remove_file(path).ok();
}
