//! Smaller request-head defects (issue 27, defect 7): a fragment in the target, a malformed chunked
//! body, chunked applied twice, an `Authorization` that is not a Bearer credential, and the host
//! a request names (HTTP/2 `host` against `:authority`, an absolute-form target against `Host`).

use crate::common::raw_h2::{self, H2Outcome};
use crate::common::tokens::{claims, hs256};
use crate::common::{request, send_raw, Harness, Setup};

/// Keeps SECURITY.md true: the HTTP parser drops a `#` fragment from the target, and the path the
/// route is judged on is the path forwarded, so `#/../../api/x` cannot reach `/api`.
#[tokio::test]
async fn a_fragment_is_dropped_and_the_route_judged_on_what_is_forwarded() {
    let gateway = Harness::start().await;
    let public = gateway.get("/public/x#/../../api/x", &[]).await;
    assert_eq!(public.status, 200);
    assert_eq!(public.upstream_uri(), "/public/x");
    let protected = gateway.get("/api/x#/../../public/x", &[]).await;
    assert_eq!(protected.status, 401, "judged as /api/x");
    assert_eq!(gateway.echo.requests(), 1);
}

/// Catches a build that answers a client's malformed chunked body with 502 (the upstream's fault).
#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_400() {
    let gateway = Harness::start().await;
    let response = send_raw(
        gateway.addr,
        b"POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\nzz\r\nnot a chunk size\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 400, "{}", response.text());
    assert_eq!(response.error_code(), "invalid_request_body");
}

/// Catches a build that accepts chunked applied twice (two headers, or one listing it twice).
#[tokio::test]
async fn chunked_applied_twice_is_400_and_reaches_no_upstream() {
    let gateway = Harness::start().await;
    for encoding in [
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked, chunked\r\n",
    ] {
        let request = format!(
            "POST /public/x HTTP/1.1\r\nHost: a\r\n{encoding}Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let response = send_raw(gateway.addr, request.as_bytes()).await;
        assert_eq!(response.status, 400, "{encoding:?}");
    }
    assert_eq!(gateway.echo.requests(), 0);
}

/// Catches a build that treats a malformed or foreign `Authorization` as no token on an optional
/// route and forwards it: 401, and nothing reaches the upstream. A route without auth forwards it.
#[tokio::test]
async fn an_authorization_that_is_not_a_bearer_credential_is_401() {
    let gateway = Harness::start().await;
    let token = hs256(&claims("o-user"));
    for value in [
        format!("Bearer\t{token}"),
        format!("Bearer{token}"),
        "Basic dXNlcjpwYXNz".to_string(),
    ] {
        for path in ["/opt/x", "/api/x"] {
            let response = gateway.get(path, &[("Authorization", &value)]).await;
            assert_eq!(response.status, 401, "{path} {value:?}");
            assert_eq!(response.error_code(), "invalid_token");
        }
    }
    assert_eq!(gateway.echo.requests(), 0);
    let public = gateway
        .get("/public/x", &[("Authorization", "Basic dXNlcjpwYXNz")])
        .await;
    assert_eq!(
        public.upstream_header("authorization"),
        ["Basic dXNlcjpwYXNz"]
    );
}

/// Catches a build where `Host` wins over the authority the request names: over HTTP/2 a `host`
/// that disagrees with `:authority` is refused; an absolute-form target's authority is the one
/// forwarded (X-Forwarded-Host), whatever `Host` says.
#[tokio::test]
async fn the_authority_of_the_target_wins_over_host() {
    let gateway = Harness::start_with(Setup {
        server: "h2c = true".into(),
        ..Setup::default()
    })
    .await;
    let base = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "gateway.test"),
        (":path", "/public/x"),
    ];
    let mut disagreeing = base.to_vec();
    disagreeing.push(("host", "evil.example"));
    let H2Outcome::Answered(body) = raw_h2::exchange(gateway.addr, &disagreeing, b"").await else {
        panic!("answered with an error");
    };
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"], "invalid_request");
    assert_eq!(gateway.echo.requests(), 0);
    let mut agreeing = base.to_vec();
    agreeing.push(("host", "GATEWAY.test"));
    let H2Outcome::Answered(body) = raw_h2::exchange(gateway.addr, &agreeing, b"").await else {
        panic!("answered");
    };
    let echoed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        echoed["headers"]["x-forwarded-host"],
        serde_json::json!(["gateway.test"])
    );

    let absolute = request(gateway.addr, "GET", "http://api.example/public/x", &[], b"").await;
    assert_eq!(absolute.status, 200);
    assert_eq!(
        absolute.upstream_header("x-forwarded-host"),
        ["api.example"]
    );
}
