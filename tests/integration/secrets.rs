//! Secrets stay inside the gateway: the AppSecret, the JWT secret, WeChat's session_keys and
//! access_tokens never appear in an answer (success or error, body or header), in /metrics or in
//! the health endpoints. (Logs at every level: `tests/logs.rs`; Debug output and `wxgate check`:
//! unit tests in `config`, `token`, `session` and `wechat`, and `cli.rs`.)

use crate::common::tokens::{claims, hs256};
use crate::common::{request, Harness, Response, Setup, APP_SECRET, JWT_SECRET};
use wxgate::mock_wechat::SAMPLE_SESSION_KEY;

/// Everything a client or a scraper could read of a response.
fn readable(response: &Response) -> String {
    let headers: String = response
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\n"))
        .collect();
    format!("{} {headers}{}\n", response.status, response.text())
}

async fn post_json(gateway: &Harness, path: &str, token: &str, body: &str) -> Response {
    let bearer = format!("Bearer {token}");
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    request(gateway.addr, "POST", path, &headers, body.as_bytes()).await
}

/// Catches a build that puts a secret into an error message (a WeChat URL with the AppSecret in
/// it, a session_key in a decrypt error), a response header, or a metric label.
#[tokio::test]
async fn no_secret_or_session_key_appears_in_answers_or_metrics() {
    let gateway = Harness::start().await;
    let mut seen = String::new();

    let login = gateway.login_response("samplekey").await;
    assert_eq!(login.status, 200);
    seen += &readable(&login);
    let token = login.json()["token"].as_str().unwrap().to_string();
    for code in ["samplekey", "mock-busy", "mock-invalid", "mock-blocked"] {
        seen += &readable(&gateway.login_response(code).await);
    }
    for body in [
        r#"{"encryptedData":"7LFQ4hyYHboQffP7p3keAw==","iv":"AAECAwQFBgcICQoLDA0ODw=="}"#,
        r#"{"encryptedData":"%%%","iv":"short"}"#,
        r#"{"rawData":"{}","signature":"0000000000000000000000000000000000000000"}"#,
        "not json",
    ] {
        let response = post_json(&gateway, "/wx/decrypt", &token, body).await;
        assert_eq!(response.status, 400, "{body}");
        seen += &readable(&response);
    }
    let phone = post_json(&gateway, "/wx/phone", &token, r#"{"code":"phone-ok"}"#).await;
    assert_eq!(phone.status, 200, "{}", phone.text());
    seen += &readable(&phone);
    seen += &readable(&post_json(&gateway, "/wx/phone", &token, r#"{"code":""}"#).await);
    seen += &readable(&gateway.post_with_token("/refresh", &token).await);
    seen += &readable(&gateway.get_with_token("/api/x", &token, &[]).await);
    seen += &readable(
        &gateway
            .get_with_token("/api/x", &hs256(&claims("")), &[])
            .await,
    );

    // Wrong app credentials: the gateway's 502 must name the mistake, not echo the secret.
    let misconfigured = Harness::start_with(Setup {
        app_secret: "wrong-app-secret-value".into(),
        ..Setup::default()
    })
    .await;
    let refused = misconfigured.login_response("carol.1").await;
    assert_eq!(refused.status, 502);
    seen += &readable(&refused);

    for admin in [gateway.admin_addr, misconfigured.admin_addr] {
        for path in ["/metrics", "/healthz", "/readyz"] {
            let response = request(admin, "GET", path, &[], b"").await;
            assert_eq!(response.status, 200, "{path}");
            seen += &readable(&response);
        }
    }
    assert!(seen.contains("wxgate_login"), "the scrape was read");

    let mut secrets = vec![
        APP_SECRET.to_string(),
        "wrong-app-secret-value".to_string(),
        JWT_SECRET.to_string(),
        SAMPLE_SESSION_KEY.to_string(),
        "mock-access-token".to_string(),
    ];
    secrets.extend(gateway.wechat.issued_session_keys());
    assert!(!gateway.wechat.issued_session_keys().is_empty());
    for secret in secrets {
        assert!(!seen.contains(&secret), "{secret:?} was answered:\n{seen}");
    }
}
