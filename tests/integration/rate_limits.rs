//! Rate limits: logins per client IP (token bucket; the client IP from X-Forwarded-For only behind
//! a trusted proxy) and per openid on a route; 429 with Retry-After once the bucket is empty, and
//! WeChat never asked for a refused login.

use crate::common::{Harness, Setup};

/// Two logins at once, then one every 10 seconds.
const LOGIN_LIMIT: &str = "[login.rate_limit]\nper_minute = 6\nburst = 2\n";

async fn login_from(gateway: &Harness, code: &str, forwarded_for: &str) -> crate::common::Response {
    let body = serde_json::json!({ "code": code }).to_string();
    crate::common::request(
        gateway.addr,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/json"),
            ("X-Forwarded-For", forwarded_for),
        ],
        body.as_bytes(),
    )
    .await
}

/// Catches a build that trusts `X-Forwarded-For` from any peer for the login limit, or calls
/// WeChat before the limit.
#[tokio::test]
async fn logins_past_the_burst_get_429_with_retry_after_and_never_reach_wechat() {
    let gateway = Harness::start_with(Setup {
        sections: LOGIN_LIMIT.into(),
        ..Setup::default()
    })
    .await;
    let token = gateway.login("ann.1").await;
    assert_eq!(gateway.login_response("ann.2").await.status, 200);
    let refused = gateway.login_response("ann.3").await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.json()["error"], "rate_limited");
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    assert_eq!(
        gateway.wechat.calls(),
        2,
        "the refused login never reached WeChat"
    );
    // A client pretending to be someone else through X-Forwarded-For gains nothing: the peer is
    // not a trusted proxy.
    assert_eq!(
        login_from(&gateway, "ann.4", "203.0.113.9").await.status,
        429
    );
    // Tokens already issued keep working: only logins are limited.
    assert_eq!(
        gateway.get_with_token("/api/x", &token, &[]).await.status,
        200
    );
}

/// Catches a build that takes the left-most `X-Forwarded-For` entry as the client (anyone can
/// write it): the nearest untrusted address counts.
#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let gateway = Harness::start_with(Setup {
        server: "trusted_proxies = [\"127.0.0.1\"]".into(),
        sections: LOGIN_LIMIT.into(),
        ..Setup::default()
    })
    .await;
    let first = "198.51.100.1";
    assert_eq!(login_from(&gateway, "p.1", first).await.status, 200);
    assert_eq!(login_from(&gateway, "p.2", first).await.status, 200);
    assert_eq!(login_from(&gateway, "p.3", first).await.status, 429);
    // Another client behind the same proxy is not held back by the first one...
    let second = "198.51.100.2";
    assert_eq!(login_from(&gateway, "q.1", second).await.status, 200);
    // ...but a spoofed left-most entry does not make the first client someone new.
    let spoofed = format!("10.9.9.9, {first}");
    assert_eq!(login_from(&gateway, "p.4", &spoofed).await.status, 429);
}

#[tokio::test]
async fn a_route_limit_applies_per_openid() {
    let gateway = Harness::start_with(Setup {
        extra_routes: "[[routes]]\nprefix = \"/limited\"\nupstream = \"http://{echo}\"\n\
                       auth = \"required\"\nrate_limit = { per_minute = 60, burst = 2 }\n"
            .into(),
        ..Setup::default()
    })
    .await;
    let alice = gateway.login("alice.1").await;
    let bob = gateway.login("bob.1").await;
    for _ in 0..2 {
        assert_eq!(
            gateway
                .get_with_token("/limited/x", &alice, &[])
                .await
                .status,
            200
        );
    }
    let refused = gateway.get_with_token("/limited/x", &alice, &[]).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(
        gateway.get_with_token("/limited/x", &bob, &[]).await.status,
        200
    );
    // Routes without a limit are not affected.
    assert_eq!(
        gateway.get_with_token("/api/x", &alice, &[]).await.status,
        200
    );
    // An unauthenticated request is refused for its token before any bucket is touched.
    assert_eq!(gateway.get("/limited/x", &[]).await.status, 401);
}
