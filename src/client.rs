//! The client's side of a request: the connection it came in on (address, scheme, the upstream
//! timer its requests share, its connection slot), and reading a small body whole for the
//! gateway's own endpoints, within the body limits. Below the endpoints that use it (login, auth,
//! forward-auth, the proxy) and above the state it reads the limits from.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::http::error::{BoxError, GatewayError};
use crate::http::headers;
use crate::http::websocket;
use crate::state::AppState;
use crate::upstream::deadline::DeadlineTimer;

/// Where the client's request came in, for X-Forwarded-* and the upgrade relay.
pub(crate) struct ClientConnection {
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// The client's IP address, with its header text.
    pub(crate) address: headers::PeerAddress,
    /// `http` or `https`.
    pub(crate) proto: &'static str,
    /// The connection's timer for its requests' upstream deadlines (`routes[].timeout_ms`).
    pub(crate) upstream_timer: DeadlineTimer,
    /// The connection's slot among `server.max_connections`, which a WebSocket relay keeps.
    pub(crate) slot: websocket::ConnectionSlot,
}

/// Reads a whole (small) body into memory for one of the gateway's own endpoints, refusing more
/// than `server.max_body_bytes` with 413 and a body not all there within
/// `server.body_read_timeout_ms` with 408.
pub(crate) async fn read_limited<B>(state: &AppState, body: B) -> Result<Bytes, GatewayError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let server = &state.config.server;
    let limit = server.max_body_bytes;
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    let collected = tokio::time::timeout(server.body_read_timeout, limited.collect())
        .await
        .map_err(|_| GatewayError::BodyReadTimeout)?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(GatewayError::PayloadTooLarge { limit })
        }
        Err(_) => Err(GatewayError::InvalidRequest(
            "the request body could not be read",
        )),
    }
}
