//! The upstream exchange of a request that needs more than the plain path: a route with several
//! instances (the chosen one, another when it cannot be reached, the health records) or a traced
//! request (the upstream span). The proxy boxes it: the proxied request's future, itself boxed
//! per request and sized to fit glibc's per-thread cache (see `dispatch::handle`), then holds a
//! pointer where the plain exchange sits, so a route with one instance and tracing off pays for
//! none of this.

use std::sync::Arc;

use http::header::HOST;
use http::{Request, Response};
use opentelemetry::KeyValue;

use crate::http::error::Body;
use crate::telemetry::{ChildSpan, Tracing};
use crate::upstream::deadline::{self, DeadlineTimer, TimedOut};
use crate::upstream::group::{Outcome, UpstreamGroup};
use crate::upstream::{UpstreamClients, UpstreamError};

/// What an exchange came to.
pub(super) type Sent = Result<Response<Body>, UpstreamError>;

/// One request's exchange with a group's instances: references and flags only (no drop glue),
/// so that where the plain exchange is taken instead it takes no room in the proxied request's
/// future.
#[derive(Clone, Copy)]
pub(super) struct Exchange<'a> {
    pub(super) clients: &'a UpstreamClients,
    pub(super) group: &'a Arc<UpstreamGroup>,
    /// The instance picked first.
    pub(super) first: usize,
    /// Whether the request may go to another instance when no connection to the first could be
    /// made: what may be sent twice (RFC 9110's idempotent methods) or carries no body.
    pub(super) may_retry: bool,
    /// Whether the Host header names the instance (and so changes with it).
    pub(super) host_is_instance: bool,
    /// The caller, whose openid `openid_hash`'s second choice follows.
    pub(super) openid: Option<&'a str>,
    pub(super) timer: &'a DeadlineTimer,
    /// The tracer, when tracing is on: the exchange gets a span of its own.
    pub(super) tracing: Option<&'a Tracing>,
}

impl Exchange<'_> {
    /// Sends `request`, its response head due at `due`, once more to another instance when the
    /// first could not be reached and the request may go twice; records every outcome against
    /// the instance (a failed client body is not the instance's failure). A timeout is
    /// answered as [`UpstreamError::TimedOut`].
    pub(super) async fn run_until(
        self,
        due: Option<tokio::time::Instant>,
        request: Request<Body>,
    ) -> Sent {
        let Exchange {
            clients,
            group,
            first,
            may_retry,
            host_is_instance,
            openid,
            timer,
            tracing,
        } = self;
        let mut request = request;
        let span = traced_upstream(tracing, request.headers_mut());
        let instances = group.instances();
        span.set(KeyValue::new(
            "server.address",
            instances[first].label.to_string(),
        ));
        let mut index = first;
        let mut load = UpstreamGroup::load(group, first);
        let sending = clients.send(&instances[first].upstream, request);
        let mut answer = deadline::within(timer, due, sending).await;
        if let Ok(Err(UpstreamError::Connect(unsent))) = answer {
            group.failed(first, Outcome::ConnectFailed);
            let next = match may_retry {
                true => group.pick(openid, Some(first)),
                false => None,
            };
            answer = match next {
                None => Ok(Err(UpstreamError::Connect(unsent))),
                Some(next) => {
                    tracing::debug!(
                        from = %instances[first].label,
                        to = %instances[next].label,
                        reason = %unsent.reason,
                        "upstream instance unreachable; sending to another"
                    );
                    span.set(KeyValue::new(
                        "server.address",
                        instances[next].label.to_string(),
                    ));
                    let mut request = unsent.request;
                    if host_is_instance {
                        let host = instances[next].upstream.host_header.clone();
                        request.headers_mut().insert(HOST, host);
                    }
                    index = next;
                    load = UpstreamGroup::load(group, next);
                    let sending = clients.send(&instances[next].upstream, request);
                    let again = deadline::within(timer, due, sending).await;
                    if let Ok(Err(UpstreamError::Connect(_))) = &again {
                        group.failed(next, Outcome::ConnectFailed);
                    }
                    again
                }
            };
        }
        match answer {
            Err(TimedOut) => {
                group.failed(index, Outcome::TimedOut);
                span.fail("timed out");
                Err(UpstreamError::TimedOut)
            }
            Ok(Ok(response)) => {
                let status = response.status();
                span.set(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status.as_u16()),
                ));
                if status.is_server_error() {
                    span.fail(status.as_str());
                }
                Ok(group.answered_with(index, response, load))
            }
            Ok(Err(error)) => {
                span.fail(match &error {
                    UpstreamError::Connect(_) => "unreachable",
                    UpstreamError::Exchange(_) => "exchange failed",
                    UpstreamError::Busy => "too many requests in flight",
                    UpstreamError::TimedOut => "timed out",
                });
                if let UpstreamError::Exchange(failure) = &error {
                    if super::client_fault(failure).is_none() {
                        group.failed(index, Outcome::Failed);
                    }
                }
                Err(error)
            }
        }
    }
}

/// The upstream span of a traced request, its context set as the request's `traceparent` (the
/// request span's when the request is not sampled: the upstream always gets the gateway's span
/// as parent); no span when tracing is off.
fn traced_upstream(tracing: Option<&Tracing>, headers: &mut http::HeaderMap) -> ChildSpan {
    let Some(tracing) = tracing else {
        return ChildSpan::none();
    };
    let span = ChildSpan::start("upstream", opentelemetry::trace::SpanKind::Client);
    match span.context() {
        Some(context) => tracing.inject(context, headers),
        None => tracing.inject_current(headers),
    }
    span
}
