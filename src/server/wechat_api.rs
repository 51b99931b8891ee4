//! The `[wechat_api]` listener: backends call WeChat's server APIs here, and the gateway adds the
//! access_token (`endpoints::wechat_api`). Bounded like every edge: `wechat_api.max_in_flight`
//! calls at once (503 `endpoint_busy` beyond, at once), `wechat_api.timeout_ms` each. One request
//! line per call, as on the public listener; the query, where WeChat's token would be, is never
//! logged.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Instant;

use arc_swap::ArcSwap;
use http::Request;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::endpoints::wechat_api;
use crate::http::error::{Body, GatewayError};
use crate::http::request_id::RequestId;
use crate::state::AppState;

/// The `route` label of the listener's requests in the metrics.
const ROUTE_LABEL: &str = "wechat_api";

/// Serves backends' WeChat API calls until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    current: Weak<ArcSwap<AppState>>,
    max_in_flight: usize,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "WeChat API listener for backends ready");
    }
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    crate::simple_http::serve_with_peer(listener, shutdown, move |request, peer| {
        // Weak, as for the admin listener: it must not keep a draining gateway's state alive.
        let state = current.upgrade().map(|current| current.load_full());
        let in_flight = in_flight.clone();
        async move {
            match state {
                Some(state) => answer(&state, &in_flight, peer, request).await,
                None => GatewayError::EndpointBusy.into_response(),
            }
        }
    })
    .await
}

/// One call: answered within the limits, counted and logged.
async fn answer(
    state: &AppState,
    in_flight: &Semaphore,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> http::Response<Body> {
    let started = Instant::now();
    let request_id = RequestId::for_request(request.headers());
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let answer = match in_flight.try_acquire() {
        Ok(_permit) => {
            let timeout = state.config.wechat_api.timeout;
            let call = wechat_api::handle(state, peer, request);
            let call = crate::logging::in_request(request_id.clone(), None, call);
            tokio::time::timeout(timeout, call)
                .await
                .unwrap_or(Err(GatewayError::WeChatTimeout))
        }
        Err(_) => Err(GatewayError::EndpointBusy),
    };
    let mut response = answer.unwrap_or_else(GatewayError::into_response);
    let answered = super::dispatch::Answered {
        label: ROUTE_LABEL,
        request_id: &request_id,
        method: &method,
        path: &path,
        started,
        trace_id: None,
    };
    answered.finish(state, &mut response, None);
    response
}
