//! One request: its id, the normalized path, what the path is for (an endpoint or a route), the
//! answer, the metrics and the log line.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, Version};
use hyper::body::Incoming;

use crate::auth::Identity;
use crate::client::ClientConnection;
use crate::endpoints::stack::{self, Endpoint};
use crate::endpoints::{decrypt, forward_auth, jwks, phone, session_check};
use crate::http::error::{Body, GatewayError};
use crate::http::headers::request_head;
use crate::http::path;
use crate::http::request_id::{RequestId, X_REQUEST_ID};
use crate::proxy;
use crate::routes::Route;
use crate::state::AppState;
use crate::telemetry::{self, RequestTrace, TraceId};

/// What a normalized path is for.
enum Target<'a> {
    /// Login, refresh, logout and the `/wx/...` endpoints: answered through `endpoints::stack`.
    Endpoint(Endpoint),
    ForwardAuth,
    Jwks,
    Route(&'a Route),
    Unrouted,
}

impl<'a> Target<'a> {
    /// The gateway endpoint, or the route, that answers the normalized `path`.
    fn of(state: &'a AppState, path: &str) -> Target<'a> {
        let login = &state.config.login;
        match path {
            _ if login.covers(path) => Target::Endpoint(Endpoint::Login),
            _ if path == login.refresh_path => Target::Endpoint(Endpoint::Refresh),
            _ if path == login.logout_path => Target::Endpoint(Endpoint::Logout),
            phone::PATH => Target::Endpoint(Endpoint::Phone),
            session_check::PATH => Target::Endpoint(Endpoint::SessionCheck),
            _ if state.config.wechat.push_app(path).is_some() => Target::Endpoint(Endpoint::Push),
            decrypt::PATH => Target::Endpoint(Endpoint::Decrypt),
            _ if state.config.forward_auth.covers(path) => Target::ForwardAuth,
            jwks::PATH => Target::Jwks,
            _ => state
                .routes
                .find(path)
                .map_or(Target::Unrouted, Target::Route),
        }
    }

    /// The `route` label of the metrics: the endpoint's name or the route's prefix.
    fn label(&self) -> &str {
        match self {
            Target::Endpoint(Endpoint::Login) => "login",
            Target::Endpoint(Endpoint::Refresh) => "token_refresh",
            Target::Endpoint(Endpoint::Logout) => "logout",
            Target::Endpoint(Endpoint::Phone) => "wx_phone",
            Target::Endpoint(Endpoint::SessionCheck) => "wx_session_check",
            Target::Endpoint(Endpoint::Push) => "wx_push",
            Target::Endpoint(Endpoint::Decrypt) => "wx_decrypt",
            Target::ForwardAuth => "forward_auth",
            Target::Jwks => "jwks",
            Target::Route(route) => &route.config.prefix,
            Target::Unrouted => "none",
        }
    }
}

/// Answers one request, counts it and logs it: request id, method, path, status, latency,
/// openid. Never the query (it may carry credentials) nor any other header.
///
/// A plain function returning an `async` block rather than an `async fn`: an `async fn` keeps a
/// second copy of each argument (the request, the client) in its future, which is moved at every
/// request; the block keeps only what it captured.
#[allow(
    clippy::manual_async_fn,
    reason = "one copy of the request in the future"
)]
pub(super) fn handle<'a>(
    state: &'a Arc<AppState>,
    client: Arc<ClientConnection>,
    request: Request<Incoming>,
) -> impl Future<Output = Response<Body>> + 'a {
    async move {
        let started = Instant::now();
        let request_id = RequestId::for_request(request.headers());
        let method = request.method().clone();
        let refused =
            if request.version() == Version::HTTP_2 && !state.config.server.http2_enabled() {
                Some(GatewayError::HttpVersionNotSupported)
            } else {
                request_head::check(request.version(), request.uri(), request.headers()).err()
            };
        // A clone shares the URI's bytes: the normalized path borrows from it (when the path is
        // already normal, as most are) while the request moves on.
        let uri = request.uri().clone();
        let normalized = path::normalize(uri.path());
        let target = match &normalized {
            Ok(path) if refused.is_none() => Target::of(state, path),
            _ => Target::Unrouted,
        };
        // A traced request's span, under the client's `traceparent` (tracing on only).
        let traced = state
            .tracing
            .as_ref()
            .map(|tracing| tracing.request(&method, target.label(), request.headers()));
        let (answer, logged_path) = match (normalized, refused) {
            (Ok(_), Some(error)) => (Err(error), Cow::Borrowed(uri.path())),
            (Ok(path), None) => {
                let answer = dispatch(state, &target, &path, &client, &request_id, request);
                let context = traced.clone();
                (
                    crate::logging::in_request(request_id.clone(), context, answer).await,
                    path,
                )
            }
            (Err(error), _) => (Err(error), Cow::Borrowed(uri.path())),
        };
        if matches!(target, Target::Endpoint(Endpoint::Login)) {
            count_login(state, &answer);
        }
        let (mut response, identity) = match answer {
            Ok(answered) => answered,
            Err(error) => {
                count_rejection(state, &error);
                (error.into_response(), None)
            }
        };
        let openid = identity.as_ref().map(|identity| identity.openid.as_str());
        if let Some(context) = &traced {
            telemetry::end_request(context, &logged_path, response.status());
        }
        let answered = Answered {
            label: target.label(),
            request_id: &request_id,
            method: &method,
            path: &logged_path,
            started,
            trace_id: traced.as_ref().and_then(RequestTrace::trace_id),
        };
        answered.finish(state, &mut response, openid);
        response
    }
}

/// What the end of every answered request needs, on every listener that serves requests.
pub(super) struct Answered<'a> {
    /// The `route` label of the metrics.
    pub(super) label: &'a str,
    pub(super) request_id: &'a RequestId,
    pub(super) method: &'a http::Method,
    /// The path as logged: normalized, never with its query.
    pub(super) path: &'a str,
    pub(super) started: Instant,
    /// The request's trace (tracing on), for the request line.
    pub(super) trace_id: Option<TraceId>,
}

impl Answered<'_> {
    /// Sets `X-Request-Id` on the response, counts it and logs the request line.
    pub(super) fn finish(
        &self,
        state: &AppState,
        response: &mut Response<Body>,
        openid: Option<&str>,
    ) {
        response
            .headers_mut()
            .insert(X_REQUEST_ID, self.request_id.header_value().clone());
        let took = self.started.elapsed();
        state
            .metrics
            .observe_request(self.label, response.status(), took);
        crate::logging::RequestLine {
            request_id: self.request_id.as_str(),
            method: self.method,
            path: self.path,
            status: response.status().as_u16(),
            latency: took,
            openid,
            trace_id: self.trace_id,
        }
        .log();
    }
}

/// What answering a request yields: the response, and who it was for.
type Answer = Result<(Response<Body>, Option<Arc<Identity>>), GatewayError>;

/// Starts the endpoint or route picked for the normalized path. Each one's future is boxed as it
/// is made, the request moved straight into it: the request's own future holds a pointer, not
/// room for the largest endpoint, and the request is not copied into a future in between.
fn dispatch<'a>(
    state: &'a Arc<AppState>,
    target: &Target<'a>,
    path: &'a str,
    client: &'a ClientConnection,
    request_id: &'a RequestId,
    request: Request<Incoming>,
) -> Pin<Box<dyn Future<Output = Answer> + Send + 'a>> {
    match *target {
        Target::Endpoint(endpoint) => Box::pin(stack::answer(stack::Call {
            state,
            endpoint,
            path,
            client,
            request,
        })),
        Target::ForwardAuth => Box::pin(forward_auth::handle(state, path, client, request)),
        Target::Jwks => {
            let answer = jwks::handle(request.method(), &state.keys);
            Box::pin(std::future::ready(answer.map(|response| (response, None))))
        }
        Target::Route(route) => Box::pin(proxy::forward(
            state, route, path, client, request_id, request,
        )),
        Target::Unrouted => Box::pin(std::future::ready(Err(GatewayError::NotFound))),
    }
}

/// Counts a login by its outcome and the WeChat errcode behind it.
fn count_login(state: &AppState, answer: &Answer) {
    match answer {
        Ok(_) => state.metrics.count_login("success", Some(0)),
        Err(error) => state
            .metrics
            .count_login(error.code(), error.wechat_errcode()),
    }
}

/// Counts a request refused for its bearer token, by reason.
fn count_rejection(state: &AppState, error: &GatewayError) {
    let reason = match error {
        GatewayError::MissingToken => "missing token".to_string(),
        GatewayError::InvalidToken(reason) => (*reason).to_string(),
        GatewayError::SessionExpired => "session expired".to_string(),
        GatewayError::AppNotAllowed => "app not allowed".to_string(),
        _ => return,
    };
    state
        .metrics
        .count_token_rejection(&reason.replace(' ', "_"));
}

/// The largest allocation glibc serves from its per-thread cache (tcache) on 64-bit Linux: the
/// proxied request's future, boxed per request in [`dispatch`], is kept within it, so that the
/// allocation and its free take the cache's fast path instead of the arena's lock.
#[cfg(all(test, not(debug_assertions)))]
const GLIBC_TCACHE_MAX_BYTES: usize = 1032;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::config::Config;
    use crate::upstream::deadline::DeadlineTimer;

    /// Guards the fence around the proxy's speed work: the future of a proxied request, built
    /// from a real `Request<Incoming>` as `dispatch` builds it, fits glibc's per-thread cache in
    /// the release profile (`.ci/run` runs this test with `--release`; a debug build's futures are
    /// larger and only reported).
    #[tokio::test]
    async fn the_proxied_requests_future_fits_glibcs_per_thread_cache() {
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = Config::from_toml(
            &format!(
                "[wechat]\nappid = \"wx1\"\nsecret = \"s\"\n\
                 [jwt]\nsecret = \"a-secret-that-is-at-least-32-bytes-long!\"\n\
                 [session]\nstore = \"memory\"\n\
                 [[routes]]\nprefix = \"/api\"\nupstream = \"http://{}\"\nauth = \"none\"\n",
                upstream.local_addr().unwrap()
            ),
            std::iter::empty(),
        )
        .unwrap();
        let (relays, _) = tokio::sync::mpsc::channel(1);
        let state = Arc::new(AppState::build(config, crate::state::Origin::Start(relays)).unwrap());
        let measured = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = {
            let (state, measured) = (state.clone(), measured.clone());
            tokio::spawn(async move {
                let (stream, peer) = listener.accept().await.unwrap();
                let slot = Arc::new(
                    Arc::new(tokio::sync::Semaphore::new(1))
                        .acquire_owned()
                        .await
                        .unwrap(),
                );
                let client = Arc::new(ClientConnection {
                    peer,
                    address: crate::http::headers::PeerAddress::new(peer.ip()),
                    proto: "http",
                    upstream_timer: DeadlineTimer::default(),
                    slot,
                });
                let service = service_fn(move |request: Request<Incoming>| {
                    let (state, client, measured) =
                        (state.clone(), client.clone(), measured.clone());
                    async move {
                        let route = state.routes.find("/api/x").unwrap();
                        let request_id = RequestId::for_request(request.headers());
                        let future =
                            proxy::forward(&state, route, "/api/x", &client, &request_id, request);
                        measured.store(std::mem::size_of_val(&future), Ordering::SeqCst);
                        let answer = future.await;
                        Ok::<_, std::convert::Infallible>(match answer {
                            Ok((response, _)) => response,
                            Err(error) => error.into_response(),
                        })
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            })
        };
        // The upstream answers one request.
        tokio::spawn(async move {
            let (mut stream, _) = upstream.accept().await.unwrap();
            let mut head = [0u8; 1024];
            let _ = stream.read(&mut head).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        });
        let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
        client
            .write_all(b"GET /api/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        server.await.unwrap();
        let size = measured.load(Ordering::SeqCst);
        assert!(size > 0, "measured");
        eprintln!("the proxied request's future: {size} bytes");
        #[cfg(not(debug_assertions))]
        assert!(
            size <= GLIBC_TCACHE_MAX_BYTES,
            "the proxied request's future is {size} bytes, more than glibc's per-thread cache \
             serves ({GLIBC_TCACHE_MAX_BYTES}): see upstream/deadline.rs and bench/RESULTS.md"
        );
    }
}
