//! The gateway's own endpoints that wait on WeChat or the session store (login, refresh, logout,
//! `/wx/decrypt`, `/wx/phone`, `/wx/session/check`) as one tower service, composed with the layers that bound them.
//! Forward-auth checks and the JWKS answer from memory and are not counted; the proxy bounds its
//! own requests (`upstream.max_in_flight`) without tower, on its measured hot path.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use hyper::body::Incoming;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

use super::{decrypt, login, phone, push, session_check};
use crate::auth::Identity;
use crate::client::ClientConnection;
use crate::http::error::{Body, GatewayError};
use crate::state::AppState;

/// An endpoint that waits on WeChat or the session store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Login,
    Refresh,
    Logout,
    Decrypt,
    Phone,
    SessionCheck,
    Push,
}

/// One request to an [`Endpoint`], with what answering it needs.
pub(crate) struct Call<'a> {
    pub(crate) state: &'a Arc<AppState>,
    pub(crate) endpoint: Endpoint,
    /// The normalized path (the login endpoint reads the app's name from it).
    pub(crate) path: &'a str,
    pub(crate) client: &'a ClientConnection,
    pub(crate) request: Request<Incoming>,
}

/// What an endpoint answers: the response, and who it was for.
pub(crate) type Answer = (http::Response<Body>, Option<Arc<Identity>>);

/// The endpoints themselves, the innermost service: always ready, each call its endpoint's future.
#[derive(Clone, Copy, Debug)]
struct Endpoints;

impl<'a> Service<Call<'a>> for Endpoints {
    type Response = Answer;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, GatewayError>> + Send + 'a>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call<'a>) -> Self::Future {
        let Call {
            state,
            endpoint,
            path,
            client,
            request,
        } = call;
        match endpoint {
            Endpoint::Login => Box::pin(with_identity(login::handle(state, path, client, request))),
            Endpoint::Refresh => Box::pin(with_identity(login::refresh(state, request))),
            Endpoint::Logout => Box::pin(with_identity(login::logout(state, request))),
            Endpoint::Decrypt => Box::pin(with_identity(decrypt::handle(state, request))),
            Endpoint::Phone => Box::pin(with_identity(phone::handle(state, request))),
            Endpoint::Push => Box::pin(async move {
                let app = state
                    .config
                    .wechat
                    .push_app(path)
                    .ok_or(GatewayError::NotFound)?;
                Ok((push::handle(state, app, request).await?, None))
            }),
            Endpoint::SessionCheck => {
                Box::pin(with_identity(session_check::handle(state, request)))
            }
        }
    }
}

/// Answers `call` through the layers: refused at once with 503 `endpoint_busy` when
/// `server.endpoint_max_in_flight` requests are already being answered.
pub(crate) async fn answer(call: Call<'_>) -> Result<Answer, GatewayError> {
    let stack = ServiceBuilder::new()
        // Beyond the limit, refuse at once (503, Retry-After) instead of queueing: a client
        // retries sooner than a queue behind a slow WeChat would drain.
        .load_shed()
        // Counts the requests being answered, across every connection and worker.
        .layer(call.state.endpoint_limit.layer())
        .service(Endpoints);
    stack.oneshot(call).await.map_err(into_gateway_error)
}

/// The endpoint's own error, or `endpoint_busy` for the load shedder's refusal.
fn into_gateway_error(error: BoxError) -> GatewayError {
    match error.downcast::<GatewayError>() {
        Ok(error) => *error,
        Err(error) if error.is::<tower::load_shed::error::Overloaded>() => {
            GatewayError::EndpointBusy
        }
        Err(error) => {
            tracing::error!(%error, "an endpoint layer failed");
            GatewayError::Internal("an endpoint layer failed")
        }
    }
}

/// An endpoint's answer with the identity it served, shared.
async fn with_identity(
    answer: impl Future<Output = Result<(http::Response<Body>, Identity), GatewayError>>,
) -> Result<Answer, GatewayError> {
    let (response, identity) = answer.await?;
    Ok((response, Some(Arc::new(identity))))
}
