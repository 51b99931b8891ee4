//! Idle HTTP/1.1 keep-alive connections are parked between requests (no HTTP buffers held) and
//! resumed on the client's next bytes, without losing or cutting anything: requests split across
//! pauses, pipelined requests, slow bodies, streamed responses, WebSocket upgrades and TLS all come
//! through whole, and the keep-alive, header-read and shutdown limits still hold.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wxgate::tls::dev::{DevCa, KeyType};

use crate::common::raw_http::{parse, read_echo_response};
use crate::common::tls::{temp_dir, tls_section, write_cert};
use crate::common::{Harness, Setup};

const GET: &[u8] = b"GET /public/x HTTP/1.1\r\nHost: g\r\n\r\n";

/// The `wxgate_idle_connections` gauge, read from the admin listener.
async fn idle_connections(gateway: &Harness) -> u64 {
    let metrics = crate::common::request(gateway.admin_addr, "GET", "/metrics", &[], b"").await;
    let text = metrics.text();
    let line = text
        .lines()
        .find(|line| line.starts_with("wxgate_idle_connections "))
        .expect("the gauge is exported");
    line["wxgate_idle_connections ".len()..].parse().unwrap()
}

/// Waits until the gauge reads `expected`; panics after two seconds.
async fn wait_for_idle(gateway: &Harness, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let idle = idle_connections(gateway).await;
        if idle == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "idle connections stayed at {idle}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A connection that has had one request answered.
async fn answered_connection(gateway: &Harness) -> TcpStream {
    let mut connection = TcpStream::connect(gateway.addr).await.unwrap();
    connection.write_all(GET).await.unwrap();
    read_echo_response(&mut connection).await;
    connection
}

/// Reads one response whose body has a Content-Length.
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> crate::common::Response {
    let mut answer = Vec::new();
    loop {
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |value| value.trim().parse().unwrap());
            if answer.len() >= end + 4 + length {
                return parse(&answer[..end + 4 + length]);
            }
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(read > 0, "the connection closed before the response ended");
        answer.extend_from_slice(&chunk[..read]);
    }
}

/// Catches a build that never parks (the gauge stays 0) or that loses the socket when it does.
#[tokio::test]
async fn an_idle_connection_is_parked_and_serves_its_next_requests() {
    let gateway = Harness::start().await;
    let mut connection = TcpStream::connect(gateway.addr).await.unwrap();
    for round in 1..=3 {
        connection.write_all(GET).await.unwrap();
        let response = parse(&read_echo_response(&mut connection).await);
        assert_eq!(response.status, 200);
        wait_for_idle(&gateway, 1).await;
        assert_eq!(gateway.echo.requests(), round);
    }
    drop(connection);
    wait_for_idle(&gateway, 0).await;
}

/// Catches a build that parks while hyper holds part of a request head (the request would be
/// cut off and the connection closed).
#[tokio::test]
async fn request_heads_split_across_pauses_are_served_whole() {
    let gateway = Harness::start().await;
    let mut connection = TcpStream::connect(gateway.addr).await.unwrap();
    for _ in 0..2 {
        for piece in [&b"GET /public/x HT"[..], b"TP/1.1\r\nHost: g\r\n", b"\r\n"] {
            connection.write_all(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let response = parse(&read_echo_response(&mut connection).await);
        assert_eq!(response.status, 200);
        assert_eq!(response.upstream_uri(), "/public/x");
    }
    assert_eq!(gateway.echo.requests(), 2);
}

/// Catches a build that parks while a request body is still coming.
#[tokio::test]
async fn a_body_sent_with_pauses_arrives_whole() {
    let gateway = Harness::start().await;
    let mut connection = TcpStream::connect(gateway.addr).await.unwrap();
    connection
        .write_all(b"POST /public/x HTTP/1.1\r\nHost: g\r\nContent-Length: 10\r\n\r\nhello")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    connection.write_all(b"world").await.unwrap();
    let response = parse(&read_echo_response(&mut connection).await);
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["body"], "helloworld");
    wait_for_idle(&gateway, 1).await;
    connection.write_all(GET).await.unwrap();
    assert_eq!(
        parse(&read_echo_response(&mut connection).await).status,
        200
    );
}

/// Catches a build that loses pipelined requests when hyper hands the socket back.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_the_connection_then_parks() {
    let gateway = Harness::start().await;
    let mut connection = TcpStream::connect(gateway.addr).await.unwrap();
    connection
        .write_all(
            b"GET /public/one HTTP/1.1\r\nHost: g\r\n\r\n\
              POST /public/two HTTP/1.1\r\nHost: g\r\nContent-Length: 3\r\n\r\nabc\
              GET /public/three HTTP/1.1\r\nHost: g\r\n\r\n",
        )
        .await
        .unwrap();
    for path in ["/public/one", "/public/two", "/public/three"] {
        let response = read_response(&mut connection).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.upstream_uri(), path);
    }
    wait_for_idle(&gateway, 1).await;
    connection.write_all(GET).await.unwrap();
    assert_eq!(read_response(&mut connection).await.status, 200);
    assert_eq!(gateway.echo.requests(), 4);
}

/// An upstream that sends a chunked response in two parts, `pause` apart.
async fn streaming_upstream(pause: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !seen.windows(4).any(|window| window == b"\r\n\r\n") {
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => seen.extend_from_slice(&chunk[..read]),
                    }
                }
                let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n";
                let _ = stream.write_all(head).await;
                tokio::time::sleep(pause).await;
                let _ = stream.write_all(b"6\r\nsecond\r\n0\r\n\r\n").await;
            });
        }
    });
    addr
}

/// A gateway whose route `/stream` leads to a `streaming_upstream`.
async fn gateway_streaming(pause: Duration) -> Harness {
    let upstream = streaming_upstream(pause).await;
    Harness::start_with(Setup {
        extra_routes: format!(
            "[[routes]]\nprefix = \"/stream\"\nupstream = \"http://{upstream}\"\nauth = \"none\"\n"
        ),
        ..Setup::default()
    })
    .await
}

/// Reads a chunked response to its last chunk; panics if the connection closes or stalls first.
async fn read_streamed(connection: &mut TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    while !answer.ends_with(b"0\r\n\r\n") {
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(3), connection.read(&mut chunk))
            .await
            .expect("the response goes on")
            .unwrap();
        assert!(read > 0, "the connection closed mid-response");
        answer.extend_from_slice(&chunk[..read]);
    }
    answer
}

/// Catches a build that takes a paused response for an idle connection and parks mid-response.
#[tokio::test]
async fn a_response_streamed_with_pauses_is_not_cut() {
    let gateway = gateway_streaming(Duration::from_millis(400)).await;
    let mut connection = TcpStream::connect(gateway.addr).await.unwrap();
    connection
        .write_all(b"GET /stream/x HTTP/1.1\r\nHost: g\r\n\r\n")
        .await
        .unwrap();
    let answer = read_streamed(&mut connection).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("first") && text.contains("second"), "{text}");
    wait_for_idle(&gateway, 1).await;
}

/// Catches a build that parks while hyper holds the start of a pipelined request it read while
/// answering the previous one (the request would be cut off and the connection closed).
#[tokio::test]
async fn a_request_begun_while_the_previous_was_answered_is_served_whole() {
    let gateway = gateway_streaming(Duration::from_millis(300)).await;
    let mut connection = TcpStream::connect(gateway.addr).await.unwrap();
    connection
        .write_all(b"GET /stream/x HTTP/1.1\r\nHost: g\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    connection
        .write_all(b"GET /public/next HTTP/1.1\r\nHo")
        .await
        .unwrap();
    read_streamed(&mut connection).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    connection.write_all(b"st: g\r\n\r\n").await.unwrap();
    let response = read_response(&mut connection).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.upstream_uri(), "/public/next");
}

/// Catches a build where a parked connection can no longer switch protocols.
#[tokio::test]
async fn a_websocket_upgrade_on_a_parked_connection_relays() {
    let (ws_addr, upgrades) = crate::common::ws::ws_echo_upstream().await;
    let gateway = Harness::start_with(Setup {
        extra_routes: format!(
            "[[routes]]\nprefix = \"/ws\"\nupstream = \"http://{ws_addr}\"\nauth = \"none\"\n"
        ),
        ..Setup::default()
    })
    .await;
    let connection = answered_connection(&gateway).await;
    wait_for_idle(&gateway, 1).await;
    let request = format!("ws://{}/ws/chat", gateway.addr);
    let (mut socket, _) = tokio_tungstenite::client_async(request, connection)
        .await
        .expect("the upgrade succeeds");
    use futures_util::{SinkExt, StreamExt};
    let _hello = socket.next().await.unwrap().unwrap();
    socket.send("ping".into()).await.unwrap();
    let echoed = socket.next().await.unwrap().unwrap();
    assert_eq!(echoed.to_text().unwrap(), "ping");
    assert_eq!(upgrades.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Catches a build where an idle keep-alive connection is held forever, or is cut by the header
/// read timeout instead of the keep-alive timeout.
#[tokio::test]
async fn an_idle_connection_is_closed_after_the_keepalive_timeout() {
    let gateway = Harness::start_with(Setup {
        server: "header_read_timeout_ms = 300\nkeepalive_timeout_ms = 1200".into(),
        ..Setup::default()
    })
    .await;
    let mut connection = answered_connection(&gateway).await;
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(4), connection.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection was closed");
    assert!(rest.is_empty());
    let idle_for = started.elapsed();
    assert!(
        idle_for >= Duration::from_millis(1100),
        "closed after {idle_for:?}, before the keep-alive timeout"
    );
    wait_for_idle(&gateway, 0).await;
}

/// Catches a build where a connection that never sends a request escapes the header timeout.
#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_read_timeout() {
    let gateway = Harness::start_with(Setup {
        server: "header_read_timeout_ms = 300".into(),
        ..Setup::default()
    })
    .await;
    let mut connection = TcpStream::connect(gateway.addr).await.unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(3), connection.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the silent connection was closed");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

/// Seconds a connection took to be closed by the gateway, reading (and dropping) what it sends.
async fn seconds_until_closed(connection: &mut TcpStream) -> Option<f64> {
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(4), connection.read_to_end(&mut rest)).await;
    closed.ok().map(|_| started.elapsed().as_secs_f64())
}

/// Catches a build where only a connection's first request head is timed: a later head left
/// incomplete, right after a response or after the connection was parked, is cut at the header
/// read timeout, long before the keep-alive timeout.
#[tokio::test]
async fn a_later_request_head_left_incomplete_is_cut_at_the_header_read_timeout() {
    let gateway = Harness::start_with(Setup {
        server: "header_read_timeout_ms = 300\nkeepalive_timeout_ms = 5000".into(),
        ..Setup::default()
    })
    .await;
    for pause in [Duration::ZERO, Duration::from_millis(300)] {
        let mut connection = answered_connection(&gateway).await;
        tokio::time::sleep(pause).await;
        connection
            .write_all(b"GET /public/x HTTP/1.1\r\nHost: g\r\n")
            .await
            .unwrap();
        let took = seconds_until_closed(&mut connection).await;
        assert!(
            took.is_some_and(|took| (0.2..2.0).contains(&took)),
            "after a {pause:?} pause, closed after {took:?} s"
        );
    }
}

/// Catches a build where a head sent a byte at a time is timed from its last byte: the deadline
/// counts from the first.
#[tokio::test]
async fn a_later_request_head_sent_byte_by_byte_is_cut_at_the_header_read_timeout() {
    let gateway = Harness::start_with(Setup {
        server: "header_read_timeout_ms = 300\nkeepalive_timeout_ms = 5000".into(),
        ..Setup::default()
    })
    .await;
    let mut connection = answered_connection(&gateway).await;
    let started = Instant::now();
    let head = b"GET /public/x HTTP/1.1\r\nHost: g\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for byte in head {
        if connection.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed().as_secs_f64()
        + seconds_until_closed(&mut connection).await.unwrap_or(9.0);
    assert!(took < 1.5, "closed after {took} s while bytes kept coming");
}

/// Catches a build where parked connections hold a shutdown for its whole grace period.
#[tokio::test]
async fn shutdown_closes_parked_connections_at_once() {
    let gateway = Harness::start().await;
    let mut connection = answered_connection(&gateway).await;
    wait_for_idle(&gateway, 1).await;
    let started = Instant::now();
    gateway.shutdown().await.expect("clean shutdown");
    assert!(started.elapsed() < Duration::from_secs(3));
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(1), connection.read_to_end(&mut rest))
        .await
        .expect("the parked connection is closed");
    assert!(read.is_ok() && rest.is_empty());
}

/// A TLS client connection to `addr` trusting `ca`.
async fn tls_connect(addr: SocketAddr, ca: &DevCa) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca.cert_pem.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost".to_string()).unwrap();
    connector.connect(name, tcp).await.unwrap()
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> u16 {
    stream.write_all(GET).await.unwrap();
    read_response(stream).await.status
}

/// Catches a build that parks a TLS connection with bytes still inside rustls, or cannot resume it.
#[tokio::test]
async fn a_tls_connection_is_parked_and_resumed() {
    let ca = DevCa::new("test CA").unwrap();
    let dir = temp_dir("keepalive-tls");
    let (cert, key) = write_cert(&ca, &dir, "server", &["localhost"], KeyType::Ecdsa);
    let gateway = Harness::start_with(Setup {
        server: tls_section(&cert, &key, ""),
        ..Setup::default()
    })
    .await;
    let mut connection = tls_connect(gateway.addr, &ca).await;
    for _ in 0..3 {
        assert_eq!(exchange(&mut connection).await, 200);
        wait_for_idle(&gateway, 1).await;
    }
    assert_eq!(gateway.echo.requests(), 3);
}
