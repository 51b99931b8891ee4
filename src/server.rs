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
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::admin::Readiness;
use crate::config::Config;
use crate::error::Body;
use crate::proxy::ClientConnection;
use crate::state::AppState;

mod dispatch;
mod redirect;
pub use redirect::redirect_to_https;

/// How often a quiet HTTP/2 connection is pinged, and how long the answer may take.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// The sockets the gateway serves, bound by the caller: the public listener, and the admin one
/// (metrics, health) when wanted. A bare `TcpListener` is the public listener alone.
#[derive(Debug)]
pub struct Listeners {
    /// Where clients connect.
    pub public: TcpListener,
    /// Where operators and probes connect (`[admin] listen`).
    pub admin: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(public: TcpListener) -> Self {
        Listeners {
            public,
            admin: None,
        }
    }
}

/// What every connection task needs, shared.
struct Listener {
    /// The running state; a config reload swaps it.
    current: Arc<ArcSwap<AppState>>,
    http: auto::Builder<TokioExecutor>,
    tls: Option<(tokio_rustls::TlsAcceptor, Duration)>,
}

/// Serves the gateway on `listeners` until `shutdown` completes, then lets in-flight requests and
/// open WebSockets finish for up to `server.shutdown_grace_secs` and returns. Reloads the config
/// on SIGHUP (and file changes when `[reload] watch` is on) when it came from a file.
pub async fn run(
    listeners: impl Into<Listeners>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let Listeners {
        public: listener,
        admin,
    } = listeners.into();
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
    let max_connections = config.server.max_connections;
    let http = http_builder(&config);
    let state = AppState::new(config, relays).map_err(std::io::Error::other)?;
    let current = Arc::new(ArcSwap::from_pointee(state));
    let shared = Arc::new(Listener {
        http,
        tls: tls
            .as_ref()
            .map(|(acceptor, timeout, _)| (acceptor.clone(), *timeout)),
        current: current.clone(),
    });
    let reloads = tokio::spawn(crate::reload::watch(current.clone()));
    let readiness = Arc::new(Readiness::default());
    let (admin_stop, admin_stopped) = oneshot::channel::<()>();
    let admin = admin.map(|admin| {
        let stopped = async {
            let _ = admin_stopped.await;
        };
        tokio::spawn(crate::admin::serve(
            admin,
            Arc::downgrade(&current),
            readiness.clone(),
            stopped,
        ))
    });
    let slots = Arc::new(Semaphore::new(max_connections));
    let graceful = GracefulShutdown::new();
    tracing::info!(
        address = %listener.local_addr()?,
        tls = shared.tls.is_some(),
        routes = current.load().config.routes.len(),
        "wxgate listening"
    );
    readiness.set_accepting(true);

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

    readiness.set_accepting(false);
    drop(listener);
    reloads.abort();
    let _ = reloads.await;
    drop(shared);
    drop(current);
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
    let _ = admin_stop.send(());
    if let Some(admin) = admin {
        let _ = admin.await;
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
        let metrics = self.current.load().metrics.clone();
        metrics.connections.inc();
        metrics.open_connections.inc();
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
        metrics.open_connections.dec();
    }

    async fn serve_http<I>(&self, io: I, peer: SocketAddr, proto: &'static str, watcher: Watcher)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let current = self.current.clone();
        let service = service_fn(move |request| {
            // Each request runs on the state current when it arrived, whatever reloads meanwhile.
            let state = current.load_full();
            async move {
                let client = ClientConnection { peer, proto };
                Ok::<_, Infallible>(dispatch::handle(&state, client, request).await)
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
