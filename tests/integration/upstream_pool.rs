//! The upstream connection pool of each worker thread: connections are reused, one the upstream
//! closed is never used again (and no request fails for it), idle ones close after
//! `upstream.pool_idle_timeout_secs`, `upstream.pool_max_idle_per_host = 0` keeps none, and each
//! worker (`server.workers`) keeps its own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{self, Harness, Setup};

/// An upstream counting the connections it accepted and those still open.
struct CountingUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
}

impl CountingUpstream {
    /// Answers every request head with 200 `ok`; with `close_after_each`, closes the connection
    /// after each answer without saying so (no `Connection: close`), as an upstream timing out an
    /// idle keep-alive connection does.
    async fn start(close_after_each: bool) -> CountingUpstream {
        let listener = common::bind().await;
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (accepting, opened) = (accepted.clone(), open.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepting.fetch_add(1, Ordering::SeqCst);
                opened.fetch_add(1, Ordering::SeqCst);
                let opened = opened.clone();
                tokio::spawn(async move {
                    serve(stream, close_after_each).await;
                    opened.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        CountingUpstream {
            addr,
            accepted,
            open,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// Answers request heads (no bodies: the tests send GETs) until the gateway closes.
async fn serve(mut stream: TcpStream, close_after_each: bool) {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        while let Some(end) = seen.windows(4).position(|window| window == b"\r\n\r\n") {
            seen.drain(..end + 4);
            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if stream.write_all(answer).await.is_err() || close_after_each {
                return;
            }
        }
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => seen.extend_from_slice(&buffer[..read]),
        }
    }
}

/// A gateway with one route, `/pooled`, to `upstream`, and these extra settings.
async fn gateway(upstream: &CountingUpstream, workers: usize, upstream_section: &str) -> Harness {
    Harness::start_with(Setup {
        server: format!("workers = {workers}"),
        sections: format!("[upstream]\n{upstream_section}"),
        extra_routes: format!(
            "[[routes]]\nprefix = \"/pooled\"\nupstream = \"http://{}\"\nauth = \"none\"\n",
            upstream.addr
        ),
        ..Setup::default()
    })
    .await
}

/// Polls `condition` for up to five seconds.
async fn eventually(condition: impl Fn() -> bool) -> bool {
    for _ in 0..100 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn requests_one_after_another_reuse_one_upstream_connection() {
    let upstream = CountingUpstream::start(false).await;
    let gateway = gateway(&upstream, 1, "").await;
    for _ in 0..5 {
        let answer = gateway.get("/pooled/x", &[]).await;
        assert_eq!((answer.status, answer.text()), (200, "ok".to_string()));
    }
    assert_eq!(upstream.accepted(), 1);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_not_reused_and_no_request_fails() {
    let upstream = CountingUpstream::start(true).await;
    let gateway = gateway(&upstream, 1, "").await;
    for round in 1..=5 {
        let answer = gateway.get("/pooled/x", &[]).await;
        assert_eq!(answer.status, 200, "request {round}: {}", answer.text());
        assert!(eventually(|| upstream.open() == 0).await);
    }
    assert_eq!(upstream.accepted(), 5);
}

#[tokio::test]
async fn idle_upstream_connections_close_after_the_pool_idle_timeout() {
    let upstream = CountingUpstream::start(false).await;
    let gateway = gateway(&upstream, 1, "pool_idle_timeout_secs = 1").await;
    assert_eq!(gateway.get("/pooled/x", &[]).await.status, 200);
    assert_eq!(upstream.open(), 1, "kept for the next request");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(upstream.open(), 1, "not yet idle for a second");
    assert!(
        eventually(|| upstream.open() == 0).await,
        "closed once idle past the timeout"
    );
    assert_eq!(gateway.get("/pooled/x", &[]).await.status, 200);
    assert_eq!(upstream.accepted(), 2);
}

#[tokio::test]
async fn no_connection_is_kept_when_the_pool_may_hold_none() {
    let upstream = CountingUpstream::start(false).await;
    let gateway = gateway(&upstream, 1, "pool_max_idle_per_host = 0").await;
    for _ in 0..3 {
        assert_eq!(gateway.get("/pooled/x", &[]).await.status, 200);
        assert!(eventually(|| upstream.open() == 0).await);
    }
    assert_eq!(upstream.accepted(), 3);
}

#[tokio::test]
async fn each_worker_keeps_its_own_pool() {
    // Two client connections open at once go to two workers (the one serving fewer gets the next
    // connection), and each worker connects to the upstream for itself.
    let upstream = CountingUpstream::start(false).await;
    let gateway = gateway(&upstream, 2, "").await;
    let mut clients = Vec::new();
    for _ in 0..2 {
        clients.push(TcpStream::connect(gateway.addr).await.unwrap());
    }
    for _ in 0..3 {
        for client in &mut clients {
            client
                .write_all(b"GET /pooled/x HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
                .await
                .unwrap();
            let mut answer = Vec::new();
            while !answer.ends_with(b"\r\n\r\nok") {
                let mut chunk = [0u8; 1024];
                let read = client.read(&mut chunk).await.unwrap();
                assert!(read > 0, "{}", String::from_utf8_lossy(&answer));
                answer.extend_from_slice(&chunk[..read]);
            }
        }
    }
    assert_eq!(upstream.accepted(), 2);
}
