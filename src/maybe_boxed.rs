//! A future that is either inline or boxed: for the request path's rare branches (a fleet rate
//! limit's Redis call, a traced authorization, the exchange with a group's instances), whose
//! futures would otherwise take their room in the proxied request's future, boxed per request
//! and kept within glibc's per-thread cache (see `server::dispatch`). The common branch stays
//! inline; the rare one costs one allocation.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    /// `F` itself, or a boxed future with the same output.
    #[project = MaybeBoxedProjection]
    pub(crate) enum MaybeBoxed<'a, F: Future> {
        /// The common branch, inline.
        Inline { #[pin] future: F },
        /// The rare branch, boxed.
        Boxed { future: Pin<Box<dyn Future<Output = F::Output> + Send + 'a>> },
    }
}

impl<F: Future> Future for MaybeBoxed<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<F::Output> {
        match self.project() {
            MaybeBoxedProjection::Inline { future } => future.poll(context),
            MaybeBoxedProjection::Boxed { future } => future.as_mut().poll(context),
        }
    }
}
