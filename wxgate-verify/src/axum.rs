//! `WxgateIdentity` as an axum extractor: the identity [`crate::VerifyLayer`] verified. A handler
//! reached without the layer (a route it does not cover) refuses with 401, never runs without an
//! identity.

use axum_core::extract::FromRequestParts;
use axum_core::response::Response;
use http::request::Parts;

use crate::{Refusal, WxgateIdentity};

impl<S: Send + Sync> FromRequestParts<S> for WxgateIdentity {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<WxgateIdentity>()
            .cloned()
            .ok_or_else(|| {
                Refusal::Missing
                    .to_response()
                    .map(axum_core::body::Body::new)
            })
    }
}
