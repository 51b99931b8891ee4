//! The optional plain-HTTP listener of a TLS gateway: every request is answered with a permanent
//! redirect to the same host and path over HTTPS.

use std::future::Future;

use http::header::{HeaderValue, HOST, LOCATION};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::http::error::{full_body, Body, GatewayError};

/// Redirects every request on `listener` to `https://<host>[:https_port]<path and query>` (308, so
/// the method and body are kept) until `shutdown` completes.
pub async fn redirect_to_https(
    listener: TcpListener,
    https_port: u16,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    crate::simple_http::serve_handler(listener, shutdown, move |request| async move {
        redirect(&request, https_port).unwrap_or_else(GatewayError::into_response)
    })
    .await
}

fn redirect(request: &Request<Incoming>, https_port: u16) -> Result<Response<Body>, GatewayError> {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .or_else(|| {
            request
                .uri()
                .authority()
                .map(|authority| authority.as_str())
        })
        .and_then(|host| host.parse::<http::uri::Authority>().ok())
        .ok_or(GatewayError::InvalidRequest(
            "a Host header is needed to redirect to HTTPS",
        ))?;
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |target| target.as_str());
    let location = format!("https://{}{port}{target}", host.host());
    let location = HeaderValue::from_str(&location)
        .map_err(|_| GatewayError::InvalidRequest("the request cannot be redirected"))?;
    let mut response = Response::new(full_body(""));
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    response.headers_mut().insert(LOCATION, location);
    Ok(response)
}
