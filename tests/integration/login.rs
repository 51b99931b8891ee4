//! The login endpoint over real sockets: success in both encodings, every WeChat error class, and
//! bad requests that never reach WeChat.

use crate::common::{request, tokens, Harness, Setup};

/// Extra request header lines.
type Headers<'a> = [(&'a str, &'a str)];

#[tokio::test]
async fn json_login_returns_a_bearer_token_and_keeps_the_session_key() {
    let gateway = Harness::start().await;
    let response = gateway.login_response("alice.1").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("cache-control"), Some("no-store"));
    let json = response.json();
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["expires_in"], 7200);
    assert_eq!(json["openid"], "oMock_alice");
    assert_eq!(json["unionid"], "uMock_alice");
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(json["platform"], "wechat");
    assert_eq!(
        keys.len(),
        6,
        "only token, token_type, expires_in, openid, unionid, platform: {keys:?}"
    );

    let token = json["token"].as_str().unwrap();
    let claims = tokens::payload(token);
    assert_eq!(claims["sub"], "oMock_alice");
    assert_eq!(claims["unionid"], "uMock_alice");
    assert_eq!(claims["platform"], "wechat");
    assert_eq!(claims["appid"], crate::common::APPID);
    assert_eq!(claims["iss"], crate::common::ISSUER);
    assert!(claims["jti"].as_str().is_some_and(|jti| jti.len() == 32));
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        7200
    );

    let session_key = &gateway.wechat.issued_session_keys()[0];
    assert!(!response.text().contains(session_key.as_str()));
    assert!(!claims.to_string().contains(session_key.as_str()));

    let proxied = gateway.get_with_token("/api/me", token, &[]).await;
    assert_eq!(proxied.status, 200);
    assert_eq!(proxied.upstream_header("x-openid"), ["oMock_alice"]);
    assert_eq!(proxied.upstream_header("x-unionid"), ["uMock_alice"]);
}

#[tokio::test]
async fn form_encoded_login_works_and_unionid_is_left_out_when_unknown() {
    let gateway = Harness::start().await;
    let response = request(
        gateway.addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"code=nounion_bob.1",
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let json = response.json();
    assert_eq!(json["openid"], "oMock_nounion_bob");
    assert!(json.get("unionid").is_none());
    assert!(tokens::payload(json["token"].as_str().unwrap())
        .get("unionid")
        .is_none());
}

#[tokio::test]
async fn each_wechat_error_class_maps_to_its_status_and_code() {
    let gateway = Harness::start().await;
    let cases = [
        ("mock-invalid", 401, "invalid_code"),
        ("mock-blocked", 403, "user_blocked"),
        ("mock-ratelimit", 429, "rate_limited"),
        ("mock-busy", 502, "wechat_busy"),
        // -1 while WeChat spent the code: the retry's 40163 is not the user's fault.
        ("mock-busy-spent", 503, "wechat_busy"),
        ("mock-garbage", 502, "wechat_bad_answer"),
    ];
    for (code, status, error) in cases {
        let response = gateway.login_response(code).await;
        assert_eq!(response.status, status, "{code}: {}", response.text());
        assert_eq!(response.error_code(), error, "{code}");
    }
    assert_eq!(
        gateway
            .login_response("mock-ratelimit")
            .await
            .header("retry-after"),
        Some("60")
    );
}

#[tokio::test]
async fn a_reused_code_is_401_code_already_used() {
    let gateway = Harness::start().await;
    gateway.login("carol.1").await;
    let response = gateway.login_response("carol.1").await;
    assert_eq!(response.status, 401);
    assert_eq!(response.error_code(), "code_already_used");
}

#[tokio::test]
async fn wrong_app_credentials_are_a_502_naming_the_misconfiguration() {
    let gateway = Harness::start_with(Setup {
        app_secret: "not-the-app-secret".into(),
        ..Setup::default()
    })
    .await;
    let response = gateway.login_response("dave.1").await;
    assert_eq!(response.status, 502);
    assert_eq!(response.error_code(), "wechat_config_rejected");
}

#[tokio::test]
async fn unreachable_wechat_is_502_and_slow_wechat_is_504() {
    let closed = crate::common::closed_port().await;
    let gateway = Harness::start_with(Setup {
        api_base: Some(format!("http://{closed}")),
        ..Setup::default()
    })
    .await;
    let response = gateway.login_response("erin.1").await;
    assert_eq!(response.status, 502);
    assert_eq!(response.error_code(), "wechat_unreachable");

    let gateway = Harness::start_with(Setup {
        wechat: "timeout_ms = 300".into(),
        ..Setup::default()
    })
    .await;
    let started = std::time::Instant::now();
    let response = gateway.login_response("mock-slow").await;
    assert_eq!(response.status, 504);
    assert_eq!(response.error_code(), "wechat_timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn bad_login_requests_are_400_and_never_reach_wechat() {
    let gateway = Harness::start().await;
    let json = [("Content-Type", "application/json")];
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let cases: [(&Headers, &[u8], &str); 7] = [
        (&json, b"{}", "missing_code"),
        (&json, br#"{"code":""}"#, "missing_code"),
        (&form, b"other=1", "missing_code"),
        (&json, b"", "invalid_request"),
        (&json, b"{\"code\":", "invalid_request"),
        (&json, br#"{"code":42}"#, "invalid_request"),
        (&json, b"[\"code\"]", "invalid_request"),
    ];
    for (headers, body, error) in cases {
        let response = request(gateway.addr, "POST", "/login", headers, body).await;
        assert_eq!(response.status, 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(
            response.error_code(),
            error,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(gateway.wechat.calls(), 0);
}

#[tokio::test]
async fn login_only_accepts_post() {
    let gateway = Harness::start().await;
    for method in ["GET", "PUT", "DELETE", "HEAD"] {
        let response = request(gateway.addr, method, "/login", &[], b"").await;
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(response.header("allow"), Some("POST"));
    }
    assert_eq!(gateway.wechat.calls(), 0);
}

/// Catches a build that buffers a login body without a limit.
#[tokio::test]
async fn an_oversized_login_body_is_413_without_calling_wechat() {
    let gateway = Harness::start().await;
    let body = format!(r#"{{"code":"frank.1","pad":"{}"}}"#, "x".repeat(70_000));
    let response = request(
        gateway.addr,
        "POST",
        "/login",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(response.status, 413);
    assert_eq!(response.error_code(), "payload_too_large");
    assert_eq!(gateway.wechat.calls(), 0);
}

/// `server.endpoint_max_in_flight`: past it, a login is refused at once with 503 `endpoint_busy`
/// and never reaches WeChat; the JWKS and proxied requests do not count; the place is free again
/// once the slow login is answered.
#[tokio::test]
async fn past_endpoint_max_in_flight_logins_are_refused_at_once() {
    let gateway = Harness::start_with(Setup {
        server: "endpoint_max_in_flight = 1".into(),
        wechat: "timeout_ms = 1500".into(),
        ..Setup::default()
    })
    .await;
    let token = tokens::hs256(&tokens::claims("o-busy"));
    let slow = gateway.login_response("mock-slow");
    let meanwhile = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let started = std::time::Instant::now();
        let busy = gateway.login_response("bob.1").await;
        let took = started.elapsed();
        let jwks = gateway.get("/.well-known/jwks.json", &[]).await;
        let proxied = gateway.get_with_token("/api/x", &token, &[]).await;
        (busy, took, jwks, proxied)
    };
    let (slow, (busy, took, jwks, proxied)) = tokio::join!(slow, meanwhile);
    assert_eq!(slow.error_code(), "wechat_timeout");
    assert_eq!(busy.status, 503);
    assert_eq!(busy.error_code(), "endpoint_busy");
    assert_eq!(busy.header("retry-after"), Some("1"));
    assert!(
        took < std::time::Duration::from_millis(500),
        "refused at once: {took:?}"
    );
    assert_eq!((jwks.status, proxied.status), (200, 200));
    // WeChat never saw bob.1 (a code works once): it logs in now that the place is free.
    assert_eq!(gateway.login_response("bob.1").await.status, 200);
}
