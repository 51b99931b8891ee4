//! The listener: accept loop, connection limit and graceful shutdown (in-flight requests and open
//! WebSockets finish). `server/connection.rs` serves one connection (TLS handshake, HTTP/1.1 or
//! HTTP/2, limits and timeouts), `server/keepalive.rs` parks idle HTTP/1.1 connections without
//! buffers, `server/trim.rs` returns the memory they freed, and `server/dispatch.rs` answers one
//! request (normalize -> login or route -> proxy) with its log line.
//!
//! `run` takes an already-bound listener and a shutdown future, so `main` and the tests start the
//! gateway the same way.

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::config::{Config, ConfigError};
use crate::ops::admin::Readiness;
use crate::state::{AppState, Loaded, Origin};

mod connection;
mod dispatch;
mod keepalive;
mod redirect;
mod trim;
mod wechat_api;
mod workers;
pub use redirect::redirect_to_https;

use crate::simple_http::ACCEPT_ERROR_BACKOFF;

/// The sockets the gateway serves, bound by the caller: the public listener, and the admin one
/// (metrics, health) when wanted. A bare `TcpListener` is the public listener alone.
#[derive(Debug)]
pub struct Listeners {
    /// Where clients connect.
    pub public: TcpListener,
    /// Where operators and probes connect (`[admin] listen`).
    pub admin: Option<TcpListener>,
    /// Where backends call WeChat's server APIs (`[wechat_api] listen`).
    pub wechat_api: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(public: TcpListener) -> Self {
        Listeners {
            public,
            admin: None,
            wechat_api: None,
        }
    }
}

/// `wxgate check`: loads what `config` names by file (the JWT keys, the routes' CA files, the TLS
/// listener's certificates) exactly as a start or a reload does, without serving. Answers the
/// JWT key ids, configured or derived from the keys, the signing key's first.
pub fn check(config: &Config) -> Result<Vec<String>, ConfigError> {
    // The routes' instance metrics go to a registry of their own: nothing is served.
    let loaded = Loaded::from(config, &crate::metrics::Metrics::new())?;
    Ok(loaded.keys.kids().map(str::to_string).collect())
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
        wechat_api,
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
    let tls_acceptor = tls
        .as_ref()
        .map(|(acceptor, timeout, _)| (acceptor.clone(), *timeout));
    let state = AppState::build(config, Origin::Start(relays)).map_err(std::io::Error::other)?;
    state
        .sessions
        .check_at_start()
        .await
        .map_err(std::io::Error::other)?;
    state.routes.start_health_checks();
    let tracing = state.tracing.clone();
    let current = Arc::new(ArcSwap::from_pointee(state));
    let shared = Arc::new(connection::Listener::new(
        &current.load().config,
        current.clone(),
        tls_acceptor,
    ));
    let reloads = tokio::spawn(crate::ops::reload::watch(current.clone()));
    trim::keep_heap_tops();
    let trims = tokio::spawn(trim::return_freed_memory());
    let readiness = Arc::new(Readiness::default());
    let (admin_stop, admin_stopped) = oneshot::channel::<()>();
    let admin = admin.map(|admin| {
        let stopped = async {
            let _ = admin_stopped.await;
        };
        tokio::spawn(crate::ops::admin::serve(
            admin,
            Arc::downgrade(&current),
            readiness.clone(),
            stopped,
        ))
    });
    let (wechat_api_stop, wechat_api_stopped) = oneshot::channel::<()>();
    let wechat_api = wechat_api.map(|listener| {
        let stopped = async {
            let _ = wechat_api_stopped.await;
        };
        let max_in_flight = current.load().config.wechat_api.max_in_flight;
        tokio::spawn(wechat_api::serve(
            listener,
            Arc::downgrade(&current),
            max_in_flight,
            stopped,
        ))
    });
    let slots = Arc::new(Semaphore::new(max_connections));
    // Every connection holds a receiver: `stop` tells them to finish, and is closed once they did.
    let (stop, stopped) = watch::channel(false);
    let worker_count = current.load().config.server.workers;
    let mut workers = workers::Workers::start(worker_count, &shared, &stopped)?;
    tracing::info!(
        address = %listener.local_addr()?,
        workers = worker_count,
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
        workers.hand(stream, peer, slot);
    }

    readiness.set_accepting(false);
    drop(listener);
    reloads.abort();
    trims.abort();
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
    drop(stopped);
    workers.close_intake();
    let drained = async {
        let _ = stop.send(true);
        stop.closed().await;
        // Every sender is gone once the connections (holding the state) and relays have ended.
        let _ = relays_done.recv().await;
    };
    match tokio::time::timeout(grace, drained).await {
        Ok(()) => tracing::info!("all connections finished"),
        Err(_) => tracing::warn!("grace period over; dropping the remaining connections"),
    }
    workers.finish().await;
    // The spans of the last requests are sent before the process ends (a blocking wait for the
    // exporter's thread).
    if let Some(tracing) = tracing {
        let _ = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
    }
    let _ = admin_stop.send(());
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    let _ = wechat_api_stop.send(());
    if let Some(wechat_api) = wechat_api {
        let _ = wechat_api.await;
    }
    Ok(())
}
