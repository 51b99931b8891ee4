//! Graceful shutdown: in-flight requests finish, new connections are refused, `run` returns.

mod common;

use std::time::Duration;

use common::{Harness, Setup};
use tokio::net::TcpStream;

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_then_returns() {
    let slow = common::slow_upstream(Duration::from_millis(600)).await;
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
    tokio::time::sleep(Duration::from_millis(150)).await;

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
