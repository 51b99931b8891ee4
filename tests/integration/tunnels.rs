//! Tunnels through the gateway (issue 27, defects 1 and 6): only WebSocket upgrades pass, only a
//! 101 that switches to the protocol asked for is relayed, and an open tunnel holds a connection
//! slot for its whole life and closes once idle.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::tokens::{claims, hs256};
use crate::common::{bind, Harness, Setup};

/// What a backend that switches protocols at every asking (as hypercorn does for `h2c` with its
/// defaults) received: each request head, lower-cased.
type Heads = Arc<Mutex<Vec<String>>>;

/// A backend that answers `101 Switching Protocols` to any request carrying an `Upgrade` header
/// (naming the same protocol), or to every request when `always` names one, then echoes raw
/// bytes; other requests get `200 plain`.
async fn switching_backend(always: Option<&'static str>) -> (SocketAddr, Heads) {
    let listener = bind().await;
    let addr = listener.local_addr().unwrap();
    let heads: Heads = Arc::default();
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                seen.lock().unwrap().push(head.clone());
                let asked = head
                    .lines()
                    .find_map(|line| line.strip_prefix("upgrade:"))
                    .map(|protocol| protocol.trim().to_string());
                let protocol = always.map(str::to_string).or(asked);
                let Some(protocol) = protocol else {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nplain")
                        .await;
                    return;
                };
                let switch = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: {protocol}\r\n\r\n"
                );
                if stream.write_all(switch.as_bytes()).await.is_err() {
                    return;
                }
                let (mut reader, mut writer) = stream.into_split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    (addr, heads)
}

async fn gateway_before(backend: SocketAddr, sections: &str, server: &str) -> Harness {
    Harness::start_with(Setup {
        extra_routes: format!(
            "[[routes]]\nprefix = \"/open\"\nupstream = \"http://{backend}\"\nauth = \"none\"\n\n\
             [[routes]]\nprefix = \"/closed\"\nupstream = \"http://{backend}\"\nauth = \"required\"\n"
        ),
        sections: sections.to_string(),
        server: server.to_string(),
        ..Setup::default()
    })
    .await
}

/// Catches a build that forwards any `Upgrade` (h2c, TLS...) and relays whatever the backend
/// switches to: the unauthenticated h2c tunnel. The request is served as plain HTTP, without the
/// `Upgrade` header, on a public and on a protected route alike.
#[tokio::test]
async fn an_h2c_upgrade_is_served_as_plain_http_and_opens_no_tunnel() {
    let (backend, heads) = switching_backend(None).await;
    let gateway = gateway_before(backend, "", "").await;
    let bearer = format!("Bearer {}", hs256(&claims("o-user")));
    for (path, authorization) in [("/open/hello", None), ("/closed/hello", Some(&bearer))] {
        for protocol in ["h2c", "H2C", "TLS/1.2", "websocket, h2c", "h2c, websocket"] {
            let mut headers = vec![
                ("Connection", "Upgrade, HTTP2-Settings"),
                ("Upgrade", protocol),
                ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
            ];
            if let Some(authorization) = authorization {
                headers.push(("Authorization", authorization.as_str()));
            }
            let response = crate::common::request(gateway.addr, "GET", path, &headers, b"").await;
            assert_eq!(response.status, 200, "{path} {protocol}");
            assert_eq!(response.text(), "plain", "{path} {protocol}");
        }
    }
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 10);
    for head in heads.iter() {
        assert!(
            !head.contains("upgrade:"),
            "no Upgrade reached the backend: {head}"
        );
        assert!(!head.contains("http2-settings"), "{head}");
    }
}

/// Catches a build that relays a 101 naming another protocol than the WebSocket one asked for.
#[tokio::test]
async fn a_switch_to_another_protocol_than_asked_is_a_502() {
    let (backend, heads) = switching_backend(Some("h2c")).await;
    let gateway = gateway_before(backend, "", "").await;
    let response = crate::common::request(
        gateway.addr,
        "GET",
        "/open/socket",
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
        b"",
    )
    .await;
    assert_eq!(response.status, 502);
    assert_eq!(response.error_code(), "upstream_error");
    // and a 101 to a request that asked for no upgrade at all
    let response = crate::common::request(gateway.addr, "GET", "/open/plain", &[], b"").await;
    assert_eq!(response.status, 502);
    assert_eq!(heads.lock().unwrap().len(), 2);
}

/// Opens a raw WebSocket-upgraded tunnel through the gateway: the connection, after its 101.
async fn open_tunnel(gateway: &Harness) -> TcpStream {
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(
            b"GET /open/socket HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// Whether the tunnel still relays: a ping comes back.
async fn relays(stream: &mut TcpStream) -> bool {
    if stream.write_all(b"ping").await.is_err() {
        return false;
    }
    let mut back = [0u8; 4];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut back)).await,
        Ok(Ok(_))
    ) && &back == b"ping"
}

/// Catches a build whose tunnels leave their connection slot when they switch protocols: with
/// `max_connections = 3`, three open tunnels leave no room for a fourth client until one closes.
#[tokio::test]
async fn open_tunnels_count_against_max_connections() {
    let (backend, _) = switching_backend(None).await;
    let gateway = gateway_before(backend, "", "max_connections = 3").await;
    let mut tunnels = Vec::new();
    for _ in 0..3 {
        let mut tunnel = open_tunnel(&gateway).await;
        assert!(relays(&mut tunnel).await);
        tunnels.push(tunnel);
    }
    let waiting = tokio::spawn(async move {
        crate::common::request(gateway.addr, "GET", "/public/x", &[], b"").await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a fourth client waits while three tunnels are open"
    );
    drop(tunnels.pop());
    let response = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a tunnel closed")
        .unwrap();
    assert_eq!(response.status, 200);
    for tunnel in &mut tunnels {
        assert!(relays(tunnel).await, "the other tunnels still relay");
    }
}

/// Catches a build whose tunnels never time out: an idle one is closed after
/// `[websocket] idle_timeout_secs`, one that keeps talking is not.
#[tokio::test]
async fn an_idle_tunnel_is_closed_and_a_busy_one_kept() {
    let (backend, _) = switching_backend(None).await;
    let gateway = gateway_before(backend, "[websocket]\nidle_timeout_secs = 1\n", "").await;
    let mut idle = open_tunnel(&gateway).await;
    let mut busy = open_tunnel(&gateway).await;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        assert!(relays(&mut busy).await, "a tunnel in use stays open");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "the idle tunnel was closed: {closed:?}"
    );
    assert!(relays(&mut busy).await);
}
