//! The admin listener (`[admin] listen`, loopback by default, never the public listener):
//!
//! | path | answer |
//! | --- | --- |
//! | `/metrics` | every metric, Prometheus text format 0.0.4 |
//! | `/healthz` | 200 while the process serves (liveness) |
//! | `/readyz` | 200 when the config is loaded, the public listener accepts and the session store answers; 503 with the failing check otherwise, and from the moment shutdown begins (readiness) |

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShed;
use tower::timeout::Timeout;
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};

use crate::http::error::{full_body, json_response, Body, GatewayError};
use crate::state::AppState;

/// How long /readyz waits for the session store.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Admin answers being made at once, over every admin connection; beyond, 503 at once.
const MAX_IN_FLIGHT: usize = 32;
/// Longest an admin answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

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
    let answers = guarded(service_fn(move |request: Request<Incoming>| {
        // Weak: the admin listener must not keep the state (and its drain guard) alive while the
        // gateway drains; once the last connection is gone, the state is too.
        let state = current.upgrade().map(|current| current.load_full());
        let readiness = readiness.clone();
        async move {
            Ok::<_, Infallible>(match state {
                Some(state) => answer(&state, &readiness, &request).await,
                None => status(StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            })
        }
    }));
    crate::simple_http::serve_handler(listener, shutdown, move |request| {
        let answers = answers.clone();
        async move { answers.oneshot(request).await.unwrap_or_else(refusal) }
    })
    .await
}

/// The admin answers behind the layers that bound them.
fn guarded<S, R>(answers: S) -> LoadShed<tower::limit::ConcurrencyLimit<Timeout<S>>>
where
    S: Service<R>,
{
    ServiceBuilder::new()
        // Past the limit, refuse at once (503) rather than queue: a probe or scrape storm must not
        // pile up requests, each /readyz asking the session store.
        .load_shed()
        // One count for every admin connection: a few answers at once is all operators need.
        .layer(GlobalConcurrencyLimitLayer::new(MAX_IN_FLIGHT))
        // No answer waits longer, whatever it waits on.
        .timeout(ANSWER_TIMEOUT)
        .service(answers)
}

/// The answer to a request a layer refused: 503, and which limit it met.
fn refusal(error: BoxError) -> Response<Body> {
    let reason = if error.is::<tower::load_shed::error::Overloaded>() {
        "busy"
    } else if error.is::<tower::timeout::error::Elapsed>() {
        "timed_out"
    } else {
        "failed"
    };
    status(StatusCode::SERVICE_UNAVAILABLE, reason)
}

/// A JSON `{"status": ...}` answer.
fn status(code: StatusCode, status: &str) -> Response<Body> {
    json_response(code, &serde_json::json!({ "status": status }))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An admin answer that takes `delay`.
    fn slow(
        delay: Duration,
    ) -> impl Service<(), Response = (), Error = Infallible, Future = impl Send> + Clone {
        service_fn(move |()| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, Infallible>(())
        })
    }

    async fn refused(error: BoxError) -> (StatusCode, serde_json::Value) {
        let response = refusal(error);
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_limit_admin_requests_are_refused_at_once_and_none_waits_past_the_timeout() {
        let answers = guarded(slow(Duration::from_secs(60)));
        let mut held = Vec::new();
        for _ in 0..MAX_IN_FLIGHT {
            let mut call = Box::pin(answers.clone().oneshot(()));
            assert!(
                futures_poll_once(&mut call).await.is_none(),
                "still waiting"
            );
            held.push(call);
        }
        let error = answers.clone().oneshot(()).await.unwrap_err();
        let (status, body) = refused(error).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("busy"))
        );

        // The held answers run out of time; their places are free again.
        let error = held.pop().unwrap().await.unwrap_err();
        let (status, body) = refused(error).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("timed_out"))
        );
        drop(held);
        let error = answers.clone().oneshot(()).await.unwrap_err();
        assert_eq!(
            refused(error).await.1["status"],
            "timed_out",
            "admitted, not shed"
        );
        let quick = guarded(slow(Duration::from_millis(10)));
        assert!(quick.oneshot(()).await.is_ok());
    }

    /// Polls `future` once: its output if it is ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(
        future: &mut F,
    ) -> Option<F::Output> {
        std::future::poll_fn(|context| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut *future).poll(context) {
                std::task::Poll::Ready(output) => Some(output),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
