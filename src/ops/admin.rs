//! The admin listener (`[admin] listen`, loopback by default, never the public listener):
//!
//! | path | answer |
//! | --- | --- |
//! | `/metrics` | every metric, Prometheus text format 0.0.4 |
//! | `/healthz` | 200 while the process serves (liveness) |
//! | `/readyz` | 200 when the config is loaded, the public listener accepts and the session store answers; 503 with the failing check otherwise, and from the moment shutdown begins (readiness) |

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::http::error::{full_body, json_response, Body, GatewayError};
use crate::state::AppState;

/// How long /readyz waits for the session store.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What readiness knows besides the state: whether the public listener is accepting.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    accepting: AtomicBool,
}

impl Readiness {
    /// The public listener accepts connections (true) or has stopped for shutdown (false).
    pub(crate) fn set_accepting(&self, accepting: bool) {
        self.accepting.store(accepting, Ordering::SeqCst);
    }
}

/// Serves the admin endpoints until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    current: Weak<ArcSwap<AppState>>,
    readiness: Arc<Readiness>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "admin listener (metrics, health) ready");
    }
    crate::simple_http::serve_handler(listener, shutdown, move |request| {
        // Weak: the admin listener must not keep the state (and its drain guard) alive while the
        // gateway drains; once the last connection is gone, the state is too.
        let state = current.upgrade().map(|current| current.load_full());
        let readiness = readiness.clone();
        async move {
            match state {
                Some(state) => answer(&state, &readiness, &request).await,
                None => json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({ "status": "shutting_down" }),
                ),
            }
        }
    })
    .await
}

async fn answer(
    state: &AppState,
    readiness: &Readiness,
    request: &Request<Incoming>,
) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return GatewayError::MethodNotAllowed { allow: "GET, HEAD" }.into_response();
    }
    let mut response = match request.uri().path() {
        "/metrics" => {
            let mut response = Response::new(full_body(state.metrics.render()));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            response
        }
        "/healthz" => json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" })),
        "/readyz" => ready(state, readiness).await,
        _ => GatewayError::NotFound.into_response(),
    };
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Every readiness check, each "ok" or what is wrong.
async fn ready(state: &AppState, readiness: &Readiness) -> Response<Body> {
    let listener = if readiness.accepting.load(Ordering::SeqCst) {
        "ok".to_string()
    } else {
        "not accepting connections (starting or shutting down)".to_string()
    };
    let store = match tokio::time::timeout(STORE_CHECK_TIMEOUT, state.sessions.ping()).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(error)) => error.to_string(),
        Err(_) => "session store did not answer in time".to_string(),
    };
    let is_ready = listener == "ok" && store == "ok";
    let body = serde_json::json!({
        "status": if is_ready { "ready" } else { "not_ready" },
        "checks": {
            // A state exists only for a config that validated.
            "config": "ok",
            "listener": listener,
            "session_store": store,
        },
    });
    let status = if is_ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &body)
}
