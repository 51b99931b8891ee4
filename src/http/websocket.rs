//! WebSocket pass-through (HTTP/1.1 `Upgrade`): the upgrade request is authenticated and rewritten
//! like any other request, then, once the upstream answers 101, bytes are relayed both ways until
//! either side closes or the tunnel has been idle for `[websocket] idle_timeout_secs`. The relay
//! holds a drain guard so shutdown waits for open sockets, and its client connection's slot so
//! open tunnels count against `server.max_connections`.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

/// Held by every open relay; shutdown waits until all of them are dropped.
pub(crate) type DrainGuard = mpsc::Sender<()>;

/// The protocol a request asks to switch to, when it is a WebSocket upgrade request
/// (`Connection: upgrade` and one `Upgrade` header whose only token is `websocket`, in any case).
/// Any other upgrade (`h2c`, TLS, a list of protocols) is not one: its `Upgrade` header goes with
/// the other hop-by-hop headers and the request is served as plain HTTP, so no tunnel the gateway
/// cannot see into (an h2c connection carrying requests for any path) is ever opened.
pub(crate) fn requested_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if !asks_upgrade {
        return None;
    }
    let mut values = headers.get_all(UPGRADE).iter();
    let protocol = values.next()?;
    (values.next().is_none() && is_websocket(protocol)).then(|| protocol.clone())
}

/// Whether an `Upgrade` value names the WebSocket protocol and nothing else.
pub(crate) fn is_websocket(protocol: &HeaderValue) -> bool {
    protocol
        .to_str()
        .is_ok_and(|text| text.trim().eq_ignore_ascii_case("websocket"))
}

/// Restores the upgrade headers that hop-by-hop removal dropped.
pub(crate) fn set_upgrade_headers(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol);
}

/// Splits the token parameter out of a query: (the token, the query without it). A parameter given
/// twice is ambiguous and refused.
pub(crate) fn take_query_token(
    query: &str,
    param: &str,
) -> Result<(Option<String>, String), crate::http::error::GatewayError> {
    let mut token = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let name = pair.split('=').next().unwrap_or_default();
        let decoded: String = form_urlencoded::parse(name.as_bytes())
            .next()
            .map(|(name, _)| name.into_owned())
            .unwrap_or_default();
        if decoded == param {
            if token.is_some() {
                return Err(crate::http::error::GatewayError::InvalidToken(
                    "more than one token in the query",
                ));
            }
            token = form_urlencoded::parse(pair.as_bytes())
                .next()
                .map(|(_, value)| value.into_owned());
        } else {
            rest.push(pair);
        }
    }
    // Kept pairs are copied byte for byte: the upstream sees the rest of the query unchanged.
    Ok((token, rest.join("&")))
}

/// The client connection's slot among `server.max_connections`: a relay holds it for as long as
/// the tunnel is open, so tunnels count against the limit like the connections they came from.
pub(crate) type ConnectionSlot = Arc<tokio::sync::OwnedSemaphorePermit>;

/// What an open relay holds: shutdown waits for its drain guard, and its connection slot stays
/// taken until it closes.
pub(crate) struct RelayGuards {
    /// Dropped when the relay ends; shutdown waits for every one.
    pub(crate) drain: DrainGuard,
    /// The client connection's slot.
    pub(crate) slot: ConnectionSlot,
}

/// Relays bytes between the client and the upstream once both sides have switched protocols,
/// until either side closes or no byte has gone either way for `idle_timeout`.
pub(crate) fn spawn_relay(
    client: OnUpgrade,
    upstream: OnUpgrade,
    guards: RelayGuards,
    idle_timeout: Duration,
) {
    tokio::spawn(async move {
        // Held until the relay ends: shutdown waits for the one, a new client for the other.
        let _held = (guards.drain, guards.slot);
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%error, "websocket upgrade did not complete");
                return;
            }
        };
        let activity = Activity::new();
        let mut client = Watched::new(TokioIo::new(client), activity.clone());
        let mut upstream = Watched::new(TokioIo::new(upstream), activity.clone());
        tokio::select! {
            relayed = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(error) = relayed {
                    tracing::debug!(%error, "websocket relay ended with an error");
                }
            }
            () = activity.idle_for(idle_timeout) => {
                tracing::debug!("websocket relay closed: idle");
            }
        }
    });
}

/// When a relay last moved a byte, in milliseconds since it started.
#[derive(Clone)]
struct Activity {
    started: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            last_ms: Arc::default(),
        }
    }

    fn record(&self) {
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(elapsed, Ordering::Relaxed);
    }

    /// Resolves once no byte has moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let Some(due) = self.started.checked_add(last + limit) else {
                // Too far off to be a deadline: never idle.
                return std::future::pending().await;
            };
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// One side of a relay, recording every read that brought bytes (what one side reads, the relay
/// writes to the other, so reads on both sides are all the traffic).
struct Watched<T> {
    io: T,
    activity: Activity,
}

impl<T> Watched<T> {
    fn new(io: T, activity: Activity) -> Self {
        Watched { io, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.record();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_needs_both_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert!(requested_protocol(&headers).is_none());
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert_eq!(requested_protocol(&headers).unwrap(), "websocket");
        headers.insert(UPGRADE, HeaderValue::from_static("WebSocket"));
        assert_eq!(requested_protocol(&headers).unwrap(), "WebSocket");
    }

    #[test]
    fn only_websocket_upgrades_are_upgrades() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONNECTION,
            HeaderValue::from_static("Upgrade, HTTP2-Settings"),
        );
        for other in [
            "h2c",
            "TLS/1.2",
            "websocket, h2c",
            "h2c, websocket",
            "websocketx",
            "",
        ] {
            headers.insert(UPGRADE, HeaderValue::from_static(other));
            assert!(requested_protocol(&headers).is_none(), "{other:?}");
        }
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.append(UPGRADE, HeaderValue::from_static("h2c"));
        assert!(
            requested_protocol(&headers).is_none(),
            "two Upgrade headers"
        );
    }

    #[test]
    fn query_token_is_taken_and_the_rest_kept_verbatim() {
        let (token, rest) =
            take_query_token("a=1&access_token=abc%2Edef&b=x%20y", "access_token").unwrap();
        assert_eq!(token.as_deref(), Some("abc.def"));
        assert_eq!(rest, "a=1&b=x%20y");
        let (token, rest) = take_query_token("a=1", "access_token").unwrap();
        assert_eq!((token, rest.as_str()), (None, "a=1"));
        assert!(take_query_token("access_token=1&access_token=2", "access_token").is_err());
    }
}
