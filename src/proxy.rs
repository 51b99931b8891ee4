//! Forwarding to upstreams: request and response rewriting, WebSocket upgrades, and the body
//! limit applied while the body streams (never buffered whole). The connections themselves are
//! `upstream.rs`'s.

use std::borrow::Cow;
use std::error::Error as _;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST, UPGRADE};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::auth::{self, Identity};
use crate::http::error::{Body, BoxError, GatewayError};
use crate::http::headers;
use crate::http::request_id::RequestId;
use crate::http::websocket;
use crate::maybe_boxed::MaybeBoxed;
use crate::routes::Route;
use crate::state::AppState;
use crate::telemetry;
use crate::upstream::deadline;
use crate::upstream::group::{Outcome, UpstreamGroup};
use crate::upstream::UpstreamError;

use crate::client::ClientConnection;

mod client_body;
mod exchange;
use client_body::{ClientBody, ClientBodyError};
use exchange::Exchange;

/// Authenticates the request per the route and forwards it; answers with the upstream's response
/// and the identity that was forwarded, if any. (An `async` block, not an `async fn`, so that the
/// future holds one copy of the request, not two: see `dispatch::handle`.)
#[allow(
    clippy::manual_async_fn,
    reason = "one copy of the request in the future"
)]
pub(crate) fn forward<'a, B>(
    state: &'a AppState,
    route: &'a Route,
    path: &'a str,
    client: &'a ClientConnection,
    request_id: &'a RequestId,
    mut request: Request<B>,
) -> impl Future<Output = Result<(Response<Body>, Option<Arc<Identity>>), GatewayError>> + 'a
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    async move {
        if route.upstream.is_none() {
            return Err(GatewayError::NotFound);
        }
        let upgrade = websocket::requested_protocol(request.headers())
            .map(|protocol| (protocol, hyper::upgrade::on(&mut request)));
        let verified;
        // The request taken apart and rewritten in a block of its own, which ends before the
        // upstream is waited for: the parts and what was read from them end with it, and take no
        // room in this future (boxed per request) while the upstream answers.
        let (upstream_request, exchange, group) = {
            let (mut parts, body) = request.into_parts();
            let client_host = headers::request_head::client_host(&parts.uri, &parts.headers);
            let hop_by_hop_removed = headers::remove_hop_by_hop(&mut parts.headers);
            let from_proxy = state
                .config
                .server
                .trusted_proxies
                .contains(client.peer.ip())
                .then(|| headers::ProxyForwarding::read(&parts.headers));

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
            let authorizing = auth::authorize(
                state,
                &parts.headers,
                query_token.as_deref(),
                Some(&route.config),
            );
            // Traced requests get an `authenticate` span (see `telemetry::traced`).
            let sampled = state.tracing.is_some() && telemetry::sampled();
            verified = telemetry::traced(sampled, "authenticate", authorizing).await?;
            // Looked up after the wait for authorization, not kept across it (room in this future).
            let limit = state.config.server.max_body_bytes;
            let group = route.upstream.as_ref().ok_or(GatewayError::NotFound)?;

            // The declared Content-Length, as hyper read it (it refuses one that is not a number).
            if http_body::Body::size_hint(&body).lower() > limit {
                return Err(GatewayError::PayloadTooLarge { limit });
            }

            // The client's request target is sent as it came when it is exactly what would be built
            // (origin form, the path already normal and kept by the route, the query as it came):
            // most requests, and no allocation or parse for them.
            let target_as_is = route.forwards_path_as_is()
                && parts.uri.scheme().is_none()
                && parts.uri.authority().is_none()
                && parts.uri.path() == path
                && parts.uri.query() == query.as_deref();
            if !target_as_is {
                parts.uri = upstream_uri(route, path, query.as_deref())?;
            }
            parts.version = Version::HTTP_11;
            let openid = verified
                .as_ref()
                .map(|verified| verified.identity.openid.as_str());
            let first = group.pick(openid, None).ok_or_else(|| {
                tracing::warn!(route = %route.config.prefix, "every upstream instance is out");
                GatewayError::UpstreamUnreachable
            })?;
            let host_is_instance = match (&client_host, route.config.preserve_host) {
                (Some(host), true) => {
                    parts.headers.insert(HOST, host.clone());
                    false
                }
                _ => {
                    let host = group.instances()[first].upstream.host_header.clone();
                    parts.headers.insert(HOST, host);
                    true
                }
            };
            let may_retry = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
                || http_body::Body::is_end_stream(&body);
            if !route.config.forward_authorization {
                parts.headers.remove(AUTHORIZATION);
            }
            let identity = match &verified {
                Some(verified) => Some(auth::forwarded_identity(
                    state,
                    verified,
                    &route.config.audience,
                )?),
                None => None,
            };
            let owned = headers::GatewayOwned {
                client: &client.address,
                proto: client.proto,
                host: client_host,
                from_proxy,
                names: &state.identity_names,
                identity,
                request_id: request_id.header_value(),
            };
            headers::set_gateway_owned(&mut parts.headers, hop_by_hop_removed, owned);
            if let Some((protocol, _)) = &upgrade {
                websocket::set_upgrade_headers(&mut parts.headers, protocol.clone());
            }
            // A route with several instances, or a traced request, takes the boxed exchange; the
            // plain one is inline (see `exchange.rs`).
            let exchange = match takes_the_plain_exchange(state, group) {
                true => None,
                false => Some(Exchange {
                    clients: &state.upstreams,
                    group,
                    first,
                    may_retry,
                    host_is_instance,
                    openid,
                    timer: &client.upstream_timer,
                    tracing: state.tracing.as_deref(),
                }),
            };

            // An unsampled traced request on the plain exchange: the upstream's parent is the
            // gateway's request span (the boxed exchange sets its own).
            if let (None, Some(tracing)) = (&exchange, &state.tracing) {
                tracing.inject_current(&mut parts.headers);
            }

            // Without a body (most requests), an empty one: it takes no allocation.
            let body = if http_body::Body::is_end_stream(&body) {
                Body::default()
            } else {
                let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
                let between_frames = state.config.server.body_read_timeout;
                ClientBody::new(limited, between_frames).boxed_unsync()
            };
            (Request::from_parts(parts, body), exchange, group)
        };
        let started = std::time::Instant::now();
        // The boxed exchange keeps its own deadline and records its own outcomes.
        let due = due(started, route);
        let answer = deadline::within(
            &client.upstream_timer,
            due.filter(|_| takes_the_plain_exchange(state, group)),
            match exchange {
                None => MaybeBoxed::Inline {
                    future: state
                        .upstreams
                        .send(&group.instances()[0].upstream, upstream_request),
                },
                Some(exchange) => MaybeBoxed::Boxed {
                    future: Box::pin(exchange.run_until(due, upstream_request)),
                },
            },
        )
        .await;
        state
            .metrics
            .observe_upstream(&route.config.prefix, started.elapsed());
        let mut response = match answer {
            Err(deadline::TimedOut) => {
                record_plain(state, route, Some(Outcome::TimedOut));
                return Err(GatewayError::UpstreamTimeout);
            }
            Ok(Err(error)) => {
                let answer = upstream_error(&error, state.config.server.max_body_bytes);
                match &error {
                    UpstreamError::Connect(_) => {
                        record_plain(state, route, Some(Outcome::ConnectFailed))
                    }
                    UpstreamError::Exchange(_)
                        if matches!(answer, GatewayError::UpstreamFailed) =>
                    {
                        record_plain(state, route, Some(Outcome::Failed))
                    }
                    _ => {}
                }
                return Err(answer);
            }
            Ok(Ok(response)) => {
                record_plain(state, route, None);
                response
            }
        };
        // Only a switch to the WebSocket protocol the client asked for is relayed: any other 101
        // (none asked for, or another protocol such as h2c) would open a tunnel the gateway
        // cannot see into, so it is a 502.
        let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        let upstream_protocol = switched
            .then(|| response.headers().get(UPGRADE).cloned())
            .flatten()
            .filter(websocket::is_websocket);
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
            let guards = websocket::RelayGuards {
                drain: state.drain_guard(),
                slot: client.slot.clone(),
            };
            let idle = state.config.websocket.idle_timeout;
            websocket::spawn_relay(client_upgrade, upstream_upgrade, guards, idle);
        }
        Ok((
            Response::from_parts(parts, body),
            verified.map(|verified| verified.identity.clone()),
        ))
    }
}

/// Whether a request to `group` takes the plain exchange (one instance, not sampled), whose
/// outcomes the proxy records itself; asked again rather than kept across the upstream's answer,
/// where it would take room in the proxied request's future.
fn takes_the_plain_exchange(state: &AppState, group: &UpstreamGroup) -> bool {
    group.instances().len() == 1 && (state.tracing.is_none() || !telemetry::sampled())
}

/// Records the plain exchange's outcome (`None`: answered) against the route's one instance,
/// which is never taken out: the records are its metrics. (The boxed exchange records its own.)
/// The group is looked up again from the route rather than kept across the upstream's answer,
/// where it would take room in the proxied request's future.
fn record_plain(state: &AppState, route: &Route, outcome: Option<Outcome>) {
    let Some(group) = route.upstream.as_deref() else {
        return;
    };
    if takes_the_plain_exchange(state, group) {
        match outcome {
            None => group.answered(0),
            Some(outcome) => group.failed(0, outcome),
        }
    }
}

/// When the upstream's response head is due for a request sent at `started`; `None` for a
/// timeout too long to be one (the config allows any).
fn due(started: std::time::Instant, route: &Route) -> Option<tokio::time::Instant> {
    tokio::time::Instant::from_std(started).checked_add(route.config.timeout)
}

/// The request target sent upstream (origin form): the normalized path, as the route maps it, and
/// the original query.
fn upstream_uri(route: &Route, path: &str, query: Option<&str>) -> Result<Uri, GatewayError> {
    let mut path_and_query = route.upstream_path(path);
    if let Some(query) = query {
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    PathAndQuery::try_from(path_and_query)
        .map(Uri::from)
        .map_err(|_| GatewayError::InvalidPath("the path cannot be forwarded"))
}

/// Classifies a failed upstream exchange.
fn upstream_error(error: &UpstreamError, limit: u64) -> GatewayError {
    match error {
        UpstreamError::Busy => {
            tracing::warn!("upstream.max_in_flight reached; request refused");
            GatewayError::UpstreamBusy
        }
        UpstreamError::Connect(unsent) => {
            tracing::warn!(error = %unsent.reason, "upstream unreachable");
            GatewayError::UpstreamUnreachable
        }
        UpstreamError::TimedOut => GatewayError::UpstreamTimeout,
        UpstreamError::Exchange(error) => match client_fault(error) {
            Some(ClientFault::TooLarge) => GatewayError::PayloadTooLarge { limit },
            Some(ClientFault::Body(client)) => {
                tracing::debug!(error = %client, "forwarded request body failed");
                client.answer()
            }
            None => {
                tracing::warn!(%error, "upstream exchange failed");
                GatewayError::UpstreamFailed
            }
        },
    }
}

/// How a failed exchange was the client's doing, not the upstream's.
enum ClientFault<'a> {
    /// The body went over `server.max_body_bytes` while it streamed.
    TooLarge,
    /// The client's body broke off or stalled.
    Body(&'a ClientBodyError),
}

/// Whether a failed exchange was the client's doing (its body), from the error's causes.
fn client_fault(error: &hyper::Error) -> Option<ClientFault<'_>> {
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.downcast_ref::<LengthLimitError>().is_some() {
            return Some(ClientFault::TooLarge);
        }
        if let Some(client) = cause.downcast_ref::<ClientBodyError>() {
            return Some(ClientFault::Body(client));
        }
        source = cause.source();
    }
    None
}
