//! Request smuggling over real sockets: every framing the gateway and an HTTP/1.1 upstream could
//! read differently is refused or re-framed, so one client request is at most one upstream request
//! and identity headers hidden in odd framing never arrive.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::raw_h2::{self, H2Outcome};
use crate::common::raw_http::parse;
use crate::common::{send_raw, Harness, Setup};

/// Writes `bytes` without closing our side and reads until the gateway closes or goes quiet.
async fn exchange_keep_open(gateway: &Harness, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (answer, true),
            Ok(Ok(read)) => answer.extend_from_slice(&chunk[..read]),
            Err(_) => return (answer, false),
        }
    }
}

fn responses_in(answer: &[u8]) -> usize {
    answer
        .windows(9)
        .filter(|window| window == b"HTTP/1.1 ")
        .count()
}

/// Catches a build that picks one of two disagreeing lengths (CL.CL desync): each is a 400 before
/// any upstream request.
#[tokio::test]
async fn conflicting_content_lengths_are_400_and_reach_no_upstream() {
    let gateway = Harness::start().await;
    for lengths in [
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 6\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: 0x5\r\n",
    ] {
        let request = format!(
            "POST /public/x HTTP/1.1\r\nHost: a\r\n{lengths}Connection: close\r\n\r\nhello!"
        );
        let response = send_raw(gateway.addr, request.as_bytes()).await;
        assert_eq!(response.status, 400, "{lengths:?}");
    }
    assert_eq!(gateway.echo.requests(), 0);
}

/// Catches a build that frames by Content-Length when Transfer-Encoding is present (CL.TE), or
/// forwards both headers: the body is read as chunked (empty here), the upstream gets no
/// Content-Length, and the connection is closed so the bytes after the chunked body, a request
/// with a spoofed X-OpenId, are never read as a second request.
#[tokio::test]
async fn content_length_beside_chunked_is_ignored_and_the_connection_closed() {
    let gateway = Harness::start().await;
    let smuggled = "GET /public/y HTTP/1.1\r\nHost: a\r\nX-OpenId: o-admin\r\n\r\n";
    let request = format!(
        "POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
        5 + smuggled.len()
    );
    let (answer, closed) = exchange_keep_open(&gateway, request.as_bytes()).await;
    assert!(closed, "the gateway closes the connection");
    assert_eq!(
        responses_in(&answer),
        1,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let response = parse(&answer);
    assert_eq!(response.status, 200);
    assert_eq!(response.upstream_uri(), "/public/x");
    assert_eq!(response.json()["body_len"], 0);
    assert!(response.upstream_header("content-length").is_empty());
    assert_eq!(gateway.echo.requests(), 1);
}

/// Catches a build (or a parser upgrade) that accepts a transfer coding an upstream could read
/// differently (TE.TE desync): anything but a final `chunked`, a space before the colon, and
/// chunked HTTP/1.0 are all 400s.
#[tokio::test]
async fn unusual_transfer_encodings_are_400_and_reach_no_upstream() {
    let gateway = Harness::start().await;
    for (version, encoding) in [
        ("1.1", "Transfer-Encoding: chunked, identity\r\n"),
        ("1.1", "Transfer-Encoding: xchunked\r\n"),
        ("1.1", "Transfer-Encoding: identity\r\n"),
        ("1.1", "Transfer-Encoding : chunked\r\n"),
        ("1.0", "Transfer-Encoding: chunked\r\n"),
    ] {
        let request = format!(
            "POST /public/x HTTP/{version}\r\nHost: a\r\n{encoding}Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let response = send_raw(gateway.addr, request.as_bytes()).await;
        assert_eq!(response.status, 400, "{version} {encoding:?}");
    }
    assert_eq!(gateway.echo.requests(), 0);
}

/// Catches a build that unfolds obsolete line folding or lets a bare CR end a header line: either
/// could turn a continuation into an `X-OpenId` line the upstream believes.
#[tokio::test]
async fn obs_fold_and_bare_cr_are_400_and_reach_no_upstream() {
    let gateway = Harness::start().await;
    for head in [
        "X-Note: a\r\n X-OpenId: o-admin\r\n",
        "X-Note: a\r\n\tX-OpenId: o-admin\r\n",
        "X-Note: a\rX-OpenId: o-admin\r\n",
    ] {
        let request =
            format!("GET /public/x HTTP/1.1\r\nHost: a\r\n{head}Connection: close\r\n\r\n");
        let response = send_raw(gateway.addr, request.as_bytes()).await;
        assert_eq!(response.status, 400, "{head:?}");
    }
    assert_eq!(gateway.echo.requests(), 0);
}

/// Catches a build that skips identity stripping or auth for requests framed with bare LF: the
/// gateway parses them like CRLF requests and re-frames them for the upstream, so the spoofed
/// header is dropped on a public route and a protected route still needs a token.
#[tokio::test]
async fn bare_lf_requests_get_the_same_rules_as_crlf_ones() {
    let gateway = Harness::start().await;
    let public = send_raw(
        gateway.addr,
        b"GET /public/x HTTP/1.1\nHost: a\nX-OpenId: o-admin\nConnection: close\n\n",
    )
    .await;
    assert_eq!(public.status, 200);
    assert!(public.upstream_header("x-openid").is_empty());
    let protected = send_raw(
        gateway.addr,
        b"GET /api/x HTTP/1.1\nHost: a\nX-OpenId: o-admin\nConnection: close\n\n",
    )
    .await;
    assert_eq!(protected.status, 401);
    assert_eq!(gateway.echo.requests(), 1);
}

/// Catches a build whose HTTP/2 side passes connection-specific headers, CR/LF inside values or
/// upper-case names on to the HTTP/1.1 upstream (the h2-to-h1 downgrade desyncs): each such
/// request is reset as malformed and the upstream sees nothing; a clean one goes through.
#[tokio::test]
async fn malformed_http2_requests_never_reach_the_http1_upstream() {
    let gateway = Harness::start_with(Setup {
        server: "h2c = true".into(),
        ..Setup::default()
    })
    .await;
    let base = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "gateway.test"),
        (":path", "/public/x"),
    ];
    let body = b"0\r\n\r\nGET /api/x HTTP/1.1\r\nX-OpenId: o-admin\r\n\r\n";
    for bad in [
        ("transfer-encoding", "chunked"),
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("upgrade", "websocket"),
        ("te", "gzip"),
        ("x-note", "a\r\nx-openid: o-admin"),
        ("X-OpenId", "o-admin"),
    ] {
        let mut headers = base.to_vec();
        headers.push(bad);
        let outcome = raw_h2::exchange(gateway.addr, &headers, body).await;
        assert!(
            matches!(outcome, H2Outcome::Reset(1) | H2Outcome::GoAway(1)),
            "{bad:?}: {outcome:?}"
        );
    }
    assert_eq!(gateway.echo.requests(), 0);

    let mut headers = base.to_vec();
    headers.push(("x-openid", "o-admin"));
    let H2Outcome::Answered(echoed) = raw_h2::exchange(gateway.addr, &headers, body).await else {
        panic!("a well-formed h2 request is answered");
    };
    let echoed: serde_json::Value = serde_json::from_slice(&echoed).unwrap();
    // Re-framed by the gateway's own HTTP/1.1 client: the whole DATA payload is one chunked body.
    assert_eq!(echoed["body"], std::str::from_utf8(body).unwrap());
    assert_eq!(
        echoed["headers"]["transfer-encoding"],
        serde_json::json!(["chunked"])
    );
    assert!(echoed["headers"]["content-length"].is_null());
    assert!(echoed["headers"]["x-openid"].is_null());
    assert_eq!(gateway.echo.requests(), 1);
}
