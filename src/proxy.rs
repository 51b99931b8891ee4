//! Forwarding to upstreams: the pooled hyper-util clients (http, and https with the system roots
//! or a route's private CA), request and response rewriting, WebSocket upgrades, and the body
//! limit applied while the body streams (never buffered whole).

use std::borrow::Cow;
use std::collections::HashMap;
use std::error::Error as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, HOST, UPGRADE};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::auth::{self, Identity};
use crate::config::UpstreamConfig;
use crate::error::{Body, BoxError, GatewayError};
use crate::headers;
use crate::request_id::{RequestId, X_REQUEST_ID};
use crate::routes::{Route, Upstream, UpstreamCa};
use crate::state::AppState;
use crate::websocket;

/// A pooled HTTP/1.1 client reaching http and https upstreams.
pub(crate) type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

/// One client per trust configuration: the system roots, and each route's private CA.
#[derive(Debug)]
pub(crate) struct UpstreamClients {
    system_roots: UpstreamClient,
    by_ca: HashMap<PathBuf, UpstreamClient>,
}

impl UpstreamClients {
    /// Builds the clients the routes need.
    pub(crate) fn new(config: &UpstreamConfig, routes: &[Route]) -> Result<Self, String> {
        let mut by_ca = HashMap::new();
        let upstreams = routes.iter().filter_map(|route| route.upstream.as_ref());
        for ca in upstreams.filter_map(|upstream| upstream.ca.as_ref()) {
            if !by_ca.contains_key(&ca.file) {
                by_ca.insert(ca.file.clone(), upstream_client(config, Some(ca))?);
            }
        }
        Ok(UpstreamClients {
            system_roots: upstream_client(config, None)?,
            by_ca,
        })
    }

    fn for_upstream(&self, upstream: &Upstream) -> &UpstreamClient {
        upstream
            .ca
            .as_ref()
            .and_then(|ca| self.by_ca.get(&ca.file))
            .unwrap_or(&self.system_roots)
    }
}

/// Builds an upstream client with the configured connect timeout and pool.
fn upstream_client(
    config: &UpstreamConfig,
    ca: Option<&UpstreamCa>,
) -> Result<UpstreamClient, String> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(false);
    let extra_ca = ca.map(|ca| ca.certificates.as_slice()).unwrap_or_default();
    let tls = crate::tls::upstream_client_config(extra_ca)?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(config.pool_max_idle_per_host)
        .build(connector))
}

/// Where the client's request came in, for X-Forwarded-* and the upgrade relay.
pub(crate) struct ClientConnection {
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// `http` or `https`.
    pub(crate) proto: &'static str,
}

/// Authenticates the request per the route and forwards it; answers with the upstream's response
/// and the identity that was forwarded, if any.
pub(crate) async fn forward<B>(
    state: &AppState,
    route: &Route,
    path: &str,
    client: &ClientConnection,
    mut request: Request<B>,
) -> Result<(Response<Body>, Option<Identity>), GatewayError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let upstream = route.upstream.as_ref().ok_or(GatewayError::NotFound)?;
    let upgrade = websocket::requested_protocol(request.headers())
        .map(|protocol| (protocol, hyper::upgrade::on(&mut request)));
    let (mut parts, body) = request.into_parts();
    let client_host = parts.headers.get(HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
    });
    headers::remove_hop_by_hop(&mut parts.headers);
    let from_proxy = state
        .config
        .server
        .trusted_proxies
        .contains(client.peer.ip())
        .then(|| headers::ProxyForwarding::read(&parts.headers));
    headers::remove_gateway_owned(&mut parts.headers);

    // Borrowed unless the WebSocket token parameter has to be cut out of it.
    let mut query = parts.uri.query().map(Cow::Borrowed);
    let mut query_token = None;
    if let (Some(_), Some(param), Some(text)) = (
        &upgrade,
        &state.config.websocket.token_query_param,
        parts.uri.query(),
    ) {
        let (token, rest) = websocket::take_query_token(text, param)?;
        query_token = token;
        query = (!rest.is_empty()).then_some(Cow::Owned(rest));
    }
    let identity = auth::authenticate(
        state,
        &parts.headers,
        query_token.as_deref(),
        route.auth,
        route.apps.as_deref(),
    )
    .await?;
    if let Some(identity) = &identity {
        state
            .limits
            .check_route(route, &identity.openid, &state.metrics)?;
    }

    let limit = state.config.server.max_body_bytes;
    if declared_length(&parts.headers).is_some_and(|length| length > limit) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }

    parts.uri = upstream_uri(route, upstream, path, query.as_deref())?;
    parts.version = Version::HTTP_11;
    match (&client_host, route.preserve_host) {
        (Some(host), true) => parts.headers.insert(HOST, host.clone()),
        _ => parts.headers.insert(HOST, authority_header(upstream)?),
    };
    headers::set_forwarding(
        &mut parts.headers,
        client.peer.ip(),
        client.proto,
        client_host,
        from_proxy,
    );
    if let Some(identity) = &identity {
        headers::set_identity(&mut parts.headers, identity);
    }
    if let Some(id) = parts.extensions.get::<RequestId>() {
        parts
            .headers
            .insert(X_REQUEST_ID, id.header_value().clone());
    }
    if let Some((protocol, _)) = &upgrade {
        websocket::set_upgrade_headers(&mut parts.headers, protocol.clone());
    }

    let body = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX)).boxed_unsync();
    let upstream_request = Request::from_parts(parts, body);
    let client_for_route = state.upstreams.for_upstream(upstream);
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(route.timeout, client_for_route.request(upstream_request));
    let answer = answer.await;
    state
        .metrics
        .observe_upstream(&route.prefix, started.elapsed());
    let mut response = match answer {
        Err(_elapsed) => return Err(GatewayError::UpstreamTimeout),
        Ok(Err(error)) => return Err(upstream_error(&error, limit)),
        Ok(Ok(response)) => response,
    };
    let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let upstream_protocol = response.headers().get(UPGRADE).cloned();
    if switched && (upgrade.is_none() || upstream_protocol.is_none()) {
        tracing::warn!("upstream switched protocols without a matching upgrade request");
        return Err(GatewayError::UpstreamFailed);
    }
    let upstream_upgrade = switched.then(|| hyper::upgrade::on(&mut response));
    let (mut parts, body) = response.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers);
    if let (Some((_, client_upgrade)), Some(upstream_upgrade), Some(protocol)) =
        (upgrade, upstream_upgrade, upstream_protocol)
    {
        websocket::set_upgrade_headers(&mut parts.headers, protocol);
        websocket::spawn_relay(client_upgrade, upstream_upgrade, state.drain_guard());
    }
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
fn upstream_uri(
    route: &Route,
    upstream: &Upstream,
    path: &str,
    query: Option<&str>,
) -> Result<Uri, GatewayError> {
    let mut path_and_query = route.upstream_path(path);
    if let Some(query) = query {
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    let path_and_query = PathAndQuery::try_from(path_and_query)
        .map_err(|_| GatewayError::InvalidPath("the path cannot be forwarded"))?;
    Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| GatewayError::InvalidPath("the path cannot be forwarded"))
}

/// The Host header for the upstream, from its configured authority.
fn authority_header(upstream: &Upstream) -> Result<HeaderValue, GatewayError> {
    HeaderValue::from_str(upstream.authority.as_str())
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
