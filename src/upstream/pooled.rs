//! Pooled connections: taking an idle one for a request, and the response body that gives its
//! connection back once it has been read to the end.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;

use super::{PoolKey, POOL};
use crate::http::error::Body;

/// A connection between two requests.
pub(crate) struct Idle {
    sender: SendRequest<Body>,
    key: PoolKey,
    idle_timeout: Duration,
    max_idle: usize,
    /// When it is closed if still unused; set when it goes back to the pool (no clock read for
    /// it while in use).
    expires: Option<Instant>,
}

impl Idle {
    /// A connection in use, to go back to the pool under `key` when its response is done.
    pub(super) fn new(
        sender: SendRequest<Body>,
        key: PoolKey,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Self {
        Idle {
            sender,
            key,
            idle_timeout,
            max_idle,
            expires: None,
        }
    }

    /// Whether it is past its idle time, or already closed by the upstream.
    pub(super) fn expired(&self, now: Instant) -> bool {
        self.expires.is_none_or(|expires| now >= expires) || self.sender.is_closed()
    }

    /// Puts it in this worker's pool, unless it is closed or the pool is full for its upstream.
    fn give_back(mut self) {
        if self.sender.is_closed() || self.max_idle == 0 {
            return;
        }
        self.expires = Some(Instant::now() + self.idle_timeout);
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            match pool.get_mut(&self.key) {
                Some(idle) if idle.len() >= self.max_idle => {}
                Some(idle) => idle.push(self),
                None => {
                    pool.insert(self.key, vec![self]);
                }
            }
        });
    }
}

/// The most recently used idle connection to `key`'s upstream that can take a request, if any.
pub(super) async fn take(key: PoolKey) -> Option<SendRequest<Body>> {
    loop {
        let idle = POOL.with(|pool| pool.borrow_mut().get_mut(&key).and_then(Vec::pop))?;
        if idle.expired(Instant::now()) {
            continue;
        }
        let mut sender = idle.sender;
        // Ready at once, or as soon as its task has seen the last response end; an error means
        // the upstream closed it meanwhile.
        if sender.is_ready() || sender.ready().await.is_ok() {
            return Some(sender);
        }
    }
}

/// An upstream response body that returns its connection to the pool when read to the end.
pub(crate) struct PooledBody {
    inner: Incoming,
    /// `None` once given back, or when the connection cannot be reused.
    connection: Option<Idle>,
    /// The request's place among those in flight to upstreams, given back with the body.
    _place: super::InFlight,
}

impl PooledBody {
    /// `body` from `connection`; a connection switching protocols is never reused.
    pub(super) fn new(
        body: Incoming,
        connection: Idle,
        reusable: bool,
        place: super::InFlight,
    ) -> Self {
        PooledBody {
            inner: body,
            connection: reusable.then_some(connection),
            _place: place,
        }
    }

    fn give_back(&mut self) {
        if let Some(connection) = self.connection.take() {
            connection.give_back();
        }
    }
}

impl hyper::body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(context);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            // A connection that failed mid-body is not reused.
            Poll::Ready(Some(Err(_))) => self.connection = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    /// hyper stops polling a body that says it has ended, so the end is also noticed here; a
    /// body dropped before its end takes its connection with it (hyper then closes it).
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.give_back();
        }
    }
}
