//! Bodies and streams that hold resources (issue 27, defects 3 and 5): a body that never comes is
//! cut at `server.body_read_timeout_ms` with 408, and HTTP/2 streams cannot multiply upstream
//! connections past `server.http2_max_concurrent_streams` and `upstream.max_in_flight`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::raw_http::parse;
use crate::common::tokens::{claims, hs256};
use crate::common::{bind, request, Harness, Response, Setup};

/// Sends a head promising 1000 bytes of body, then `sent` of them, then nothing; the answer.
async fn stalled_body(addr: SocketAddr, path: &str, extra: &str, sent: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n{extra}Content-Length: 1000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(sent).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read until the response is whole (the connection may stay open).
    loop {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("answered within 10 s")
            .unwrap();
        answer.extend_from_slice(&chunk[..read]);
        if read == 0 || answer.ends_with(b"}") {
            break;
        }
    }
    parse(&answer)
}

/// Catches a build without a body read timeout (body slowloris): with `max_connections = 3`,
/// three clients that promise a body to the gateway's own endpoints and never send it are cut with
/// 408 `body_read_timeout` after 300 ms, and a fourth client is served meanwhile.
#[tokio::test]
async fn a_body_that_never_comes_is_cut_with_408_and_frees_its_connection() {
    let gateway = Harness::start_with(Setup {
        server: "max_connections = 3\nbody_read_timeout_ms = 300".into(),
        ..Setup::default()
    })
    .await;
    let bearer = format!("Authorization: Bearer {}\r\n", hs256(&claims("o-slow")));
    let started = Instant::now();
    let addr = gateway.addr;
    let stalled = [
        tokio::spawn(async move { stalled_body(addr, "/login", "", b"{\"code\"").await }),
        tokio::spawn(async move { stalled_body(addr, "/login/default", "", b"").await }),
        tokio::spawn(async move { stalled_body(addr, "/wx/decrypt", &bearer, b"{").await }),
    ];
    let fourth = request(gateway.addr, "GET", "/public/x", &[], b"").await;
    assert_eq!(fourth.status, 200);
    for stalled in stalled {
        let response = stalled.await.unwrap();
        assert_eq!(response.status, 408, "{}", response.text());
        assert_eq!(response.error_code(), "body_read_timeout");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Catches a build that waits forever between two chunks of a forwarded body: the upstream got the
/// head, the client stalls, and the client gets 408 (not a 502 blaming the upstream).
#[tokio::test]
async fn a_forwarded_body_that_stalls_is_cut_with_408() {
    let gateway = Harness::start_with(Setup {
        server: "body_read_timeout_ms = 300".into(),
        ..Setup::default()
    })
    .await;
    let response = stalled_body(gateway.addr, "/public/upload", "", &[b'x'; 10]).await;
    assert_eq!(response.status, 408, "{}", response.text());
    assert_eq!(response.error_code(), "body_read_timeout");
}

/// An upstream that accepts connections, reads what comes and never answers; the counter says how
/// many connections it was given.
async fn silent_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = bind().await;
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut sink = [0u8; 4096];
                while matches!(stream.read(&mut sink).await, Ok(read) if read > 0) {}
            });
        }
    });
    (addr, accepted)
}

/// Catches a build where each HTTP/2 stream with an unfinished body takes its own upstream
/// connection without bound: the server advertises `http2_max_concurrent_streams`, and past
/// `upstream.max_in_flight` requests are refused at once with 503 `upstream_busy` while the
/// upstream sees no more connections than the cap.
#[tokio::test]
async fn http2_streams_cannot_multiply_upstream_connections() {
    let (upstream, accepted) = silent_upstream().await;
    let gateway = Harness::start_with(Setup {
        server: "h2c = true\nhttp2_max_concurrent_streams = 4".into(),
        sections: "[upstream]\nmax_in_flight = 6\n".into(),
        extra_routes: format!(
            "[[routes]]\nprefix = \"/hold\"\nupstream = \"http://{upstream}\"\nauth = \"none\"\n"
        ),
        ..Setup::default()
    })
    .await;
    let mut answers = Vec::new();
    let mut bodies = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..2 {
        let tcp = TcpStream::connect(gateway.addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        connections.push(tokio::spawn(connection));
        let mut client = client.ready().await.unwrap();
        // The server's SETTINGS have arrived once a round trip has been made.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            client.current_max_send_streams(),
            4,
            "advertised in SETTINGS"
        );
        for index in 0..4 {
            let request = http::Request::post(format!("http://gateway.test/hold/{index}"))
                .body(())
                .unwrap();
            client = client.ready().await.unwrap();
            let (response, mut body) = client.send_request(request, false).unwrap();
            body.send_data(Bytes::from_static(b"part of a body"), false)
                .unwrap();
            bodies.push(body);
            answers.push(tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(3), response).await
            }));
        }
    }
    let mut busy = 0;
    let mut waiting = 0;
    for answer in answers {
        match answer.await.unwrap() {
            Ok(Ok(response)) => {
                assert_eq!(response.status(), 503);
                busy += 1;
            }
            Ok(Err(error)) => panic!("stream failed: {error}"),
            Err(_) => waiting += 1,
        }
    }
    assert_eq!(
        (waiting, busy),
        (6, 2),
        "six in flight, two refused at once"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 6, "upstream connections");
    drop(bodies);
    for connection in connections {
        connection.abort();
    }
}
