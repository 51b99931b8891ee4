//! Parking idle keep-alive connections: between two HTTP/1.1 requests a connection is handed back
//! by hyper and waits for its next request holding nothing but the socket.
//!
//! hyper keeps a read buffer (8 KiB and more) and a write buffer (8 KiB) for a connection's whole
//! life, which makes 10,000 idle keep-alive clients cost hundreds of MiB. So each HTTP/1.1 request
//! (or a run of them) is served by a short-lived hyper connection over [`ParkableIo`], and once
//! hyper is provably idle, waiting for the next request head with nothing buffered, the serving loop
//! asks the socket wrapper to end that hyper connection: hyper's next read gets an end of stream,
//! which on an idle connection is a clean close, and the socket itself is handed back instead of
//! being shut down. The loop then waits for the socket to become readable and starts a fresh hyper
//! connection on it.
//!
//! "Provably idle", from what the wrapper and the service see ([`Activity::is_idle`]): no request
//! in flight (service called, response body not yet dropped), every byte written has been flushed
//! since the last response ended, nothing was read since that flush, the last read found the socket
//! empty (so neither the kernel nor TLS holds unread bytes), and no byte beyond the request's
//! declared body was read while it was being answered (it could be the start of a pipelined request
//! that hyper holds). A pipelining client whose next request stalls half-sent exactly then would see
//! the connection closed, which HTTP/1.1 lets a server do and obliges pipelining clients to handle.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::http::body::GuardedBody;

/// Park requests: none, asked by the serving loop, carried out by the wrapper.
const PARK_NONE: u8 = 0;
const PARK_ASKED: u8 = 1;
const PARK_DONE: u8 = 2;

/// What one client connection's wrapper and service report, for the serving loop to tell an idle
/// connection from a busy one. Everything happens on the connection's task; the atomics only make
/// the state shareable, and are all `Relaxed`.
#[derive(Debug, Default)]
pub(super) struct Activity {
    /// Requests whose service was called and whose response body is not yet dropped.
    in_flight: AtomicU32,
    /// Requests whose service was called, ever (wrapping): tells a new request from the last.
    begun: AtomicU32,
    /// A response ended (its body was dropped) and no flush has followed yet.
    responded: AtomicBool,
    /// Bytes written to the socket and not yet flushed.
    unflushed: AtomicBool,
    /// Bytes read since the last flush that followed a write.
    read_since_flush: AtomicBool,
    /// Body bytes the request being answered may still bring (its Content-Length).
    body_allowance: AtomicU64,
    /// Bytes read beyond that while a request was being answered: maybe a pipelined request.
    doubtful: AtomicBool,
    /// The last read found nothing to read.
    read_blocked: AtomicBool,
    park: AtomicU8,
}

impl Activity {
    /// Whether hyper is waiting for a new request head with nothing read, buffered or owed.
    pub(super) fn is_idle(&self) -> bool {
        self.in_flight.load(Relaxed) == 0
            && !self.responded.load(Relaxed)
            && !self.unflushed.load(Relaxed)
            && !self.read_since_flush.load(Relaxed)
            && !self.doubtful.load(Relaxed)
            && self.read_blocked.load(Relaxed)
    }

    /// How many requests have begun (wrapping): a change means a request head was completed.
    pub(super) fn requests_begun(&self) -> u32 {
        self.begun.load(Relaxed)
    }

    /// Whether bytes of a next request head have been read and the head is not complete: no
    /// request in flight, nothing being written, something read since the last response.
    pub(super) fn reading_head(&self) -> bool {
        self.in_flight.load(Relaxed) == 0
            && !self.responded.load(Relaxed)
            && !self.unflushed.load(Relaxed)
            && (self.read_since_flush.load(Relaxed) || self.doubtful.load(Relaxed))
    }

    /// Asks the wrapper to end hyper's connection at its next read.
    pub(super) fn ask_park(&self) {
        self.park.store(PARK_ASKED, Relaxed);
    }

    /// Withdraws a park request hyper did not act on; true when it had already been carried out.
    pub(super) fn withdraw_park(&self) -> bool {
        self.park
            .compare_exchange(PARK_ASKED, PARK_NONE, Relaxed, Relaxed)
            .is_err()
            && self.park.load(Relaxed) == PARK_DONE
    }

    /// Whether the wrapper handed the socket back.
    pub(super) fn parked(&self) -> bool {
        self.park.load(Relaxed) == PARK_DONE
    }

    /// Resets the state for the next hyper connection on the same socket.
    pub(super) fn resume(&self) {
        self.park.store(PARK_NONE, Relaxed);
        self.read_blocked.store(false, Relaxed);
        self.read_since_flush.store(false, Relaxed);
        self.doubtful.store(false, Relaxed);
    }

    /// Counts a request as in flight until the returned guard (moved into its response body) drops;
    /// `body_length` is its declared body length (None: chunked, so any later read is doubtful).
    pub(super) fn begin(self: &Arc<Self>, body_length: Option<u64>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        self.begun.fetch_add(1, Relaxed);
        self.body_allowance.store(body_length.unwrap_or(0), Relaxed);
        // hyper parsed a whole request head: whatever it read before is accounted for.
        self.doubtful.store(false, Relaxed);
        InFlight(self.clone())
    }

    fn read_some(&self, count: usize) {
        self.read_blocked.store(false, Relaxed);
        self.read_since_flush.store(true, Relaxed);
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        let allowance = self.body_allowance.load(Relaxed);
        if self.responded.load(Relaxed) || self.in_flight.load(Relaxed) > 0 && count > allowance {
            self.doubtful.store(true, Relaxed);
        }
        self.body_allowance
            .store(allowance.saturating_sub(count), Relaxed);
    }

    fn flushed(&self) {
        if self.unflushed.swap(false, Relaxed) {
            self.read_since_flush.store(false, Relaxed);
        }
        self.responded.store(false, Relaxed);
    }
}

/// A request being answered; dropped with its response body (or with the service future if the
/// client went away first).
#[derive(Debug)]
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Relaxed) == 1 {
            self.0.responded.store(true, Relaxed);
        }
    }
}

/// A response body that keeps its request counted as in flight until hyper drops it.
pub(super) type TrackedBody = GuardedBody<InFlight>;

/// A client socket that can wait for its next bytes without a buffer: what a parked connection
/// does until the client sends its next request.
pub(crate) trait Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Resolves once the peer sent something or hung up.
    fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send + '_;
}

impl Socket for TcpStream {
    fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send + '_ {
        TcpStream::readable(self)
    }
}

impl Socket for tokio_rustls::server::TlsStream<TcpStream> {
    // Parking happens only after a read found TLS and the kernel empty, so waiting on the TCP
    // socket cannot miss bytes rustls holds.
    fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send + '_ {
        self.get_ref().0.readable()
    }
}

/// Where a parked socket is handed back to the serving loop.
pub(super) type Handback<I> = Arc<Mutex<Option<I>>>;

/// The socket as one hyper connection sees it: first the bytes already read from it (`prefix`),
/// then the socket; it reports reads, writes and flushes to [`Activity`], and on a park request it
/// hands the socket back and reads as ended.
pub(super) struct ParkableIo<I> {
    io: Option<I>,
    prefix: Bytes,
    activity: Arc<Activity>,
    handback: Handback<I>,
}

impl<I> ParkableIo<I> {
    pub(super) fn new(
        io: I,
        prefix: Bytes,
        activity: Arc<Activity>,
        handback: Handback<I>,
    ) -> Self {
        ParkableIo {
            io: Some(io),
            prefix,
            activity,
            handback,
        }
    }
}

fn handed_back() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection parked")
}

impl<I: AsyncRead + Unpin> AsyncRead for ParkableIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            this.activity.read_some(n);
            return Poll::Ready(Ok(()));
        }
        if this.activity.park.load(Relaxed) == PARK_ASKED {
            let io = this.io.take();
            *this.handback.lock().unwrap_or_else(|e| e.into_inner()) = io;
            this.activity.park.store(PARK_DONE, Relaxed);
        }
        let Some(io) = this.io.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let before = buf.filled().len();
        match Pin::new(io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                if read > 0 {
                    this.activity.read_some(read);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                this.activity.read_blocked.store(true, Relaxed);
                Poll::Pending
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
        }
    }
}

impl<I: AsyncWrite + Unpin> ParkableIo<I> {
    fn wrote(&self, written: &Poll<io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity.unflushed.store(true, Relaxed);
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ParkableIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(Err(handed_back()));
        };
        let written = Pin::new(io).poll_write(cx, buf);
        self.wrote(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(Err(handed_back()));
        };
        let written = Pin::new(io).poll_write_vectored(cx, bufs);
        self.wrote(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let flushed = Pin::new(io).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            self.activity.flushed();
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A parked socket is not shut down: it waits for the next request.
        match self.io.as_mut() {
            Some(io) => Pin::new(io).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(activity: &Activity, data: bool) {
        if data {
            activity.read_some(100);
        } else {
            activity.read_blocked.store(true, Relaxed);
        }
    }

    fn writes_and_flushes(activity: &Activity) {
        activity.unflushed.store(true, Relaxed);
        activity.flushed();
    }

    #[test]
    fn a_request_answered_and_flushed_leaves_the_connection_idle() {
        let activity = Arc::new(Activity::default());
        reads(&activity, true);
        assert!(!activity.is_idle(), "a request head is being read");
        let in_flight = activity.begin(Some(0));
        reads(&activity, false);
        assert!(!activity.is_idle(), "a request is in flight");
        drop(in_flight);
        assert!(!activity.is_idle(), "the response is not flushed yet");
        writes_and_flushes(&activity);
        assert!(activity.is_idle());
    }

    #[test]
    fn a_partial_next_request_keeps_the_connection_busy() {
        let activity = Arc::new(Activity::default());
        drop(activity.begin(Some(0)));
        writes_and_flushes(&activity);
        reads(&activity, true);
        reads(&activity, false);
        // hyper's flush with nothing written does not mean a response went out.
        activity.flushed();
        assert!(!activity.is_idle(), "hyper holds part of a request head");
    }

    #[test]
    fn bytes_read_while_answering_may_be_a_pipelined_request() {
        let activity = Arc::new(Activity::default());
        let in_flight = activity.begin(Some(0));
        reads(&activity, true);
        reads(&activity, false);
        drop(in_flight);
        writes_and_flushes(&activity);
        assert!(!activity.is_idle());
        // The next request head, once parsed, accounts for what was read.
        drop(activity.begin(Some(0)));
        writes_and_flushes(&activity);
        reads(&activity, false);
        assert!(activity.is_idle());
    }

    #[test]
    fn the_declared_body_read_while_answering_is_not_doubtful_but_more_is() {
        let activity = Arc::new(Activity::default());
        let in_flight = activity.begin(Some(150));
        activity.read_some(100);
        activity.read_some(50);
        reads(&activity, false);
        drop(in_flight);
        writes_and_flushes(&activity);
        assert!(activity.is_idle());
        let in_flight = activity.begin(Some(150));
        activity.read_some(151);
        drop(in_flight);
        writes_and_flushes(&activity);
        assert!(
            !activity.is_idle(),
            "a byte beyond the body may be a pipelined request"
        );
        let in_flight = activity.begin(None);
        activity.read_some(1);
        drop(in_flight);
        writes_and_flushes(&activity);
        assert!(
            !activity.is_idle(),
            "a chunked body's end is not known here"
        );
    }

    #[test]
    fn unflushed_bytes_or_an_unread_socket_keep_the_connection_busy() {
        let activity = Arc::new(Activity::default());
        drop(activity.begin(Some(0)));
        activity.unflushed.store(true, Relaxed);
        assert!(!activity.is_idle());
        activity.flushed();
        assert!(!activity.is_idle(), "no read found the socket empty yet");
        reads(&activity, false);
        assert!(activity.is_idle());
    }

    #[test]
    fn a_withdrawn_park_request_was_not_carried_out() {
        let activity = Activity::default();
        activity.ask_park();
        assert!(!activity.withdraw_park());
        activity.ask_park();
        activity.park.store(PARK_DONE, Relaxed);
        assert!(activity.withdraw_park());
        assert!(activity.parked());
    }
}
