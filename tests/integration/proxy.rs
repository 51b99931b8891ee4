//! Forwarding over real sockets: identity headers, hop-by-hop rules, what passes both ways,
//! bodies, limits and upstream failures, asserting what the upstream actually received.

use crate::common::tokens::{claims, hs256};
use crate::common::{request, send_raw, Harness, Setup};
use sha2::{Digest, Sha256};

const SPOOFS: [(&str, &str); 6] = [
    ("X-OpenId", "o-spoofed"),
    ("x-openid", "o-spoofed-2"),
    ("X_OpenId", "o-spoofed-3"),
    ("X-OPENID", "o-spoofed-4"),
    ("X-UnionId", "u-spoofed"),
    ("x_unionid", "u-spoofed-2"),
];

/// Every header name the upstream received that spells an identity header.
fn identity_headers(response: &crate::common::Response) -> Vec<(String, Vec<String>)> {
    let json = response.json();
    json["headers"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| {
            let folded = name.replace('_', "-");
            folded == "x-openid" || folded == "x-unionid"
        })
        .map(|(name, values)| {
            let values = values
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string());
            (name.clone(), values.collect())
        })
        .collect()
}

/// Catches a build that strips identity headers only on some auth modes, or compares names
/// case-sensitively or without folding `_` to `-`: spoofs in every spelling, duplicated, on
/// required, optional and public routes.
#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream_on_any_auth_mode() {
    let gateway = Harness::start().await;
    let token = gateway.login("alice.1").await;
    let real = |name: &str, value: &str| (name.to_string(), vec![value.to_string()]);

    // required, valid token: only the gateway's values
    let response = gateway.get_with_token("/api/x", &token, &SPOOFS).await;
    assert_eq!(
        identity_headers(&response),
        [
            real("x-openid", "oMock_alice"),
            real("x-unionid", "uMock_alice")
        ]
    );
    // optional, valid token: the same
    let response = gateway.get_with_token("/opt/x", &token, &SPOOFS).await;
    assert_eq!(
        identity_headers(&response),
        [
            real("x-openid", "oMock_alice"),
            real("x-unionid", "uMock_alice")
        ]
    );
    // optional, no token: none at all
    let response = gateway.get("/opt/x", &SPOOFS).await;
    assert_eq!(response.status, 200);
    assert!(identity_headers(&response).is_empty());
    // none, with or without a token: none at all
    let response = gateway.get_with_token("/public/x", &token, &SPOOFS).await;
    assert_eq!(response.status, 200);
    assert!(identity_headers(&response).is_empty());
    let response = gateway.get("/public/x", &SPOOFS).await;
    assert!(identity_headers(&response).is_empty());
}

/// Catches a build that strips only the headers it is about to set: a token without a unionid
/// must not let a client-supplied X-UnionId through.
#[tokio::test]
async fn a_spoofed_unionid_is_dropped_when_the_token_has_none() {
    let gateway = Harness::start().await;
    let token = hs256(&claims("o-plain"));
    let response = gateway.get_with_token("/api/x", &token, &SPOOFS).await;
    assert_eq!(
        identity_headers(&response),
        [("x-openid".to_string(), vec!["o-plain".to_string()])]
    );
}

/// Catches a build that applies `Connection:`-listed removal after setting identity and
/// forwarding headers (the oauth2-proxy/Traefik hop-by-hop abuse): the real values survive.
#[tokio::test]
async fn naming_identity_headers_in_connection_cannot_strip_them() {
    let gateway = Harness::start().await;
    let token = gateway.login("bob.1").await;
    let response = gateway
        .get_with_token(
            "/api/x",
            &token,
            &[(
                "Connection",
                "close, X-OpenId, X-UnionId, X-Forwarded-For, X-Forwarded-Proto",
            )],
        )
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.upstream_header("x-openid"), ["oMock_bob"]);
    assert_eq!(response.upstream_header("x-unionid"), ["uMock_bob"]);
    assert_eq!(response.upstream_header("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(response.upstream_header("x-forwarded-proto"), ["http"]);
}

/// Catches a build that authenticates after hop-by-hop removal dropped `Authorization`, then
/// forwards as anonymous: the request is refused instead.
#[tokio::test]
async fn naming_authorization_in_connection_fails_closed() {
    let gateway = Harness::start().await;
    let token = gateway.login("bob.2").await;
    let response = gateway
        .get_with_token("/api/x", &token, &[("Connection", "Authorization")])
        .await;
    assert_eq!(response.status, 401);
    assert_eq!(gateway.echo.requests(), 0);
}

/// Catches a build that forwards hop-by-hop headers (RFC 9110 7.6.1) or headers the client listed
/// in `Connection:`, or drops end-to-end ones.
#[tokio::test]
async fn hop_by_hop_headers_are_dropped_and_end_to_end_ones_pass() {
    let gateway = Harness::start().await;
    let response = gateway
        .get(
            "/public/x?a=1&b=%20two",
            &[
                ("Connection", "X-Drop-Me"),
                ("X-Drop-Me", "1"),
                ("Keep-Alive", "timeout=5"),
                ("TE", "trailers"),
                ("Upgrade", "h2c"),
                ("Proxy-Authorization", "Basic abc"),
                ("X-Custom", "kept"),
                ("Accept", "application/json"),
            ],
        )
        .await;
    assert_eq!(response.status, 200);
    let json = response.json();
    let received: Vec<&str> = json["headers"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for dropped in [
        "connection",
        "x-drop-me",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
    ] {
        assert!(
            !received.contains(&dropped),
            "{dropped} reached the upstream: {received:?}"
        );
    }
    assert_eq!(response.upstream_header("x-custom"), ["kept"]);
    assert_eq!(response.upstream_header("accept"), ["application/json"]);
    assert_eq!(response.upstream_uri(), "/public/x?a=1&b=%20two");
    assert_eq!(json["method"], "GET");
    // end-to-end response headers come back
    assert_eq!(response.header("content-type"), Some("application/json"));
}

/// Catches a build that keeps a direct client's `X-Forwarded-*`, `Forwarded`, `X-Real-IP` or
/// `X-Original-*` headers instead of writing its own.
#[tokio::test]
async fn forwarding_headers_are_the_gateways_own() {
    let gateway = Harness::start().await;
    let response = gateway
        .get(
            "/public/x",
            &[
                ("X-Forwarded-For", "6.6.6.6"),
                ("X-Forwarded-Host", "evil.example"),
                ("X_Forwarded_Proto", "https"),
                ("Forwarded", "for=6.6.6.6"),
                ("X-Real-IP", "6.6.6.6"),
                ("X-Original-URL", "/api/admin"),
            ],
        )
        .await;
    assert_eq!(response.upstream_header("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(
        response.upstream_header("x-forwarded-host"),
        ["gateway.test"]
    );
    assert_eq!(response.upstream_header("x-forwarded-proto"), ["http"]);
    for gone in [
        "x_forwarded_proto",
        "forwarded",
        "x-real-ip",
        "x-original-url",
    ] {
        assert!(response.upstream_header(gone).is_empty(), "{gone}");
    }
    assert_eq!(
        response.upstream_header("host"),
        [gateway.echo_addr.to_string()]
    );
}

#[tokio::test]
async fn methods_and_bodies_stream_through_unchanged() {
    let gateway = Harness::start().await;
    let body: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let response = request(
            gateway.addr,
            method,
            "/public/upload",
            &[("Content-Type", "application/octet-stream")],
            &body,
        )
        .await;
        assert_eq!(response.status, 200, "{method}");
        let json = response.json();
        assert_eq!(json["method"], method);
        assert_eq!(json["body_len"], body.len());
        assert_eq!(json["body_sha256"], format!("{:x}", Sha256::digest(&body)));
    }
}

#[tokio::test]
async fn a_chunked_body_streams_through_unchanged() {
    let gateway = Harness::start().await;
    let mut raw = b"POST /public/chunked HTTP/1.1\r\nHost: g\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut expected = Vec::new();
    for chunk in 0..20u8 {
        let data = vec![b'a' + chunk; 1000];
        raw.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        raw.extend_from_slice(&data);
        raw.extend_from_slice(b"\r\n");
        expected.extend_from_slice(&data);
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let response = send_raw(gateway.addr, &raw).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json()["body_sha256"],
        format!("{:x}", Sha256::digest(&expected))
    );
}

/// Catches a build without a body limit, or one that checks only `Content-Length` and not a
/// chunked body as it streams.
#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let gateway = Harness::start().await;
    let big = vec![b'x'; 65_537];
    let response = request(gateway.addr, "POST", "/public/x", &[], &big).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.error_code(), "payload_too_large");
    assert_eq!(
        gateway.echo.requests(),
        0,
        "declared too large: upstream never contacted"
    );

    let mut raw = b"POST /public/x HTTP/1.1\r\nHost: g\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..80 {
        raw.extend_from_slice(b"3e8\r\n");
        raw.extend_from_slice(&[b'y'; 1000]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let response = send_raw(gateway.addr, &raw).await;
    assert_eq!(response.status, 413, "{}", response.text());
}

/// Catches a build without an upstream timeout: a slow upstream must cost a bounded wait.
#[tokio::test]
async fn unreachable_upstream_is_502_and_slow_upstream_is_504() {
    let gateway = Harness::start().await;
    let response = gateway.get("/unreachable/x", &[]).await;
    assert_eq!(response.status, 502);
    assert_eq!(response.error_code(), "upstream_unreachable");
    let started = std::time::Instant::now();
    let response = gateway.get("/slow/x", &[]).await;
    assert_eq!(response.status, 504);
    assert_eq!(response.error_code(), "upstream_timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

/// Catches an upstream timeout kept per connection that is not moved to each request's own
/// deadline: on one keep-alive connection, a request on a route with the default 30 s timeout,
/// then one on /slow (300 ms; its upstream takes 5 s) is still 504 within a second or two, and
/// the connection then serves the next request.
#[tokio::test]
async fn each_request_on_a_kept_alive_connection_keeps_its_own_upstream_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    async fn exchange(connection: &mut TcpStream, target: &str) -> crate::common::Response {
        let request = format!("GET {target} HTTP/1.1\r\nHost: gateway.test\r\n\r\n");
        connection.write_all(request.as_bytes()).await.unwrap();
        // Both the echo's answer and the gateway's JSON error end with their JSON body.
        let mut answer = Vec::new();
        let reading = async {
            while !answer.trim_ascii_end().ends_with(b"}") {
                let mut chunk = [0u8; 4096];
                let read = connection.read(&mut chunk).await.unwrap();
                assert!(read > 0, "the keep-alive connection stays open");
                answer.extend_from_slice(&chunk[..read]);
            }
        };
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), reading).await;
        assert!(read.is_ok(), "no JSON answer within 10 s: {answer:?}");
        crate::common::raw_http::parse(&answer)
    }
    let gateway = Harness::start().await;
    let connection = &mut TcpStream::connect(gateway.addr).await.unwrap();
    assert_eq!(exchange(connection, "/public/first").await.status, 200);
    let started = std::time::Instant::now();
    let slow = exchange(connection, "/slow/x").await;
    assert_eq!(slow.status, 504, "{}", slow.text());
    assert_eq!(slow.error_code(), "upstream_timeout");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "timed out by its own 300 ms, not the first request's 30 s: {:?}",
        started.elapsed()
    );
    let next = exchange(connection, "/public/next").await;
    assert_eq!(next.status, 200);
    assert_eq!(next.upstream_uri(), "/public/next");
}

/// Catches a build that panics or times out at once on the longest route timeout a config can
/// hold (the deadline is the request's start plus the timeout): the request is served.
#[tokio::test]
async fn the_longest_route_timeout_is_served() {
    let gateway = Harness::start_with(Setup {
        extra_routes: format!(
            "[[routes]]\nprefix = \"/forever\"\nupstream = \"http://{{echo}}\"\nauth = \"none\"\ntimeout_ms = {}\n",
            i64::MAX
        ),
        ..Setup::default()
    })
    .await;
    let response = gateway.get("/forever/x", &[]).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.upstream_uri(), "/forever/x");
}

#[tokio::test]
async fn no_route_is_404_and_required_without_token_is_401() {
    let gateway = Harness::start().await;
    let response = gateway.get("/nowhere", &[]).await;
    assert_eq!(response.status, 404);
    assert_eq!(response.error_code(), "not_found");
    let response = gateway.get("/api/x", &[]).await;
    assert_eq!(response.status, 401);
    assert_eq!(
        response.header("www-authenticate"),
        Some(r#"Bearer realm="wxgate""#)
    );
    assert_eq!(response.error_code(), "missing_token");
    let response = gateway.get_with_token("/opt/x", "garbage", &[]).await;
    assert_eq!(
        response.status, 401,
        "optional route: an invalid token is still 401"
    );
    assert_eq!(gateway.echo.requests(), 0);
}

#[tokio::test]
async fn strip_prefix_base_path_and_preserve_host() {
    let echo = wxgate::echo::EchoUpstream::new();
    let listener = crate::common::bind().await;
    let echo_addr = listener.local_addr().unwrap();
    let serving = echo.clone();
    tokio::spawn(async move { serving.serve(listener, std::future::pending()).await });
    let gateway = Harness::start_with(Setup {
        extra_routes: format!(
            "[[routes]]\nprefix = \"/svc\"\nupstream = \"http://{echo_addr}/v2\"\nauth = \"none\"\nstrip_prefix = true\npreserve_host = true\n"
        ),
        ..Setup::default()
    })
    .await;
    let response = gateway.get("/svc/items/7?x=1", &[]).await;
    assert_eq!(response.upstream_uri(), "/v2/items/7?x=1");
    assert_eq!(response.upstream_header("host"), ["gateway.test"]);
}
