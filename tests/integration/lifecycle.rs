//! Graceful shutdown: in-flight requests finish, new connections are refused, `run` returns.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::{Harness, Setup};
use tokio::net::TcpStream;

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_then_returns() {
    let (slow, received) = crate::common::slow_upstream(Duration::from_millis(600)).await;
    let mut gateway = Harness::start_with(Setup {
        extra_routes: format!(
            "[[routes]]\nprefix = \"/work\"\nupstream = \"http://{slow}\"\nauth = \"none\"\ntimeout_ms = 5000\n"
        ),
        ..Setup::default()
    })
    .await;
    let addr = gateway.addr;
    let in_flight =
        tokio::spawn(
            async move { crate::common::request(addr, "GET", "/work/long", &[], b"").await },
        );
    while received.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let server = gateway.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );

    let response = in_flight.await.expect("in-flight request task");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"slow");
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("run returns once the in-flight request is done");
    assert!(result.expect("no panic").is_ok());
}

#[tokio::test]
async fn shutdown_with_idle_keep_alive_connections_returns_promptly() {
    let gateway = Harness::start().await;
    let _idle = TcpStream::connect(gateway.addr).await.unwrap();
    let started = std::time::Instant::now();
    gateway.shutdown().await.expect("clean shutdown");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "idle connections do not hold shutdown"
    );
}

/// Catches a build without a header read timeout (slowloris): the slow client is cut off and
/// others are served meanwhile.
#[tokio::test]
async fn a_client_too_slow_to_send_its_headers_is_disconnected_while_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gateway = Harness::start_with(Setup {
        server: "header_read_timeout_ms = 300".into(),
        ..Setup::default()
    })
    .await;
    let mut slowloris = TcpStream::connect(gateway.addr).await.unwrap();
    slowloris
        .write_all(b"GET /public/x HTTP/1.1\r\nHost: g\r\n")
        .await
        .unwrap();
    assert_eq!(
        gateway.get("/public/x", &[]).await.status,
        200,
        "others are served meanwhile"
    );
    let mut rest = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(3), slowloris.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the slow connection is closed by the header timeout"
    );
    assert_eq!(
        gateway.echo.requests(),
        1,
        "the incomplete request never reached the upstream"
    );
}

/// Catches a build without a connection cap: connections past `server.max_connections` wait
/// instead of exhausting memory and file descriptors.
#[tokio::test]
async fn connections_beyond_max_connections_wait_for_a_free_slot() {
    use tokio::io::AsyncWriteExt;
    let gateway = Harness::start_with(Setup {
        server: "max_connections = 1".into(),
        ..Setup::default()
    })
    .await;
    // A keep-alive connection that has been answered certainly holds the only slot.
    let mut holder = TcpStream::connect(gateway.addr).await.unwrap();
    holder
        .write_all(b"GET /public/x HTTP/1.1\r\nHost: g\r\n\r\n")
        .await
        .unwrap();
    crate::common::raw_http::read_echo_response(&mut holder).await;
    let addr = gateway.addr;
    let waiting =
        tokio::spawn(
            async move { crate::common::request(addr, "GET", "/public/x", &[], b"").await },
        );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the second connection waits while the slot is taken"
    );
    drop(holder);
    let response = tokio::time::timeout(Duration::from_secs(12), waiting)
        .await
        .expect("served once the slot frees")
        .unwrap();
    assert_eq!(response.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_during_steady_load_fails_no_request() {
    let (slow, _) = crate::common::slow_upstream(Duration::from_millis(100)).await;
    let mut gateway = Harness::start_with(Setup {
        extra_routes: format!(
            "[[routes]]\nprefix = \"/work\"\nupstream = \"http://{slow}\"\nauth = \"none\"\n"
        ),
        ..Setup::default()
    })
    .await;
    let load = crate::common::load::SteadyLoad::start(&format!("http://{}/work", gateway.addr), 32);
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Clients issue nothing new from here on; everything already sent must complete.
    load.stop_sending();
    let server = gateway.begin_shutdown();
    let (served, failures) = load.finish().await;
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("run returns");
    assert!(result.unwrap().is_ok());
    assert!(failures.is_empty(), "failed: {failures:?}");
    assert!(served >= 64, "steady load: {served}");
}

/// Catches a build without a header size limit: huge heads are a 431, not buffered.
#[tokio::test]
async fn request_heads_over_the_limit_are_431() {
    let gateway = Harness::start_with(Setup {
        server: "max_header_bytes = 16384".into(),
        ..Setup::default()
    })
    .await;
    let big = "a".repeat(20_000);
    let response =
        crate::common::request(gateway.addr, "GET", "/public/x", &[("X-Big", &big)], b"").await;
    assert_eq!(response.status, 431);
    let fits = "a".repeat(8_000);
    let response =
        crate::common::request(gateway.addr, "GET", "/public/x", &[("X-Fits", &fits)], b"").await;
    assert_eq!(response.status, 200);
    assert_eq!(gateway.echo.requests(), 1);
}

#[tokio::test]
async fn the_redirect_listener_sends_every_request_to_https() {
    let listener = crate::common::bind().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(wxgate::server::redirect_to_https(
        listener,
        8443,
        std::future::pending(),
    ));
    let response = crate::common::request(addr, "POST", "/api/x?a=1", &[], b"{}").await;
    assert_eq!(response.status, 308);
    assert_eq!(
        response.header("location"),
        Some("https://gateway.test:8443/api/x?a=1")
    );
    let listener = crate::common::bind().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(wxgate::server::redirect_to_https(
        listener,
        443,
        std::future::pending(),
    ));
    let response = crate::common::request(addr, "GET", "/", &[], b"").await;
    assert_eq!(response.header("location"), Some("https://gateway.test/"));
}
