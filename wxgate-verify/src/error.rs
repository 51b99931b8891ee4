//! Why a request was refused, answered as the gateway answers: 401 with
//! `{"error": code, "message": words}` and a `WWW-Authenticate` challenge.

use std::fmt;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// A refused request: no credential, or one that does not verify (the reason is for the log and
/// the message; the code is stable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No assertion (nor, where accepted, client token) came.
    Missing,
    /// One came and does not verify; the words say why.
    Invalid(&'static str),
    /// The gateway's keys could not be fetched, so nothing can be verified.
    KeysUnavailable,
}

impl Refusal {
    /// The stable machine-readable code, as in the gateway's errors.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing_assertion",
            Refusal::Invalid(_) => "invalid_assertion",
            Refusal::KeysUnavailable => "keys_unavailable",
        }
    }

    /// The HTTP status: 401, but 503 when the keys could not be fetched (the caller did
    /// nothing wrong).
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The refusal as an HTTP response in the gateway's JSON error shape.
    pub fn to_response(&self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status() == StatusCode::UNAUTHORIZED {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="wxgate""#),
            );
        }
        response
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Missing => {
                f.write_str("no identity assertion: call this service through wxgate")
            }
            Refusal::Invalid(why) => write!(f, "the identity assertion is not valid ({why})"),
            Refusal::KeysUnavailable => f.write_str("the gateway's keys could not be fetched"),
        }
    }
}

impl std::error::Error for Refusal {}
