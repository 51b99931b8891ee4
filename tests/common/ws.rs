//! A WebSocket echo upstream: its first message describes the upgrade request it received (URI and
//! identity headers), then it echoes every message until the client closes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// Starts the echo upstream; the counter tells how many upgrades reached it.
// The handshake callback's signature (and its large error type) is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
pub async fn ws_echo_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = super::bind().await;
    let addr = listener.local_addr().unwrap();
    let upgrades = Arc::new(AtomicUsize::new(0));
    let counter = upgrades.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let seen = Arc::new(Mutex::new(serde_json::Value::Null));
                let record = seen.clone();
                let callback = move |request: &Request, response: Response| {
                    let header = |name: &str| {
                        request
                            .headers()
                            .get_all(name)
                            .iter()
                            .map(|v| v.to_str().unwrap().to_string())
                            .collect::<Vec<_>>()
                    };
                    *record.lock().unwrap() = serde_json::json!({
                        "uri": request.uri().to_string(),
                        "x-openid": header("x-openid"),
                        "authorization": header("authorization"),
                    });
                    Ok(response)
                };
                let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await
                else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let hello = seen.lock().unwrap().to_string();
                if socket.send(Message::text(hello)).await.is_err() {
                    return;
                }
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_close() {
                        break;
                    }
                    if socket.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, upgrades)
}
