//! `/.well-known/jwks.json` and key rotation, seen from outside: tokens checked by an independent
//! implementation (PyJWT, fetching the JWKS over HTTP), and rotations across gateway generations
//! (each started with the next config, as an operator would roll it out).

use crate::common::tokens::{claims, ec_key, ed_key, jwt_section, temp_file, with_payload};
use crate::common::{Harness, Setup, ISSUER};
use serde_json::Value;

fn pyjwt_available() -> bool {
    crate::common::external::python_modules("jwt, cryptography", "pip install 'pyjwt[crypto]'")
}

/// What PyJWT says of each token, verifying against the gateway's published keys.
async fn pyjwt_verify(gateway: &Harness, tokens: &[&str]) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/pyjwt_verify.py");
    let url = format!("http://{}/.well-known/jwks.json", gateway.addr);
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(url)
        .arg(ISSUER)
        .args(tokens)
        .output()
        .await
        .expect("run python3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

async fn jwks(gateway: &Harness) -> Vec<Value> {
    let response = gateway.get("/.well-known/jwks.json", &[]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    response.json()["keys"].as_array().unwrap().clone()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .unwrap()
        .kid
        .expect("a kid")
}

fn public_pem_of(private_pem: &str) -> String {
    use p256::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
    let secret = p256::SecretKey::from_pkcs8_pem(private_pem).unwrap();
    secret
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap()
}

/// A gateway with the `[jwt]` section; each one stands for the same gateway restarted with a new
/// key set, so its tokens must not be tied to a store of its own (in memory, tokens outlive it on
/// their signature, as they would with a database file shared across the restart).
async fn gateway_with(jwt: String) -> Harness {
    Harness::start_with(Setup {
        jwt,
        sections: "[session]\nstore = \"memory\"\n".into(),
        ..Setup::default()
    })
    .await
}

#[tokio::test]
async fn es256_and_eddsa_tokens_verify_with_pyjwt_against_the_published_jwks() {
    for (algorithm, key, kty) in [("ES256", ec_key(), "EC"), ("EdDSA", ed_key(), "OKP")] {
        let gateway = gateway_with(jwt_section(algorithm, &temp_file(&key), "")).await;
        let token = gateway.login("frank").await;
        let published = jwks(&gateway).await;
        assert_eq!(published.len(), 1, "{algorithm}");
        let jwk = published[0].as_object().unwrap();
        assert_eq!(jwk["kid"], kid_of(&token).as_str());
        assert_eq!(
            (jwk["alg"].as_str(), jwk["kty"].as_str()),
            (Some(algorithm), Some(kty))
        );
        assert_eq!(jwk["use"], "sig");
        assert!(jwk
            .keys()
            .all(|member| !["d", "p", "q", "k"].contains(&member.as_str())));

        if !pyjwt_available() {
            continue;
        }
        let mut forged = claims("oMock_mallory");
        forged["exp"] = (crate::common::tokens::now() + 600).into();
        let tampered = with_payload(&token, &forged);
        let verdicts = pyjwt_verify(&gateway, &[&token, &tampered]).await;
        assert_eq!(
            verdicts,
            ["oMock_frank", "REJECTED InvalidSignatureError"],
            "{algorithm}"
        );
    }
}

#[tokio::test]
async fn hs256_secrets_are_never_published() {
    let gateway = Harness::start().await;
    assert!(jwks(&gateway).await.is_empty());
    let post =
        crate::common::request(gateway.addr, "POST", "/.well-known/jwks.json", &[], b"").await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

/// Old tokens verify while the old key is configured, fail once it is removed, and new tokens
/// name the new key: for an asymmetric rotation (the old key kept as its public half only) and
/// an HS256 one.
#[tokio::test]
async fn rotation_keeps_old_tokens_until_the_old_key_is_removed() {
    let (old_ec, new_ec) = (ec_key(), ec_key());
    let old_ec_public = temp_file(&public_pem_of(&old_ec));
    let (old_ec, new_ec) = (temp_file(&old_ec), temp_file(&new_ec));
    let old_secret = "the-old-hs256-secret-of-at-least-32-bytes";
    let new_secret = "the-new-hs256-secret-of-at-least-32-bytes";
    let hs = |secret: &str, extra: &str| {
        format!("[jwt]\nsecret = \"{secret}\"\nissuer = \"{ISSUER}\"\n{extra}")
    };
    let generations = [
        (
            jwt_section("ES256", &old_ec, ""),
            jwt_section(
                "ES256",
                &new_ec,
                &format!(
                    "[[jwt.verify_keys]]\npublic_key_file = \"{}\"",
                    old_ec_public.display()
                ),
            ),
            jwt_section("ES256", &new_ec, ""),
        ),
        (
            hs(old_secret, ""),
            hs(
                new_secret,
                &format!("[[jwt.verify_keys]]\nsecret = \"{old_secret}\""),
            ),
            hs(new_secret, ""),
        ),
    ];
    for (before, during, after) in generations {
        let first = gateway_with(before).await;
        let old_token = first.login("grace").await;

        let second = gateway_with(during).await;
        let old_response = second.get_with_token("/api/me", &old_token, &[]).await;
        assert_eq!(old_response.status, 200, "{}", old_response.text());
        assert_eq!(old_response.upstream_header("x-openid"), ["oMock_grace"]);
        let new_token = second.login("grace").await;
        assert_ne!(kid_of(&new_token), kid_of(&old_token));
        assert_eq!(
            second
                .get_with_token("/api/me", &new_token, &[])
                .await
                .status,
            200
        );
        let published: Vec<Value> = jwks(&second)
            .await
            .iter()
            .map(|jwk| jwk["kid"].clone())
            .collect();
        if !published.is_empty() {
            assert_eq!(published, [kid_of(&new_token), kid_of(&old_token)]);
            if pyjwt_available() {
                let verdicts = pyjwt_verify(&second, &[&old_token, &new_token]).await;
                assert_eq!(verdicts, ["oMock_grace", "oMock_grace"]);
            }
        }

        let third = gateway_with(after).await;
        let refused = third.get_with_token("/api/me", &old_token, &[]).await;
        assert_eq!(refused.status, 401);
        assert!(
            refused.text().contains("unknown key id"),
            "{}",
            refused.text()
        );
        assert_eq!(
            third
                .get_with_token("/api/me", &new_token, &[])
                .await
                .status,
            200
        );
    }
}
