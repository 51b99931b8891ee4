//! `[identity]`: the signed identity assertion upstreams receive (and forward-auth answers carry),
//! configurable identity header names, and `forward_authorization = false` keeping the client's
//! token from upstreams. Checked on what the echo upstream received; the assertion is verified
//! with PyJWT against the published JWKS where the keys are asymmetric.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::common::tokens::{now, payload};
use crate::common::{external, Harness, Setup, APPID, ISSUER, JWT_SECRET};

const ASSERTION_TYPE: &str = "wxgate-assertion+jwt";

fn routes() -> String {
    "[[routes]]\nprefix = \"/orders\"\nupstream = \"http://{echo}\"\nauth = \"required\"\n\
     audience = \"orders-service\"\nforward_authorization = false\n"
        .into()
}

async fn gateway(identity: &str) -> Harness {
    Harness::start_with(Setup {
        sections: identity.into(),
        extra_routes: routes(),
        ..Setup::default()
    })
    .await
}

fn header_of(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Verifies an HS256 assertion the way a backend would: signature, `typ`, `iss`, `aud`, `exp`.
fn verify_hs256(assertion: &str, audience: &str) -> Result<Value, String> {
    if header_of(assertion)["typ"] != ASSERTION_TYPE {
        return Err("not an assertion".into());
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[audience]);
    validation.leeway = 0;
    jsonwebtoken::decode::<Value>(
        assertion,
        &DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        &validation,
    )
    .map(|data| data.claims)
    .map_err(|error| error.to_string())
}

#[tokio::test]
async fn every_forwarded_request_carries_an_assertion_for_its_route() {
    let gateway = gateway("[identity]\nassertion = true\n").await;
    let token = gateway.login("asa").await;
    let first = gateway.get_with_token("/api/x", &token, &[]).await;
    assert_eq!(first.status, 200);
    let assertion = first.upstream_header("x-wxgate-assertion");
    assert_eq!(assertion.len(), 1, "exactly one assertion");
    let assertion = &assertion[0];
    let header = header_of(assertion);
    assert_eq!(header["typ"], ASSERTION_TYPE);
    assert_eq!(header["alg"], "HS256");
    let claims = verify_hs256(assertion, "/api").expect("verifies for /api");
    assert_eq!(claims["sub"], "oMock_asa");
    assert_eq!(claims["unionid"], "uMock_asa");
    assert_eq!(claims["appid"], APPID);
    assert_eq!(claims["app"], "default");
    assert_eq!(claims["platform"], "wechat");
    assert_eq!(claims["iss"], ISSUER);
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 60);
    assert!(claims["exp"].as_u64().unwrap() <= payload(&token)["exp"].as_u64().unwrap());

    // Minted once per token and route, not per request: a second later, the same one (`iat`
    // would have moved).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = gateway.get_with_token("/api/y", &token, &[]).await;
    assert_eq!(
        second.upstream_header("x-wxgate-assertion"),
        std::slice::from_ref(assertion)
    );
    // Another route: its own audience.
    let orders = gateway.get_with_token("/orders/1", &token, &[]).await;
    let for_orders = &orders.upstream_header("x-wxgate-assertion")[0];
    assert!(verify_hs256(for_orders, "orders-service").is_ok());
    assert!(
        verify_hs256(for_orders, "/api").is_err(),
        "an assertion for one route's audience is refused by another's backend"
    );
    assert!(verify_hs256(assertion, "orders-service").is_err());

    // Neither is a client token, and a client token is not an assertion.
    for presented in [assertion, for_orders] {
        let refused = gateway.get_with_token("/api/x", presented, &[]).await;
        assert_eq!(refused.status, 401, "an assertion used as a client token");
        let message = refused.json()["message"].as_str().unwrap().to_string();
        assert!(message.contains("not a client token"), "{message}");
    }
    assert!(verify_hs256(&token, "/api").is_err());

    // Spoofed copies never reach the upstream, in any spelling; none without an identity.
    let spoofed = [
        ("X-Wxgate-Assertion", "forged"),
        ("x_wxgate_assertion", "forged"),
    ];
    let public = gateway.get("/public/x", &spoofed).await;
    assert!(public.upstream_header("x-wxgate-assertion").is_empty());
    assert!(public.upstream_header("x_wxgate_assertion").is_empty());
    let with_token = gateway.get_with_token("/api/x", &token, &spoofed).await;
    assert_eq!(
        with_token.upstream_header("x-wxgate-assertion"),
        std::slice::from_ref(assertion)
    );
    assert!(with_token.upstream_header("x_wxgate_assertion").is_empty());
}

#[tokio::test]
async fn assertions_are_off_by_default_and_spoofs_are_still_stripped() {
    let gateway = gateway("").await;
    let token = gateway.login("bo").await;
    let forged = [("X-Wxgate-Assertion", "forged")];
    let answer = gateway.get_with_token("/api/x", &token, &forged).await;
    assert!(answer.upstream_header("x-wxgate-assertion").is_empty());
    assert_eq!(answer.upstream_header("x-openid"), ["oMock_bo"]);
}

#[tokio::test]
async fn an_assertion_never_outlives_the_client_token() {
    let gateway = Harness::start_with(Setup {
        jwt: format!("[jwt]\nsecret = \"{JWT_SECRET}\"\nissuer = \"{ISSUER}\"\nttl_secs = 20\n"),
        sections: "[identity]\nassertion = true\nassertion_ttl_secs = 600\n".into(),
        ..Setup::default()
    })
    .await;
    let token = gateway.login("cy").await;
    let answer = gateway.get_with_token("/api/x", &token, &[]).await;
    let claims = payload(&answer.upstream_header("x-wxgate-assertion")[0]);
    assert_eq!(claims["exp"], payload(&token)["exp"]);
    assert!(claims["exp"].as_u64().unwrap() <= now() + 20);
}

#[tokio::test]
async fn the_clients_token_is_kept_from_upstreams_that_ask_for_it() {
    let gateway = gateway("[identity]\nassertion = true\n").await;
    let token = gateway.login("dee").await;
    let kept = gateway.get_with_token("/orders/1", &token, &[]).await;
    assert_eq!(kept.status, 200);
    assert!(
        kept.upstream_header("authorization").is_empty(),
        "forward_authorization = false"
    );
    assert_eq!(kept.upstream_header("x-openid"), ["oMock_dee"]);
    let default = gateway.get_with_token("/api/1", &token, &[]).await;
    assert_eq!(
        default.upstream_header("authorization"),
        [format!("Bearer {token}")],
        "today's behaviour stays the default"
    );
}

#[tokio::test]
async fn configured_header_names_are_set_and_client_copies_stripped() {
    let gateway = Harness::start_with(Setup {
        sections:
            "[identity.headers]\nopenid = \"X-User\"\nunionid = \"X-Union\"\napp = \"X-App\"\n"
                .into(),
        apps: vec![("shop", "wxshop0000000001", "shop-secret")],
        ..Setup::default()
    })
    .await;
    let login = crate::common::request(
        gateway.addr,
        "POST",
        "/login/shop",
        &[("Content-Type", "application/json")],
        br#"{"code":"eve.1"}"#,
    )
    .await;
    let token = login.json()["token"].as_str().unwrap().to_string();
    let spoofed = [
        ("x_user", "forged"),
        ("X-USER", "forged"),
        ("x-app", "forged"),
        ("X_App", "forged"),
        ("x-union", "forged"),
        ("X-OpenId", "forged"),
    ];
    let answer = gateway.get_with_token("/api/x", &token, &spoofed).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.upstream_header("x-user"), ["oMock_eve"]);
    assert_eq!(answer.upstream_header("x-union"), ["uMock_eve"]);
    assert_eq!(answer.upstream_header("x-app"), ["shop"]);
    assert_eq!(answer.upstream_header("x-platform"), ["wechat"]);
    for stripped in ["x_user", "x_app", "x-openid"] {
        assert!(answer.upstream_header(stripped).is_empty(), "{stripped}");
    }
    let public = gateway.get("/public/x", &spoofed).await;
    for stripped in ["x-user", "x_user", "x-app", "x_app", "x-union", "x-openid"] {
        assert!(public.upstream_header(stripped).is_empty(), "{stripped}");
    }
}

#[tokio::test]
async fn forward_auth_answers_carry_the_assertion_for_the_judged_route() {
    let gateway = Harness::start_with(Setup {
        sections: "[identity]\nassertion = true\n".into(),
        extra_routes: routes(),
        server: "trusted_proxies = [\"127.0.0.1/32\"]".into(),
        ..Setup::default()
    })
    .await;
    let token = gateway.login("fay").await;
    let checked = gateway
        .get_with_token("/auth", &token, &[("X-Original-URI", "/orders/9")])
        .await;
    assert_eq!(checked.status, 200, "{}", checked.text());
    let assertion = checked.header("x-wxgate-assertion").expect("an assertion");
    let claims = verify_hs256(assertion, "orders-service").expect("for the judged route");
    assert_eq!(claims["sub"], "oMock_fay");
}

#[tokio::test]
async fn es256_assertions_verify_with_pyjwt_against_the_jwks() {
    if !external::python_modules("jwt, cryptography", "pip install 'pyjwt[crypto]'") {
        return;
    }
    let (jwt, _) = crate::common::tokens::es256_jwt_section(ISSUER);
    let gateway = Harness::start_with(Setup {
        jwt,
        sections: "[identity]\nassertion = true\n".into(),
        ..Setup::default()
    })
    .await;
    let token = gateway.login("gil").await;
    let answer = gateway.get_with_token("/api/x", &token, &[]).await;
    let assertion = answer.upstream_header("x-wxgate-assertion")[0].clone();
    assert_eq!(header_of(&assertion)["kid"], header_of(&token)["kid"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/pyjwt_verify.py");
    let jwks = format!("http://{}/.well-known/jwks.json", gateway.addr);
    let output = tokio::process::Command::new("python3")
        .args([
            script,
            &jwks,
            ISSUER,
            "--assertion",
            "/api",
            &assertion,
            &token,
        ])
        .output()
        .await
        .expect("run python3");
    let verdicts = String::from_utf8_lossy(&output.stdout);
    let verdicts: Vec<&str> = verdicts.lines().collect();
    assert_eq!(
        verdicts,
        ["oMock_gil", "REJECTED not an assertion"],
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_websocket_upgrade_keeps_the_token_from_the_upstream_too() {
    let (ws_addr, _) = crate::common::ws::ws_echo_upstream().await;
    let gateway = Harness::start_with(Setup {
        extra_routes: format!(
            "[[routes]]\nprefix = \"/ws\"\nupstream = \"http://{ws_addr}\"\nauth = \"required\"\n\
             forward_authorization = false\n"
        ),
        sections: "[websocket]\ntoken_query_param = \"access_token\"\n".into(),
        ..Setup::default()
    })
    .await;
    let token = gateway.login("hal").await;
    let bearer = format!("Bearer {token}");
    let (_, seen) = crate::websocket::connect(&gateway, "/ws/chat", &[("Authorization", &bearer)])
        .await
        .unwrap();
    assert_eq!(seen["authorization"], serde_json::json!([]));
    assert_eq!(seen["x-openid"], serde_json::json!(["oMock_hal"]));
    let (_, seen) = crate::websocket::connect(
        &gateway,
        &format!("/ws/chat?access_token={token}&room=1"),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(seen["uri"], "/ws/chat?room=1", "no query token either");
    assert_eq!(seen["authorization"], serde_json::json!([]));
}
