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

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;

use crate::config::TracingConfig;

/// A trace's id, as log lines show it.
pub(crate) use opentelemetry::trace::TraceId;

mod export;
mod sampling;
mod spans;

pub(crate) use spans::{traced, ChildSpan};

use sampling::RootSampler;

/// The tracer of a running gateway, made at start from `[tracing]` (a restart applies changes).
pub(crate) struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    /// `[tracing] sample_ratio`, for the traces requests start (a client's `traceparent` decides
    /// for a trace it continues), asked before the SDK: a request left unsampled gets a bare span
    /// context (ids only, for its `traceparent` and log lines), not a span.
    root_sampler: RootSampler,
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
        // `request` decides first with `root_sampler` and the client's flags; what it hands the
        // SDK is to be sampled (a root the ratio picked) or follows its parent.
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
            root_sampler: RootSampler::new(config.sample_ratio),
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
        let client = ClientTraceHeaders::find(headers);
        if !client.traceparent {
            // A trace this request starts (nearly all): the ratio decides, before any context.
            let trace_id = self.ids.new_trace_id();
            if !self.root_sampler.samples(trace_id) {
                return RequestTrace::Bare(BareTrace {
                    trace_id,
                    span_id: self.ids.new_span_id(),
                    client_tracestate: client.tracestate,
                });
            }
            // Sampled: the SDK starts the trace (under an id of its own, equally random).
            return self.span(method, route, Context::new());
        }
        let parent = self
            .propagator
            .extract_with_context(&Context::new(), &HeaderExtractor(headers));
        let parent_span = parent.span();
        let parent_context = parent_span.span_context();
        let (trace_id, sampled) = match parent_context.is_valid() {
            true => (parent_context.trace_id(), parent_context.is_sampled()),
            false => {
                let trace_id = self.ids.new_trace_id();
                (trace_id, self.root_sampler.samples(trace_id))
            }
        };
        if !sampled {
            let span_id = self.ids.new_span_id();
            let state = parent_context.trace_state();
            // Without a `tracestate` to carry on (nearly always), the ids alone: no context, no
            // allocation, nothing attached at each poll.
            if state.header().is_empty() {
                return RequestTrace::Bare(BareTrace {
                    trace_id,
                    span_id,
                    client_tracestate: client.tracestate,
                });
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
        self.span(method, route, parent)
    }

    /// A sampled request's server span, under `parent` (the client's span context, or none).
    fn span(&self, method: &Method, route: &str, parent: Context) -> RequestTrace {
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
                if bare.client_tracestate {
                    headers.remove(TRACESTATE);
                }
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
    /// Whether the client sent a `tracestate` (not the gateway's to pass on: it goes).
    client_tracestate: bool,
}

/// Which trace context headers a client sent, found in one look at the header names: most
/// requests carry neither, and two map lookups cost more than a glance at a few names.
struct ClientTraceHeaders {
    traceparent: bool,
    tracestate: bool,
}

impl ClientTraceHeaders {
    fn find(headers: &HeaderMap) -> ClientTraceHeaders {
        let mut found = ClientTraceHeaders {
            traceparent: false,
            tracestate: false,
        };
        for name in headers.keys() {
            let name = name.as_str();
            found.traceparent |= name == TRACEPARENT.as_str();
            found.tracestate |= name == TRACESTATE.as_str();
        }
        found
    }
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
    // SAFETY: `value` is ASCII digits, `a`-`f` and `-` only: valid UTF-8 and a valid header
    // value. Unchecked because checking its 55 bytes again cost ~220 instructions per request.
    let value = unsafe { HeaderValue::from_maybe_shared_unchecked(Bytes::copy_from_slice(&value)) };
    headers.insert(TRACEPARENT, value);
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
