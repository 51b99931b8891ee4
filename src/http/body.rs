//! The body type of every response the gateway sends (streamed from an upstream, or built here),
//! and the helpers that build the gateway's own: a JSON answer, bytes held in memory.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};

/// Error type of bodies flowing through the gateway (client, upstream and our own).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response the gateway sends, streamed from upstream or built here.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A response with a JSON body; shared by error responses and the gateway's own endpoints.
pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    // Serializing a `Value` cannot fail (its map keys are always strings).
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(full_body(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Wraps bytes held in memory into the gateway's body type.
pub(crate) fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}
