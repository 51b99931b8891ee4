//! The listener: accept loop, connection limit, hyper connections with header timeouts, graceful
//! shutdown, and the per-request dispatch (normalize -> login or route -> proxy) with its log line.
//!
//! `run` takes an already-bound listener and a shutdown future, so `main` and the tests start the
//! gateway the same way.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::auth::Identity;
use crate::config::Config;
use crate::error::{Body, GatewayError};
use crate::proxy::{upstream_client, UpstreamClient};
use crate::routes::RouteTable;
use crate::session::SessionStore;
use crate::wechat::WeChatClient;
use crate::{login, path, proxy};

/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Everything a request needs, built once at start and shared by every connection.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) config: Config,
    pub(crate) routes: RouteTable,
    pub(crate) wechat: WeChatClient,
    pub(crate) sessions: SessionStore,
    pub(crate) upstream: UpstreamClient,
}

impl AppState {
    fn new(config: Config) -> std::io::Result<Self> {
        Ok(AppState {
            routes: RouteTable::new(config.routes.clone()),
            wechat: WeChatClient::new(&config.wechat).map_err(std::io::Error::other)?,
            sessions: SessionStore::in_memory(&config.session),
            upstream: upstream_client(&config.upstream),
            config,
        })
    }
}

/// Serves the gateway on `listener` until `shutdown` completes, then lets in-flight requests finish
/// for up to `server.shutdown_grace_secs` and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let grace = config.server.shutdown_grace;
    let state = Arc::new(AppState::new(config)?);
    let mut connections = http1::Builder::new();
    connections
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.server.header_read_timeout)
        .keep_alive(true);
    let slots = Arc::new(Semaphore::new(state.config.server.max_connections));
    let graceful = GracefulShutdown::new();
    tracing::info!(address = %listener.local_addr()?, routes = state.config.routes.len(), "wxgate listening");

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
        // Best effort: a socket that refuses NODELAY still works.
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service = service_fn(move |request| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(&state, peer, request).await) }
        });
        let connection =
            graceful.watch(connections.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }

    drop(listener);
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: no new connections, finishing in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections finished"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over; dropping the remaining connections"),
    }
    Ok(())
}

/// Answers one request and logs it: method, path, status, latency, openid. Never the query (it
/// may carry credentials) nor any header.
async fn handle(state: &AppState, peer: SocketAddr, request: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    let (response, logged_path, identity) = match path::normalize(request.uri().path()) {
        Ok(path) => match dispatch(state, &path, peer, request).await {
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

/// Picks the gateway endpoint or route for a normalized path and runs it.
async fn dispatch(
    state: &AppState,
    path: &str,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<(Response<Body>, Option<Identity>), GatewayError> {
    if path == state.config.login.path {
        let (response, identity) = login::handle(state, request).await?;
        return Ok((response, Some(identity)));
    }
    let route = state.routes.find(path).ok_or(GatewayError::NotFound)?;
    proxy::forward(state, route, path, peer, request).await
}

/// Serves a simple handler until `shutdown`: the plumbing shared by the mock WeChat and the demo
/// upstream, which need no limits, auth or graceful draining.
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
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
