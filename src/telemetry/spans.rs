//! Spans below a request's: the work done on its behalf (authentication, WeChat and Redis
//! calls, the upstream exchange), children of the span current on the thread polling it.

use std::future::Future;

use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};

use super::ActiveTracer;
use crate::maybe_boxed::MaybeBoxed;

/// A span for work done on behalf of the traced request being served on this thread (a child of
/// `Context::current()`); does nothing when the request is not traced or not sampled. Ended
/// when dropped.
pub(crate) struct ChildSpan(Option<Context>);

impl ChildSpan {
    /// No span (tracing off).
    pub(crate) fn none() -> ChildSpan {
        ChildSpan(None)
    }

    /// Starts `name` (of `kind`) under the current request's span.
    pub(crate) fn start(name: &'static str, kind: SpanKind) -> ChildSpan {
        ChildSpan(Context::map_current(|parent| {
            let tracer = parent.get::<ActiveTracer>()?;
            if !parent.span().span_context().is_sampled() {
                return None;
            }
            let span = tracer
                .0
                .span_builder(name)
                .with_kind(kind)
                .start_with_context(&tracer.0, parent);
            Some(parent.with_span(span))
        }))
    }

    /// The span's context, when it records (to inject it, or to start spans under it).
    pub(crate) fn context(&self) -> Option<&Context> {
        self.0.as_ref()
    }

    /// Adds an attribute (never a secret).
    pub(crate) fn set(&self, attribute: KeyValue) {
        if let Some(context) = &self.0 {
            context.span().set_attribute(attribute);
        }
    }

    /// Marks the work failed, saying why in words without secrets.
    pub(crate) fn fail(&self, why: impl Into<String>) {
        if let Some(context) = &self.0 {
            context.span().set_status(Status::error(why.into()));
        }
    }
}

impl Drop for ChildSpan {
    fn drop(&mut self) {
        if let Some(context) = &self.0 {
            context.span().end();
        }
    }
}

/// `future`, in an internal span `name` under the current request's span (its own spans, Redis
/// calls for instance, under it) when `on` (tracing is on). The traced future is boxed, the
/// other not: either way one future of the size of the plain one, for callers awaiting it inside
/// the proxied request's future, boxed per request and kept small (see `dispatch::handle`).
pub(crate) fn traced<'a, F>(on: bool, name: &'static str, future: F) -> MaybeBoxed<'a, F>
where
    F: Future + Send + 'a,
{
    match on {
        false => MaybeBoxed::Inline { future },
        true => MaybeBoxed::Boxed {
            future: Box::pin(async move {
                let span = ChildSpan::start(name, SpanKind::Internal);
                match span.context() {
                    Some(context) => future.with_context(context.clone()).await,
                    None => future.await,
                }
            }),
        },
    }
}
