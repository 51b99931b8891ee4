//! `GET /.well-known/jwks.json`: the public keys of every asymmetric key configured (signing and
//! verify-only), so backends can check tokens themselves. HS256 secrets are never published; with
//! HS256 only, the set is empty.

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Response, StatusCode};

use crate::http::error::{full_body, Body, GatewayError};
use crate::token::TokenKeys;

/// Where the key set is served (RFC 8414's well-known location, as identity providers use it).
pub(crate) const PATH: &str = crate::config::JWKS_PATH;

/// How long clients may cache the key set: short enough that a key added ahead of a rotation is
/// seen well before it signs anything.
const CACHE_CONTROL_VALUE: &str = "public, max-age=300";

/// Answers the key set request.
pub(crate) fn handle(method: &Method, keys: &TokenKeys) -> Result<Response<Body>, GatewayError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(GatewayError::MethodNotAllowed { allow: "GET, HEAD" });
    }
    let mut response = Response::new(full_body(keys.jwks()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL_VALUE));
    Ok(response)
}
