//! Forwarding to upstreams: the pooled hyper-util client, request and response rewriting, and the
//! body limit applied while the body streams (never buffered whole).

use std::error::Error as _;
use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, HOST};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::auth::{self, Identity};
use crate::config::UpstreamConfig;
use crate::error::{Body, BoxError, GatewayError};
use crate::headers;
use crate::routes::Route;
use crate::server::AppState;

/// The pooled HTTP/1.1 client shared by all routes.
pub(crate) type UpstreamClient = Client<HttpConnector, Body>;

/// Builds the upstream client with the configured connect timeout and pool.
pub(crate) fn upstream_client(config: &UpstreamConfig) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(config.pool_max_idle_per_host)
        .build(connector)
}

/// Authenticates the request per the route and forwards it; answers with the upstream's response
/// and the identity that was forwarded, if any.
pub(crate) async fn forward<B>(
    state: &AppState,
    route: &Route,
    path: &str,
    peer: SocketAddr,
    request: Request<B>,
) -> Result<(Response<Body>, Option<Identity>), GatewayError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = request.into_parts();
    let client_host = parts.headers.get(HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
    });
    headers::remove_hop_by_hop(&mut parts.headers);
    headers::remove_gateway_owned(&mut parts.headers);

    let identity = auth::authenticate(&parts.headers, route.auth, &state.config.jwt.keys)?;

    let limit = state.config.server.max_body_bytes;
    if declared_length(&parts.headers).is_some_and(|length| length > limit) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }

    parts.uri = upstream_uri(route, path, parts.uri.query())?;
    parts.version = Version::HTTP_11;
    match (&client_host, route.preserve_host) {
        (Some(host), true) => parts.headers.insert(HOST, host.clone()),
        _ => parts.headers.insert(HOST, authority_header(route)?),
    };
    headers::set_forwarding(&mut parts.headers, peer.ip(), "http", client_host);
    if let Some(identity) = &identity {
        headers::set_identity(&mut parts.headers, identity);
    }

    let body = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX)).boxed_unsync();
    let upstream_request = Request::from_parts(parts, body);
    let response =
        match tokio::time::timeout(route.timeout, state.upstream.request(upstream_request)).await {
            Err(_elapsed) => return Err(GatewayError::UpstreamTimeout),
            Ok(Err(error)) => return Err(upstream_error(&error, limit)),
            Ok(Ok(response)) => response,
        };
    let (mut parts, body) = response.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers);
    Ok((
        Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync()),
        identity,
    ))
}

/// Reads a whole (small) body into memory, refusing more than `limit` bytes with 413.
pub(crate) async fn read_limited<B>(body: B, limit: u64) -> Result<Bytes, GatewayError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(GatewayError::PayloadTooLarge { limit })
        }
        Err(_) => Err(GatewayError::InvalidRequest(
            "the request body could not be read",
        )),
    }
}

/// The Content-Length the client declared, if any.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The upstream URI: the route's upstream, with the normalized path and the original query.
fn upstream_uri(route: &Route, path: &str, query: Option<&str>) -> Result<Uri, GatewayError> {
    let mut path_and_query = route.upstream_path(path);
    if let Some(query) = query {
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    let path_and_query = PathAndQuery::try_from(path_and_query)
        .map_err(|_| GatewayError::InvalidPath("the path cannot be forwarded"))?;
    Uri::builder()
        .scheme(route.upstream.scheme.clone())
        .authority(route.upstream.authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| GatewayError::InvalidPath("the path cannot be forwarded"))
}

/// The Host header for the upstream, from its configured authority.
fn authority_header(route: &Route) -> Result<HeaderValue, GatewayError> {
    HeaderValue::from_str(route.upstream.authority.as_str())
        .map_err(|_| GatewayError::Internal("the upstream authority is not a valid Host"))
}

/// Classifies a failed upstream exchange.
fn upstream_error(error: &hyper_util::client::legacy::Error, limit: u64) -> GatewayError {
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.downcast_ref::<LengthLimitError>().is_some() {
            return GatewayError::PayloadTooLarge { limit };
        }
        source = cause.source();
    }
    if error.is_connect() {
        tracing::warn!(error = %error, "upstream unreachable");
        GatewayError::UpstreamUnreachable
    } else {
        tracing::warn!(error = %error, "upstream exchange failed");
        GatewayError::UpstreamFailed
    }
}
