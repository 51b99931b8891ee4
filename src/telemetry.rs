//! OpenTelemetry tracing (`[tracing] otlp_endpoint`): a span per request, children for the work
//! done on its behalf (authentication, WeChat calls, Redis calls, the upstream exchange), sampled
//! by the SDK and posted to a collector as OTLP/HTTP protobuf (`export.rs`).
//!
//! W3C trace context: a client's `traceparent` (and `tracestate`) makes the request span its
//! child, a sampled parent keeping the trace sampled; the upstream always gets a `traceparent`
//! whose parent is the gateway's span, sampled or not. With tracing off (no `otlp_endpoint`)
//! nothing here runs: the request path checks one `Option`, and the code deep below it (Redis,
//! WeChat) finds no tracer in the request's context.
//!
//! No attribute carries a secret: not the token, the login code, the session_key, an
//! access_token, a URL with its query, or any header.

use std::future::Future;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use opentelemetry::context::FutureExt as _;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, SdkTracer, SdkTracerProvider,
    ShouldSample,
};
use opentelemetry_sdk::Resource;

use crate::config::TracingConfig;
use crate::maybe_boxed::MaybeBoxed;

/// A trace's id, as log lines show it.
pub(crate) use opentelemetry::trace::TraceId;

mod export;

/// The tracer of a running gateway, made at start from `[tracing]` (a restart applies changes).
pub(crate) struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    /// `[tracing] sample_ratio` under the client's decision, asked first: a request it leaves
    /// unsampled gets a bare span context (ids only, for its `traceparent` and log lines), not a
    /// span.
    sampler: Sampler,
    ids: RandomIdGenerator,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tracing")
    }
}

/// The tracer, kept in a traced request's context so that work deep below the request (Redis,
/// WeChat calls) can add child spans without being handed it.
#[derive(Clone)]
struct ActiveTracer(SdkTracer);

impl Tracing {
    /// The tracer `config` asks for; `None` when `otlp_endpoint` is unset.
    pub(crate) fn start(config: &TracingConfig) -> Result<Option<Arc<Tracing>>, String> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let exporter = export::Exporter::new(endpoint, &resource)?;
        let sampler =
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)));
        // `request` decides first with `sampler`; what it hands the SDK is to be sampled (a
        // root the ratio picked) or follows its parent.
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
            .with_resource(resource)
            .with_span_processor(exporter.into_processor())
            .build();
        let tracer = provider.tracer("wxgate");
        Ok(Some(Arc::new(Tracing {
            provider,
            tracer,
            propagator: TraceContextPropagator::new(),
            sampler,
            ids: RandomIdGenerator::default(),
        })))
    }

    /// The context of a request: its server span, the child of the client's `traceparent` when
    /// that is valid, and this tracer for the spans below it. A request the sampler leaves out
    /// (most, at a low `sample_ratio`) gets only a span context: its trace id and a span id of the
    /// gateway's, for the upstream's `traceparent` and the log lines, and no span, attribute or
    /// allocation beyond it.
    pub(crate) fn request(
        &self,
        method: &Method,
        route: &str,
        headers: &HeaderMap,
    ) -> RequestTrace {
        let parent = match headers.contains_key(TRACEPARENT) {
            true => self
                .propagator
                .extract_with_context(&Context::new(), &HeaderExtractor(headers)),
            false => Context::new(),
        };
        let parent_span = parent.span();
        let parent_context = parent_span.span_context();
        let trace_id = match parent_context.is_valid() {
            true => parent_context.trace_id(),
            false => self.ids.new_trace_id(),
        };
        let decision =
            self.sampler
                .should_sample(Some(&parent), trace_id, "", &SpanKind::Server, &[], &[]);
        if decision.decision != SamplingDecision::RecordAndSample {
            let span_id = self.ids.new_span_id();
            let state = parent_context.trace_state();
            // Without a `tracestate` to carry on (nearly always), the ids alone: no context, no
            // allocation, nothing attached at each poll.
            if state.header().is_empty() {
                return RequestTrace::Bare(BareTrace { trace_id, span_id });
            }
            let bare = SpanContext::new(
                trace_id,
                span_id,
                TraceFlags::default(),
                false,
                state.clone(),
            );
            return RequestTrace::Context(Context::new().with_remote_span_context(bare));
        }
        let span = self
            .tracer
            .span_builder(format!("{method} {route}"))
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", method.as_str().to_string()),
                KeyValue::new("http.route", route.to_string()),
            ])
            .start_with_context(&self.tracer, &parent);
        RequestTrace::Context(
            parent
                .with_span(span)
                .with_value(ActiveTracer(self.tracer.clone())),
        )
    }

    /// Sets the upstream request's `traceparent` (and `tracestate`) from `context`, replacing the
    /// client's: W3C Trace Context version 00, written here rather than by the SDK's propagator,
    /// whose formatting and header parsing cost about 4,800 instructions per request
    /// (bench/RESULTS.md, "Tracing").
    pub(crate) fn inject(&self, context: &Context, headers: &mut HeaderMap) {
        headers.remove(TRACESTATE);
        let span = context.span();
        let span_context = span.span_context();
        if !span_context.is_valid() {
            headers.remove(TRACEPARENT);
            return;
        }
        let sampled = span_context.trace_flags().to_u8() & TraceFlags::SAMPLED.to_u8();
        let (trace_id, span_id) = (span_context.trace_id(), span_context.span_id());
        set_traceparent(headers, trace_id, span_id, sampled);
        let state = span_context.trace_state().header();
        if !state.is_empty() {
            if let Ok(value) = HeaderValue::from_str(&state) {
                headers.insert(TRACESTATE, value);
            }
        }
    }

    /// Sets the upstream request's `traceparent` from the request served on this thread.
    pub(crate) fn inject_current(&self, headers: &mut HeaderMap) {
        match BARE.get() {
            Some(bare) => {
                headers.remove(TRACESTATE);
                set_traceparent(headers, bare.trace_id, bare.span_id, 0);
            }
            None => Context::map_current(|context| self.inject(context, headers)),
        }
    }

    /// Sends what is buffered and stops the exporter (at shutdown).
    pub(crate) fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "tracing: the last spans could not be exported");
        }
    }
}

/// `tracestate`, removed before the gateway's own context is injected.
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// `traceparent`: a request without one has no parent to read.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Whether the request served on this thread is traced and sampled (its work gets spans).
pub(crate) fn sampled() -> bool {
    Context::map_current(|context| context.span().span_context().is_sampled())
}

/// Ends a request's span with the status it was answered with (nothing for an unsampled one).
pub(crate) fn end_request(trace: &RequestTrace, path: &str, status: StatusCode) {
    let RequestTrace::Context(context) = trace else {
        return;
    };
    let span = context.span();
    if !span.is_recording() {
        return;
    }
    span.set_attributes([
        KeyValue::new("url.path", path.to_string()),
        KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
    ]);
    if status.is_server_error() {
        span.set_status(Status::error(status.as_str().to_string()));
    }
    span.end();
}

/// The trace a context's span belongs to, when it has one.
pub(crate) fn trace_id(context: &Context) -> Option<TraceId> {
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| span_context.trace_id())
}

/// `id` in lowercase hex, as `traceparent` and the log lines write it.
pub(crate) fn trace_id_hex(id: TraceId) -> [u8; 32] {
    let mut text = [0; 32];
    crate::ascii::write_hex(&id.to_bytes(), &mut text);
    text
}

/// The trace id of the request being served on this thread, if it is traced (for log lines).
pub(crate) fn current_trace_id() -> Option<TraceId> {
    match BARE.get() {
        Some(bare) => Some(bare.trace_id),
        None => Context::map_current(trace_id),
    }
}

/// A request's trace, as [`Tracing::request`] made it.
#[derive(Clone)]
pub(crate) enum RequestTrace {
    /// A sampled request's span (or an unsampled one with a `tracestate` to carry on), in the
    /// OpenTelemetry context made current while the request is polled: the spans below it find
    /// it there.
    Context(Context),
    /// An unsampled request's ids: the trace's and the gateway's span.
    Bare(BareTrace),
}

/// The ids of an unsampled request's trace.
#[derive(Clone, Copy)]
pub(crate) struct BareTrace {
    trace_id: TraceId,
    span_id: SpanId,
}

impl RequestTrace {
    /// The trace id, for the request line.
    pub(crate) fn trace_id(&self) -> Option<TraceId> {
        match self {
            RequestTrace::Context(context) => trace_id(context),
            RequestTrace::Bare(bare) => Some(bare.trace_id),
        }
    }

    /// Makes the trace current on this thread until the guard is dropped (around each poll of
    /// the request's future).
    pub(crate) fn enter(&self) -> Entered {
        match self {
            RequestTrace::Context(context) => Entered::Context {
                _attached: context.clone().attach(),
            },
            RequestTrace::Bare(bare) => Entered::Bare(BARE.replace(Some(*bare))),
        }
    }
}

/// A trace made current by [`RequestTrace::enter`]; what was current before comes back on drop.
pub(crate) enum Entered {
    Context {
        _attached: opentelemetry::ContextGuard,
    },
    Bare(Option<BareTrace>),
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Entered::Bare(before) = self {
            BARE.set(before.take());
        }
    }
}

thread_local! {
    /// The unsampled request whose future this thread is polling, if any.
    static BARE: std::cell::Cell<Option<BareTrace>> = const { std::cell::Cell::new(None) };
}

/// Sets `traceparent` (W3C Trace Context version 00) for `trace_id` and `span_id`.
fn set_traceparent(headers: &mut HeaderMap, trace_id: TraceId, span_id: SpanId, flags: u8) {
    let mut value = *b"00-00000000000000000000000000000000-0000000000000000-00";
    crate::ascii::write_hex(&trace_id.to_bytes(), &mut value[3..35]);
    crate::ascii::write_hex(&span_id.to_bytes(), &mut value[36..52]);
    crate::ascii::write_hex(&[flags], &mut value[53..55]);
    if let Ok(value) = HeaderValue::from_bytes(&value) {
        headers.insert(TRACEPARENT, value);
    }
}

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

/// Reads `traceparent`/`tracestate` from request headers.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}
