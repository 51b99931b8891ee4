//! The listener: accept loop, connection limit, TLS handshake, HTTP/1.1 and HTTP/2 connections
//! with header limits and timeouts, graceful shutdown (in-flight requests and open WebSockets
//! finish), and the per-request dispatch (normalize -> login or route -> proxy) with its log line.
//!
//! `run` takes an already-bound listener and a shutdown future, so `main` and the tests start the
//! gateway the same way.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

use crate::access_token::AccessTokens;
use crate::auth::Identity;
use crate::config::Config;
use crate::error::{Body, GatewayError};
use crate::proxy::{ClientConnection, UpstreamClients};
use crate::routes::RouteTable;
use crate::session::SessionStore;
use crate::websocket::DrainGuard;
use crate::wechat::WeChatClient;
use crate::{decrypt, forward_auth, jwks, login, path, phone, proxy, token_lifecycle};

mod redirect;
pub use redirect::redirect_to_https;

/// How often a quiet HTTP/2 connection is pinged, and how long the answer may take.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Everything a request needs, built once at start and shared by every connection.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) config: Config,
    pub(crate) routes: RouteTable,
    pub(crate) wechat: WeChatClient,
    pub(crate) sessions: Arc<dyn SessionStore>,
    pub(crate) upstreams: UpstreamClients,
    pub(crate) access_tokens: AccessTokens,
    relays: DrainGuard,
}

impl AppState {
    fn new(config: Config, relays: DrainGuard) -> std::io::Result<Self> {
        Ok(AppState {
            routes: RouteTable::new(config.routes.clone()),
            wechat: WeChatClient::new(&config.wechat).map_err(std::io::Error::other)?,
            sessions: crate::session::from_config(&config.session)
                .map_err(std::io::Error::other)?,
            upstreams: UpstreamClients::new(&config.upstream, &config.routes)
                .map_err(std::io::Error::other)?,
            access_tokens: AccessTokens::new(&config.wechat.apps),
            config,
            relays,
        })
    }

    /// A guard for a new WebSocket relay: shutdown waits until every guard is dropped.
    pub(crate) fn drain_guard(&self) -> DrainGuard {
        self.relays.clone()
    }
}

/// What every connection task needs, shared.
struct Listener {
    state: Arc<AppState>,
    http: auto::Builder<TokioExecutor>,
    tls: Option<(tokio_rustls::TlsAcceptor, Duration)>,
}

/// Serves the gateway on `listener` until `shutdown` completes, then lets in-flight requests and
/// open WebSockets finish for up to `server.shutdown_grace_secs` and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let grace = config.server.shutdown_grace;
    let tls = match &config.server.tls {
        Some(tls_config) => {
            let (acceptor, resolver) = crate::tls::acceptor(tls_config, config.server.http2)
                .map_err(std::io::Error::other)?;
            let watcher = tokio::spawn(resolver.watch(tls_config.reload_interval));
            Some((acceptor, tls_config.handshake_timeout, watcher))
        }
        None => None,
    };
    let (relays, mut relays_done) = mpsc::channel::<()>(1);
    let shared = Arc::new(Listener {
        http: http_builder(&config),
        tls: tls
            .as_ref()
            .map(|(acceptor, timeout, _)| (acceptor.clone(), *timeout)),
        state: Arc::new(AppState::new(config, relays)?),
    });
    let slots = Arc::new(Semaphore::new(shared.state.config.server.max_connections));
    let graceful = GracefulShutdown::new();
    tracing::info!(
        address = %listener.local_addr()?,
        tls = shared.tls.is_some(),
        routes = shared.state.config.routes.len(),
        "wxgate listening"
    );

    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let shared = shared.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            shared.serve(stream, peer, watcher).await;
            drop(slot);
        });
    }

    drop(listener);
    drop(shared);
    if let Some((_, _, watcher)) = tls {
        watcher.abort();
    }
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: no new connections, finishing in-flight requests and WebSockets"
    );
    let drained = async {
        graceful.shutdown().await;
        // Every sender is gone once the connections (holding the state) and relays have ended.
        let _ = relays_done.recv().await;
    };
    match tokio::time::timeout(grace, drained).await {
        Ok(()) => tracing::info!("all connections finished"),
        Err(_) => tracing::warn!("grace period over; dropping the remaining connections"),
    }
    Ok(())
}

/// The HTTP connection settings: limits, timeouts, and which protocols are spoken.
fn http_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let server = &config.server;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_buf_size(server.max_header_bytes)
        .keep_alive(true);
    // HTTP/2 connections are pinged when quiet, and closed when the peer stops answering.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(HTTP2_PING_INTERVAL)
        .keep_alive_timeout(HTTP2_PING_TIMEOUT)
        .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX));
    // `http1_only()` would be ignored: it does nothing with `serve_connection_with_upgrades`, which
    // WebSockets need. HTTP/2 where it is not enabled is refused per request in `handle`.
    builder
}

impl Listener {
    /// Completes the TLS handshake when configured, then serves HTTP on the connection.
    async fn serve(&self, stream: TcpStream, peer: SocketAddr, watcher: Watcher) {
        // Best effort: a socket that refuses NODELAY still works.
        let _ = stream.set_nodelay(true);
        match &self.tls {
            Some((acceptor, timeout)) => {
                match tokio::time::timeout(*timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => self.serve_http(tls_stream, peer, "https", watcher).await,
                    Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
            None => self.serve_http(stream, peer, "http", watcher).await,
        }
    }

    async fn serve_http<I>(&self, io: I, peer: SocketAddr, proto: &'static str, watcher: Watcher)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let state = self.state.clone();
        let service = service_fn(move |request| {
            let state = state.clone();
            async move {
                Ok::<_, Infallible>(handle(&state, ClientConnection { peer, proto }, request).await)
            }
        });
        let connection = self
            .http
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        if let Err(error) = watcher.watch(connection).await {
            tracing::debug!(%error, %peer, "connection ended with an error");
        }
    }
}

/// Answers one request and logs it: method, path, status, latency, openid. Never the query (it
/// may carry credentials) nor any header.
async fn handle(
    state: &AppState,
    client: ClientConnection,
    request: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    let http2_refused =
        request.version() == Version::HTTP_2 && !state.config.server.http2_enabled();
    let (response, logged_path, identity) = match path::normalize(request.uri().path()) {
        Ok(_) if http2_refused => (
            GatewayError::HttpVersionNotSupported.into_response(),
            request.uri().path().to_string(),
            None,
        ),
        Ok(path) => match dispatch(state, &path, &client, request).await {
            Ok((response, identity)) => (response, path, identity),
            Err(error) => (error.into_response(), path, None),
        },
        Err(error) => (
            error.into_response(),
            request.uri().path().to_string(),
            None,
        ),
    };
    tracing::info!(
        %method,
        path = ?logged_path,
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        openid = identity.as_ref().map_or("-", |identity| identity.openid.as_str()),
        "request"
    );
    response
}

/// Picks the gateway endpoint (login, refresh, logout, phone, decryption, forward-auth, JWKS) or
/// the route for a normalized path, and runs it.
async fn dispatch(
    state: &AppState,
    path: &str,
    client: &ClientConnection,
    request: Request<Incoming>,
) -> Result<(Response<Body>, Option<Identity>), GatewayError> {
    // The endpoints that answer for one user: the answer, and who it was for.
    let login = &state.config.login;
    let answer = match path {
        _ if login.covers(path) => login::handle(state, path, request).await,
        _ if path == login.refresh_path => token_lifecycle::refresh(state, request).await,
        _ if path == login.logout_path => token_lifecycle::logout(state, request).await,
        phone::PATH => phone::handle(state, request).await,
        decrypt::PATH => decrypt::handle(state, request).await,
        _ => return dispatch_anonymous(state, path, client, request).await,
    };
    let (response, identity) = answer?;
    Ok((response, Some(identity)))
}

/// The rest: forward-auth checks, the JWKS, and the routes.
async fn dispatch_anonymous(
    state: &AppState,
    path: &str,
    client: &ClientConnection,
    request: Request<Incoming>,
) -> Result<(Response<Body>, Option<Identity>), GatewayError> {
    if state.config.forward_auth.covers(path) {
        return forward_auth::handle(state, path, client, request).await;
    }
    if path == jwks::PATH {
        let keys = &state.config.jwt.keys;
        return Ok((jwks::handle(request.method(), keys)?, None));
    }
    let route = state.routes.find(path).ok_or(GatewayError::NotFound)?;
    proxy::forward(state, route, path, client, request).await
}

/// Serves a simple handler until `shutdown`: the plumbing shared by the mock WeChat, the demo
/// upstream and the HTTPS redirect, which need no auth or graceful draining.
pub(crate) async fn serve_handler<F, Fut>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    handler: F,
) -> std::io::Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let answer = handler(request);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            // A client hanging up mid-exchange is not our concern here.
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
