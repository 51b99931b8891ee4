//! `server.trusted_proxies`: what only a trusted proxy may tell the gateway. From any other peer,
//! `X-Forwarded-*` and `X-Original-*` are ignored: forward-auth judges the request as a protected
//! path and the proxy writes the forwarding headers from the connection alone.

use crate::common::{request, Harness, Setup};

/// Trusts a network the test client (127.0.0.1) is not in.
async fn with_loopback_untrusted() -> Harness {
    Harness::start_with(Setup {
        server: "trusted_proxies = [\"10.0.0.0/8\", \"fd00::/8\"]".into(),
        ..Setup::default()
    })
    .await
}

/// Catches forward-auth trusting `X-Forwarded-Uri` (or the Envoy path) from any peer: a client
/// calling the endpoint directly must not be able to make a protected path look public.
#[tokio::test]
async fn x_forwarded_uri_from_an_untrusted_peer_is_ignored() {
    let gateway = with_loopback_untrusted().await;
    for (target, headers) in [
        ("/auth", vec![("X-Forwarded-Uri", "/public/x")]),
        ("/auth", vec![("X-Original-URI", "/public/x")]),
        ("/auth", vec![("X-Original-URL", "http://h/public/x")]),
        ("/auth/public/x", vec![]),
    ] {
        let response = request(gateway.addr, "GET", target, &headers, b"").await;
        assert_eq!(response.status, 401, "{target} {headers:?}");
        assert_eq!(response.error_code(), "missing_token");
    }
    // Judged as protected, a valid token still passes, with the right identity.
    let token = gateway.login("erin").await;
    let bearer = format!("Bearer {token}");
    let headers = [("X-Forwarded-Uri", "/public/x"), ("Authorization", &bearer)];
    let response = request(gateway.addr, "GET", "/auth", &headers, b"").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-openid"), Some("oMock_erin"));
    assert_eq!(response.json()["path"], serde_json::Value::Null);
}

/// Catches a proxy that keeps a client's `X-Forwarded-*` when the client is not a trusted proxy.
#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_replaced() {
    let gateway = with_loopback_untrusted().await;
    let response = gateway
        .get(
            "/public/x",
            &[
                ("X-Forwarded-For", "203.0.113.9"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "evil.example"),
            ],
        )
        .await;
    assert_eq!(response.upstream_header("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(response.upstream_header("x-forwarded-proto"), ["http"]);
    assert_eq!(
        response.upstream_header("x-forwarded-host"),
        ["gateway.test"]
    );
}

/// Catches a gateway that drops what a trusted proxy said, or that keeps identity and path
/// override headers just because the proxy is trusted.
#[tokio::test]
async fn a_trusted_proxy_extends_the_chain_and_keeps_its_scheme_and_host() {
    let gateway = Harness::start_with(Setup {
        server: "trusted_proxies = [\"127.0.0.0/8\"]".into(),
        ..Setup::default()
    })
    .await;
    let response = gateway
        .get(
            "/public/x",
            &[
                ("X-Forwarded-For", "203.0.113.9, 10.1.1.1"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "shop.example"),
                ("X-OpenId", "oEvil"),
                ("X-Original-URL", "/api/secret"),
                ("X-Real-IP", "1.1.1.1"),
            ],
        )
        .await;
    assert_eq!(
        response.upstream_header("x-forwarded-for"),
        ["203.0.113.9, 10.1.1.1, 127.0.0.1"]
    );
    assert_eq!(response.upstream_header("x-forwarded-proto"), ["https"]);
    assert_eq!(
        response.upstream_header("x-forwarded-host"),
        ["shop.example"]
    );
    for stripped in ["x-openid", "x-original-url", "x-real-ip"] {
        assert!(response.upstream_header(stripped).is_empty(), "{stripped}");
    }
}
