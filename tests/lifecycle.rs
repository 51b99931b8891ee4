//! Graceful shutdown: in-flight requests finish, new connections are refused, `run` returns.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Harness, Setup};
use tokio::net::TcpStream;

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_then_returns() {
    let (slow, received) = common::slow_upstream(Duration::from_millis(600)).await;
    let mut gateway = Harness::start_with(Setup {
        extra_routes: format!(
            "[[routes]]\nprefix = \"/work\"\nupstream = \"http://{slow}\"\nauth = \"none\"\ntimeout_ms = 5000\n"
        ),
        ..Setup::default()
    })
    .await;
    let addr = gateway.addr;
    let in_flight =
        tokio::spawn(async move { common::request(addr, "GET", "/work/long", &[], b"").await });
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

#[tokio::test]
async fn connections_beyond_max_connections_wait_for_a_free_slot() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    let mut answer = Vec::new();
    while !answer.ends_with(b"}") {
        let mut chunk = [0u8; 4096];
        let read = holder.read(&mut chunk).await.unwrap();
        assert!(read > 0, "keep-alive connection stays open");
        answer.extend_from_slice(&chunk[..read]);
    }
    let addr = gateway.addr;
    let waiting =
        tokio::spawn(async move { common::request(addr, "GET", "/public/x", &[], b"").await });
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
