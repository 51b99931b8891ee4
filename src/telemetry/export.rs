//! Posting spans to the collector: the SDK's batch processor hands batches (every second, or
//! sooner when 512 are waiting) to the OTLP/HTTP protobuf exporter, which posts them to
//! `<otlp_endpoint>/v1/traces` through hyper (TLS with the system roots for https).
//!
//! The batch processor runs on a thread of its own and waits for each export there; the HTTP
//! client needs a tokio runtime, so the exports run on a small runtime of their own (one thread),
//! apart from the workers that serve requests, and alive as long as the exporter.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use tokio::sync::oneshot;

/// How long one export may take (connecting and the collector's answer).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often buffered spans are sent.
const EXPORT_INTERVAL: Duration = Duration::from_secs(1);

/// The OTLP exporter, driven on its own runtime.
#[derive(Debug)]
pub(super) struct Exporter {
    otlp: Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Handle,
    /// Ends the runtime's thread when the exporter is dropped.
    _stop: oneshot::Sender<()>,
}

impl Exporter {
    /// An exporter posting to `<endpoint>/v1/traces`, its spans under `resource`.
    pub(super) fn new(endpoint: &str, resource: &Resource) -> Result<Self, String> {
        let tls = crate::tls::upstream_client_config(&[])
            .map_err(|error| format!("tracing.otlp_endpoint: {error}"))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = opentelemetry_http::hyper::HyperClient::new(connector, EXPORT_TIMEOUT, None);
        let mut otlp = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{endpoint}/v1/traces"))
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|error| format!("tracing.otlp_endpoint: {error}"))?;
        otlp.set_resource(resource);
        let (runtime, stop) = runtime_thread()?;
        Ok(Exporter {
            otlp: Arc::new(otlp),
            runtime,
            _stop: stop,
        })
    }

    /// The batch processor that feeds this exporter.
    pub(super) fn into_processor(self) -> BatchSpanProcessor {
        let config = BatchConfigBuilder::default()
            .with_scheduled_delay(EXPORT_INTERVAL)
            .build();
        BatchSpanProcessor::builder(self)
            .with_batch_config(config)
            .build()
    }
}

impl SpanExporter for Exporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let otlp = self.otlp.clone();
        let exported = self.runtime.spawn(async move { otlp.export(batch).await });
        async move {
            exported
                .await
                .unwrap_or_else(|error| Err(OTelSdkError::InternalFailure(error.to_string())))
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.otlp.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Set when made; the provider passes the same resource again.
        if let Some(otlp) = Arc::get_mut(&mut self.otlp) {
            otlp.set_resource(resource);
        }
    }
}

/// A one-thread runtime for the exports, running until the returned sender is dropped.
fn runtime_thread() -> Result<(tokio::runtime::Handle, oneshot::Sender<()>), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("tracing: no runtime for the exporter: {error}"))?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("wxgate-otlp".into())
        .spawn(move || {
            let _ = runtime.block_on(stopped);
        })
        .map_err(|error| format!("tracing: no thread for the exporter: {error}"))?;
    Ok((handle, stop))
}
