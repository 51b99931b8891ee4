//! A forwarded request body as the upstream connection reads it: each frame must come within
//! `server.body_read_timeout_ms` of the previous one (a client that sends a head and then goes
//! silent no longer holds its connection and an upstream one), and a body that fails (bad chunked
//! framing, a client gone mid-body) fails as the client's error, which the proxy answers with 400
//! instead of blaming the upstream.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::LengthLimitError;
use tokio::time::{Instant, Sleep};

use crate::http::error::{BoxError, GatewayError};

/// Why a forwarded request body ended early, found again in the upstream exchange's error chain.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientBodyError {
    /// No frame within the timeout.
    #[error("the request body stalled")]
    Stalled,
    /// The client's body could not be read (malformed framing, the client hung up).
    #[error("the request body could not be read: {0}")]
    Failed(BoxError),
}

impl ClientBodyError {
    /// The answer the client gets for it.
    pub(crate) fn answer(&self) -> GatewayError {
        match self {
            ClientBodyError::Stalled => GatewayError::BodyReadTimeout,
            ClientBodyError::Failed(_) => GatewayError::InvalidRequestBody,
        }
    }
}

pin_project_lite::pin_project! {
    /// The client's body with a timer between frames.
    pub(crate) struct ClientBody<B> {
        #[pin]
        inner: B,
        between_frames: Duration,
        // Made when the body first waits (bodies that come at once take no timer).
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<B> ClientBody<B> {
    /// The client's `inner` body, failing with [`ClientBodyError::Stalled`] when no frame comes
    /// within `between_frames` of the previous one (or of the first wait).
    pub(crate) fn new(inner: B, between_frames: Duration) -> Self {
        ClientBody {
            inner,
            between_frames,
            timer: None,
        }
    }
}

impl<B> HttpBody for ClientBody<B>
where
    B: HttpBody<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(timer) = this.timer {
                    if let Some(next) = Instant::now().checked_add(*this.between_frames) {
                        timer.as_mut().reset(next);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            // The body limit is the proxy's own verdict (413): passed on as it is.
            Poll::Ready(Some(Err(error))) if error.is::<LengthLimitError>() => {
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(Some(Err(error))) => {
                Poll::Ready(Some(Err(Box::new(ClientBodyError::Failed(error)))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let between_frames = *this.between_frames;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(between_frames)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(ClientBodyError::Stalled)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
