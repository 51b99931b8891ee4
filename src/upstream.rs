//! Connections to upstreams: HTTP/1.1 over TCP, or over TLS with the system roots or a route's
//! private CA, kept alive in a pool of each worker thread's own.
//!
//! A connection is used by one request at a time. It goes back to its worker's pool once the
//! response body has been read to the end, and is closed after `upstream.pool_idle_timeout_secs`
//! unused, beyond `upstream.pool_max_idle_per_host` idle ones, or when the upstream closes it.
//! Because each worker (`server/workers.rs`) keeps its own pool and drives its connections itself,
//! a request and its upstream exchange never leave the worker's thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::config::{ConfigError, RouteConfig, UpstreamConfig};
use crate::http::error::{Body, BoxError};
use crate::metrics::Metrics;
use crate::per_thread::{FastMap, OwnerId};

pub(crate) mod deadline;
pub(crate) mod group;
pub(crate) mod health;
pub(crate) mod in_flight;
mod pooled;
use group::{Instance, UpstreamGroup};
use in_flight::{InFlight, InFlightCount};
use pooled::PooledBody;

/// How to reach the upstreams of one config: timeouts and pool limits.
#[derive(Debug)]
pub(crate) struct UpstreamClients {
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    max_in_flight: usize,
    in_flight: InFlightCount,
}

/// One upstream instance, ready to connect to: an authority of a route's
/// [`crate::config::UpstreamGroupConfig`] with the TLS settings loaded and the pool of
/// connections it shares with the routes of the same config that reach it the same way.
#[derive(Debug)]
pub(crate) struct Upstream {
    /// Host and port of the upstream service.
    authority: Authority,
    /// The authority as the Host header sent upstream (unless the route preserves the client's).
    pub(crate) host_header: HeaderValue,
    /// The TLS client settings (system roots, plus the route's CA) for https; `None` for http.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Which pooled connections may serve it: never shared with another config (a reload), whose
    /// connections were made with its settings.
    pool: PoolKey,
}

/// Why an upstream exchange failed.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// No connection could be made (refused, unresolvable, TLS failure, connect timeout); the
    /// request, never sent, is handed back.
    Connect(Box<Unsent>),
    /// The connection failed during the exchange.
    Exchange(hyper::Error),
    /// `upstream.max_in_flight` requests are already in flight; nothing was sent.
    Busy,
    /// No response head within the route's timeout (an exchange that keeps its own deadline:
    /// a route with several instances, or a traced request).
    TimedOut,
}

/// A request no connection could be made for, and why.
#[derive(Debug)]
pub(crate) struct Unsent {
    pub(crate) reason: String,
    pub(crate) request: Request<Body>,
}

impl UpstreamClients {
    /// The `[upstream]` settings; `in_flight` counts this gateway's requests in flight (kept
    /// across reloads).
    pub(crate) fn new(config: &UpstreamConfig, in_flight: InFlightCount) -> Self {
        UpstreamClients {
            connect_timeout: config.connect_timeout,
            idle_timeout: config.pool_idle_timeout,
            max_idle: config.pool_max_idle_per_host,
            max_in_flight: config.max_in_flight,
            in_flight,
        }
    }

    /// The count of requests in flight, for the state a reload builds.
    pub(crate) fn in_flight(&self) -> InFlightCount {
        self.in_flight
    }

    /// Sends `request` (origin-form URI, Host set) to `upstream` on a pooled connection or a new
    /// one. A request the pooled connection never sent (the upstream had just closed it) is sent
    /// again on a new connection. (An `async` block, so that the future holds one copy of the
    /// request: see `dispatch::handle`.)
    #[allow(
        clippy::manual_async_fn,
        reason = "one copy of the request in the future"
    )]
    pub(crate) fn send<'a>(
        &'a self,
        upstream: &'a Upstream,
        mut request: Request<Body>,
    ) -> impl Future<Output = Result<Response<Body>, UpstreamError>> + 'a {
        async move {
            let place = self
                .in_flight
                .try_take(self.max_in_flight)
                .ok_or(UpstreamError::Busy)?;
            let key = upstream.pool;
            if let Some(mut sender) = pooled::take(key).await {
                match sender.try_send_request(request).await {
                    Ok(response) => return Ok(self.hand_out(response, sender, key, place)),
                    Err(mut failed) => match failed.take_message() {
                        Some(unsent) => request = unsent,
                        None => return Err(UpstreamError::Exchange(failed.into_error())),
                    },
                }
            }
            // Boxed: connecting (DNS, TLS) takes a large future, and most requests find a
            // connection.
            let mut sender = match Box::pin(connect(upstream, self.connect_timeout)).await {
                Ok(sender) => sender,
                Err(reason) => {
                    return Err(UpstreamError::Connect(Box::new(Unsent { reason, request })))
                }
            };
            match sender.send_request(request).await {
                Ok(response) => Ok(self.hand_out(response, sender, key, place)),
                Err(error) => Err(UpstreamError::Exchange(error)),
            }
        }
    }

    /// The response, its body returning the connection to the pool once read to the end and
    /// holding the request's place among those in flight until then. Boxed
    /// here: the response is moved a dozen times on its way to the client (futures, hyper's
    /// channels), and with the body inline each move copies twice the bytes, which costs more than
    /// the one allocation saved (measured: bench/RESULTS.md).
    fn hand_out(
        &self,
        response: Response<Incoming>,
        sender: http1::SendRequest<Body>,
        key: PoolKey,
        place: InFlight,
    ) -> Response<Body> {
        let reusable = response.status() != http::StatusCode::SWITCHING_PROTOCOLS;
        let idle = pooled::Idle::new(sender, key, self.idle_timeout, self.max_idle);
        response.map(|body| {
            PooledBody::new(body, idle, reusable, place)
                .map_err(BoxError::from)
                .boxed_unsync()
        })
    }
}

impl Upstream {
    /// Which pooled connections may serve it.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> PoolKey {
        self.pool
    }
}

/// Which pooled connections may serve a request: the upstream's pool (see [`groups`]), an
/// id never reused, so a reloaded config never shares a pool with the config it replaces, whose
/// connections were made with its settings.
pub(crate) type PoolKey = OwnerId;

/// A new connection to `upstream`, TLS when it is https, driven by a task on this thread's
/// runtime; `Err` says why none could be made within `timeout`.
pub(crate) async fn connect(
    upstream: &Upstream,
    timeout: Duration,
) -> Result<http1::SendRequest<Body>, String> {
    let connecting = async {
        let host = upstream.authority.host();
        let default_port = if upstream.tls.is_some() { 443 } else { 80 };
        let port = upstream.authority.port_u16().unwrap_or(default_port);
        // An IPv6 literal comes in brackets in an authority, without them everywhere else.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|error| format!("connect: {error}"))?;
        // Best effort: a socket refusing NODELAY still works.
        let _ = tcp.set_nodelay(true);
        let Some(tls) = upstream.tls.clone() else {
            return handshake(tcp).await;
        };
        let name = ServerName::try_from(host.to_owned())
            .map_err(|error| format!("server name: {error}"))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|error| format!("TLS: {error}"))?;
        handshake(stream).await
    };
    match tokio::time::timeout(timeout, connecting).await {
        Ok(connected) => connected,
        Err(_) => Err(format!("no connection within {} ms", timeout.as_millis())),
    }
}

/// The HTTP/1.1 handshake on a new connection, whose task runs on this worker.
async fn handshake<IO>(io: IO) -> Result<http1::SendRequest<Body>, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|error| format!("handshake: {error}"))?;
    tokio::spawn(async move {
        // Upgrades (WebSocket) take the socket over; other ends are the upstream's or ours.
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// The TLS client settings for upstreams: the system roots plus a route's CA (read from
/// `ca_file`), HTTP/1.1 by ALPN.
fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let extra_ca = match ca_file {
        Some(file) => crate::tls::read_certificates(file)?,
        None => Vec::new(),
    };
    let mut config = crate::tls::upstream_client_config(&extra_ca)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The upstream groups of a config's routes, in the same order (`None` for a route without
/// one): TLS settings loaded once per CA file, one new pool per scheme, authority (any case) and
/// CA file, and each instance's metrics. Errors name the route's key.
pub(crate) fn groups(
    routes: &[RouteConfig],
    metrics: &Metrics,
) -> Result<Vec<Option<Arc<UpstreamGroup>>>, ConfigError> {
    let mut pools = HashMap::new();
    let mut tls_by_ca: HashMap<Option<PathBuf>, Arc<rustls::ClientConfig>> = HashMap::new();
    let mut groups = Vec::with_capacity(routes.len());
    for (index, route) in routes.iter().enumerate() {
        let Some(config) = &route.upstream else {
            groups.push(None);
            continue;
        };
        let tls = match config.scheme == Scheme::HTTPS {
            false => None,
            true => Some(match tls_by_ca.get(&config.ca_file) {
                Some(tls) => tls.clone(),
                None => {
                    let key = match config.ca_file {
                        Some(_) => format!("routes[{index}].ca_file"),
                        None => format!("routes[{index}].upstream"),
                    };
                    let tls = tls_config(config.ca_file.as_deref())
                        .map_err(|message| ConfigError::new(key, message))?;
                    tls_by_ca.insert(config.ca_file.clone(), tls.clone());
                    tls
                }
            }),
        };
        let mut instances = Vec::with_capacity(config.instances.len());
        for authority in &config.instances {
            let pool_key = (
                config.scheme.clone(),
                authority.as_str().to_ascii_lowercase(),
                config.ca_file.clone(),
            );
            let pool = *pools.entry(pool_key).or_insert_with(OwnerId::new);
            let host_header = HeaderValue::from_str(authority.as_str()).map_err(|_| {
                ConfigError::new(format!("routes[{index}].upstream"), "no valid host")
            })?;
            let upstream = Upstream {
                authority: authority.clone(),
                host_header,
                tls: tls.clone(),
                pool,
            };
            let label = authority.as_str();
            let instance_metrics = metrics.upstream_instance(&route.prefix, label);
            instances.push(Instance::new(upstream, label, instance_metrics));
        }
        groups.push(Some(Arc::new(UpstreamGroup::new(
            &route.prefix,
            instances,
            config.balance,
            config.health.clone(),
        ))));
    }
    Ok(groups)
}

thread_local! {
    /// This worker's idle connections, by upstream pool; the most recently used last.
    static POOL: RefCell<FastMap<PoolKey, Vec<pooled::Idle>>> = RefCell::new(FastMap::default());
}

/// Closes this worker's connections that have been idle too long; each worker runs it
/// periodically, so connections to an upstream no longer used are closed too.
pub(crate) fn close_expired(now: Instant) {
    POOL.with(|pool| {
        pool.borrow_mut().retain(|_, idle| {
            idle.retain(|connection| !connection.expired(now));
            !idle.is_empty()
        });
    });
}
