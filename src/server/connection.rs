//! One client connection: the TLS handshake, HTTP/2 or HTTP/1.1 (told apart by the client's first
//! bytes), and for HTTP/1.1 the serve-park-resume loop of `keepalive.rs`, with the header-read,
//! keep-alive and shutdown limits.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::dispatch;
use super::keepalive::{Activity, Handback, ParkableIo, Socket, TrackedBody};
use crate::client::ClientConnection;
use crate::config::Config;
use crate::http::websocket::ConnectionSlot;
use crate::state::AppState;
use crate::upstream::deadline::DeadlineTimer;

/// How often a quiet HTTP/2 connection is pinged, and how long the answer may take.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// How long an HTTP/1.1 connection stays idle in hyper before it is parked: long enough that a
/// client sending its requests one after another (a page load, a load test) keeps its connection
/// in hyper, short enough that idle clients hold no buffers.
const PARK_AFTER: Duration = Duration::from_millis(50);

/// What a client sends first on an HTTP/2 connection with prior knowledge (RFC 9113 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Tells every connection to finish its in-flight requests and close.
pub(super) type Stop = watch::Receiver<bool>;

/// What every connection task needs, shared.
pub(super) struct Listener {
    /// The running state; a config reload swaps it.
    current: Arc<ArcSwap<AppState>>,
    /// The TLS acceptor and handshake timeout, when the listener terminates TLS.
    pub(super) tls: Option<(tokio_rustls::TlsAcceptor, Duration)>,
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    header_read_timeout: Duration,
    keepalive_timeout: Duration,
}

impl Listener {
    /// The connection settings of `config`: limits, timeouts and protocols.
    pub(super) fn new(
        config: &Config,
        current: Arc<ArcSwap<AppState>>,
        tls: Option<(tokio_rustls::TlsAcceptor, Duration)>,
    ) -> Self {
        let server = &config.server;
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .max_buf_size(server.max_header_bytes)
            .keep_alive(true);
        // HTTP/2 connections are pinged when quiet, and closed when the peer stops answering.
        // HTTP/2 where it is not enabled is refused per request in `dispatch::handle`.
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(HTTP2_PING_INTERVAL)
            .keep_alive_timeout(HTTP2_PING_TIMEOUT)
            .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX))
            // Each open stream may hold an upstream connection: bounded per client connection.
            .max_concurrent_streams(server.http2_max_concurrent_streams);
        Listener {
            current,
            tls,
            http1,
            http2,
            header_read_timeout: server.header_read_timeout,
            keepalive_timeout: server.keepalive_timeout,
        }
    }

    /// Completes the TLS handshake when configured, then serves HTTP on the connection.
    pub(super) async fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        slot: ConnectionSlot,
        stop: Stop,
    ) {
        // Best effort: a socket that refuses NODELAY still works.
        let _ = stream.set_nodelay(true);
        let metrics = self.current.load().metrics.clone();
        metrics.connections.inc();
        metrics.open_connections.inc();
        match &self.tls {
            // Boxed: a plain connection's task does not carry room for a TLS connection.
            Some((acceptor, timeout)) => {
                Box::pin(self.serve_tls(acceptor, *timeout, stream, peer, slot, stop)).await;
            }
            None => self.serve_http(stream, peer, "http", slot, stop).await,
        }
        metrics.open_connections.dec();
    }

    async fn serve_tls(
        &self,
        acceptor: &tokio_rustls::TlsAcceptor,
        timeout: Duration,
        stream: TcpStream,
        peer: SocketAddr,
        slot: ConnectionSlot,
        stop: Stop,
    ) {
        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls_stream)) => self.serve_http(tls_stream, peer, "https", slot, stop).await,
            Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }

    /// Serves HTTP/2 or HTTP/1.1 on `io`, whichever the client's first bytes say. For HTTP/1.1, the
    /// socket is parked whenever hyper has been idle between two requests for [`PARK_AFTER`], and
    /// resumed on the client's next bytes, until the client leaves, a limit is hit or `stop`.
    /// Everything but the parked wait is boxed: the task of a parked connection stays small.
    async fn serve_http<I: Socket>(
        &self,
        mut io: I,
        peer: SocketAddr,
        proto: &'static str,
        slot: ConnectionSlot,
        mut stop: Stop,
    ) {
        let started = Instant::now();
        let Some((prefix, http2)) = Box::pin(self.first_bytes(&mut io, peer, &mut stop)).await
        else {
            return;
        };
        let activity = Arc::new(Activity::default());
        let handback: Handback<I> = Arc::new(Mutex::new(None));
        let mut io = ParkableIo::new(io, prefix, activity.clone(), handback.clone());
        if http2 {
            return Box::pin(self.serve_http2(io, peer, proto, slot, activity, stop)).await;
        }
        let mut header_timeout = self.header_read_timeout.saturating_sub(started.elapsed());
        let metrics = self.current.load().metrics.clone();
        loop {
            let phase = self.serve_until_idle(
                io,
                (peer, proto, &slot),
                &activity,
                header_timeout,
                &mut stop,
            );
            if !Box::pin(phase).await {
                return;
            }
            let Some(socket) = handback.lock().unwrap_or_else(|e| e.into_inner()).take() else {
                return;
            };
            metrics.idle_connections.inc();
            super::trim::count_park();
            let next_request = tokio::select! {
                biased;
                () = stopping(&mut stop) => false,
                ready = tokio::time::timeout(self.keepalive_timeout, socket.readable()) => {
                    matches!(ready, Ok(Ok(())))
                }
            };
            metrics.idle_connections.dec();
            if !next_request {
                return;
            }
            activity.resume();
            io = ParkableIo::new(socket, Bytes::new(), activity.clone(), handback.clone());
            header_timeout = self.header_read_timeout;
        }
    }

    /// Waits (up to the header read timeout) for the client's first bytes: those read, and whether
    /// they are the HTTP/2 preface.
    async fn first_bytes<I: Socket>(
        &self,
        io: &mut I,
        peer: SocketAddr,
        stop: &mut Stop,
    ) -> Option<(Bytes, bool)> {
        let first_bytes = tokio::select! {
            biased;
            () = stopping(stop) => return None,
            read = tokio::time::timeout(self.header_read_timeout, read_preface(io)) => read,
        };
        match first_bytes {
            Ok(Ok(first)) => first,
            Ok(Err(error)) => {
                tracing::debug!(%error, %peer, "connection read failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "no request within the header read timeout");
                None
            }
        }
    }

    async fn serve_http2<I: Socket>(
        &self,
        io: ParkableIo<I>,
        peer: SocketAddr,
        proto: &'static str,
        slot: ConnectionSlot,
        activity: Arc<Activity>,
        mut stop: Stop,
    ) {
        let service = self.service(peer, proto, slot, activity);
        let mut connection = pin!(self.http2.serve_connection(TokioIo::new(io), service));
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = stopping(&mut stop) => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, %peer, "connection ended with an error");
        }
    }

    /// Runs one hyper connection on the socket until the client leaves (false) or hyper has been
    /// idle for [`PARK_AFTER`] and handed the socket back (true).
    async fn serve_until_idle<I: Socket>(
        &self,
        io: ParkableIo<I>,
        (peer, proto, slot): (SocketAddr, &'static str, &ConnectionSlot),
        activity: &Arc<Activity>,
        header_timeout: Duration,
        stop: &mut Stop,
    ) -> bool {
        // The header read timeout is kept below, not by hyper (which set and cleared a timer for
        // every request).
        let mut http1 = self.http1.clone();
        http1.header_read_timeout(None);
        let service = self.service(peer, proto, slot.clone(), activity.clone());
        let mut connection = pin!(http1
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades());
        // The stop signal is polled again only once the watch has changed: the first poll
        // registers this task for its wake-up, and a poll per request costs more than the check.
        let stop_changed = stop.clone();
        let mut stop_signal = pin!(stopping(stop));
        let mut stop_polled = false;
        let mut draining = false;
        // One timer for the whole phase: moved only when it fires early (the connection was busy
        // since it was set), not at each request, since moving a timer costs more than the clock.
        let mut park_timer = pin!(tokio::time::sleep(PARK_AFTER));
        let mut idle_since = None;
        // The request head being read must be complete by `head_due`: the phase's first by the
        // deadline the phase came with, each later one within the header read timeout of its
        // first bytes. Its timer exists only while a head stays incomplete across polls.
        let mut head_due = Some(tokio::time::Instant::now() + header_timeout);
        let mut head_timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        let mut requests_seen = activity.requests_begun();
        let result = poll_fn(|cx| {
            let stop_may_be_due = !stop_polled || stop_changed.has_changed().unwrap_or(true);
            if !draining && stop_may_be_due {
                stop_polled = true;
                if stop_signal.as_mut().poll(cx).is_ready() {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            let polled = connection.as_mut().poll(cx).map(Some);
            if polled.is_ready() || draining {
                return polled;
            }
            let begun = activity.requests_begun();
            if begun != requests_seen {
                requests_seen = begun;
                (head_due, head_timer) = (None, None);
            }
            // One clock read for this poll, made only when needed: after a response both the
            // next head's deadline and the idle stretch start from it.
            let mut now = None;
            let mut now = || *now.get_or_insert_with(tokio::time::Instant::now);
            if head_due.is_none() && activity.reading_head() {
                head_due = Some(now() + self.header_read_timeout);
            }
            if let Some(due) = head_due {
                let timer =
                    head_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
            }
            if !activity.is_idle() {
                idle_since = None;
                return polled;
            }
            let due = *idle_since.get_or_insert_with(&mut now) + PARK_AFTER;
            if park_timer.is_elapsed() && park_timer.deadline() < due {
                park_timer.as_mut().reset(due);
            }
            if park_timer.as_mut().poll(cx).is_pending() {
                return polled;
            }
            if tokio::time::Instant::now() < due {
                // Set during an earlier idle stretch: wait for this one's end.
                park_timer.as_mut().reset(due);
                if park_timer.as_mut().poll(cx).is_pending() {
                    return polled;
                }
            }
            activity.ask_park();
            let polled = connection.as_mut().poll(cx).map(Some);
            if polled.is_pending() && activity.withdraw_park() {
                // The socket is already handed back: hyper finishes at its next poll.
                cx.waker().wake_by_ref();
            }
            polled
        })
        .await;
        match result {
            Some(Ok(())) => activity.parked(),
            Some(Err(error)) => {
                tracing::debug!(%error, %peer, "connection ended with an error");
                false
            }
            None => {
                tracing::debug!(%peer, "request head not complete within the header read timeout");
                false
            }
        }
    }

    /// The per-request service: each request runs on the state current when it arrived, whatever
    /// reloads meanwhile, and stays counted as in flight until its response body is dropped.
    fn service(
        &self,
        peer: SocketAddr,
        proto: &'static str,
        slot: ConnectionSlot,
        activity: Arc<Activity>,
    ) -> impl Service<
        Request<Incoming>,
        Response = Response<TrackedBody>,
        Error = Infallible,
        Future: Send + 'static,
    > + Send
           + 'static {
        let current = self.current.clone();
        // Made once for all the requests of this connection (and phase), each sharing it.
        let client = Arc::new(ClientConnection {
            peer,
            address: crate::http::headers::PeerAddress::new(peer.ip()),
            proto,
            upstream_timer: DeadlineTimer::default(),
            slot,
        });
        service_fn(move |request| {
            let state = current.load_full();
            let in_flight = activity.begin(http_body::Body::size_hint(request.body()).exact());
            let client = client.clone();
            async move {
                let response = dispatch::handle(&state, client, request).await;
                Ok(response.map(|body| TrackedBody::new(body, in_flight)))
            }
        })
    }
}

/// Resolves once the gateway is shutting down (or is gone).
async fn stopping(stop: &mut Stop) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Reads the client's first bytes, as far as they could be the HTTP/2 preface: the bytes read, and
/// whether they are the preface. `None` when the client hung up first.
async fn read_preface<I: Socket>(io: &mut I) -> std::io::Result<Option<(Bytes, bool)>> {
    let mut first = [0; H2_PREFACE.len()];
    let mut filled = 0;
    while filled < first.len() {
        let read = io.read(&mut first[filled..]).await?;
        if read == 0 {
            return Ok((filled > 0).then(|| (Bytes::copy_from_slice(&first[..filled]), false)));
        }
        filled += read;
        if first[..filled] != H2_PREFACE[..filled] {
            return Ok(Some((Bytes::copy_from_slice(&first[..filled]), false)));
        }
    }
    Ok(Some((Bytes::copy_from_slice(&first), true)))
}
