//! The forward-auth endpoint (`[forward_auth] path`, default `/auth`, and everything under it):
//! an ingress asks "may this request pass, and as whom?" and the answer is in the status and
//! headers: 200 with `X-OpenId` / `X-UnionId` for a valid token, 401 with `WWW-Authenticate`
//! otherwise. The body is informational only.
//!
//! Which request is being judged comes from the asking proxy, in the shape it speaks:
//! - nginx `auth_request`, ingress-nginx `auth-url`: `X-Original-URI` (a path) or `X-Original-URL`
//!   (a full URL), method in `X-Original-Method`;
//! - Traefik ForwardAuth, APISIX forward-auth: `X-Forwarded-Uri`, `X-Forwarded-Method`;
//! - Envoy ext_authz HTTP service: the original method, and the original path appended to the
//!   endpoint's path (`/auth/api/orders`).
//!
//! The original path, normalized exactly as the proxy normalizes, picks the route and so the auth
//! mode: a path under an `auth = "none"` route passes without a token. Fail closed everywhere
//! else: the request is judged as a protected path (a valid token required) when the peer is not
//! in `server.trusted_proxies`, when no original path is given, when it cannot be normalized, when
//! the sources present disagree (a client-supplied `X-Original-URI` smuggled past a proxy that
//! sets `X-Forwarded-Uri` says something else than the proxy does), and when no route covers it.

use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL};
use http::{Request, Response, StatusCode};

use crate::auth::{self, Identity};
use crate::client::ClientConnection;
use crate::config::AuthMode;
use crate::http::error::{json_response, GatewayError};
use crate::http::headers;
use crate::http::path;
use crate::state::AppState;

const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");

/// The request an auth check is about, as far as it could be established.
#[derive(Debug, PartialEq, Eq)]
struct Original {
    /// The original method, for the log and the informational body.
    method: String,
    /// The normalized original path, or why the request is judged as a protected path instead.
    path: Result<String, &'static str>,
}

/// Answers one forward-auth check; `path` is the normalized path of the check request itself.
pub(crate) async fn handle<B>(
    state: &AppState,
    path: &str,
    client: &ClientConnection,
    request: Request<B>,
) -> Result<(Response<crate::http::error::Body>, Option<Arc<Identity>>), GatewayError> {
    let config = &state.config;
    let trusted = config.server.trusted_proxies.contains(client.peer.ip());
    let suffix = path
        .strip_prefix(config.forward_auth.path.as_str())
        .unwrap_or_default();
    let original = original_request(
        request.method().as_str(),
        suffix,
        request.headers(),
        trusted,
    );
    let route = match &original.path {
        Ok(original_path) => state.routes.find(original_path),
        Err(reason) => {
            tracing::debug!(%reason, peer = %client.peer, "forward-auth: judged as a protected path");
            None
        }
    };
    let route = route.map(|route| &route.config);
    let mode = route.map_or(AuthMode::Required, |route| route.auth);
    let verified = auth::authorize(state, request.headers(), None, route).await?;
    tracing::debug!(
        method = %original.method,
        path = ?original.path,
        auth = mode.as_str(),
        "forward-auth: allowed"
    );
    let body = serde_json::json!({
        "authenticated": verified.is_some(),
        "auth": mode.as_str(),
        "method": original.method,
        "path": original.path.as_deref().ok(),
        "openid": verified.as_ref().map(|verified| verified.identity.openid.as_str()),
    });
    let mut response = json_response(StatusCode::OK, &body);
    let response_headers = response.headers_mut();
    response_headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(verified) = &verified {
        // The assertion's audience: the judged route's, or the endpoint's own path when no route
        // covers the original request.
        let audience = route.map_or(config.forward_auth.path.as_str(), |route| {
            route.audience.as_str()
        });
        let identity = auth::forwarded_identity(state, verified, audience)?;
        headers::set_identity(response_headers, &state.identity_names, identity);
    }
    Ok((response, verified.map(|verified| verified.identity.clone())))
}

/// Works out the original request from what a trusted proxy sent; see the module documentation.
fn original_request(
    own_method: &str,
    suffix: &str,
    headers: &HeaderMap,
    trusted: bool,
) -> Original {
    if !trusted {
        return Original {
            method: own_method.to_string(),
            path: Err("the peer is not a trusted proxy"),
        };
    }
    let method = [X_ORIGINAL_METHOD, X_FORWARDED_METHOD]
        .iter()
        .find_map(|name| headers.get(name)?.to_str().ok())
        .unwrap_or(own_method)
        .to_string();
    Original {
        method,
        path: original_path(suffix, headers),
    }
}

/// The one normalized path every source present agrees on.
fn original_path(suffix: &str, headers: &HeaderMap) -> Result<String, &'static str> {
    let mut agreed: Option<String> = None;
    let from_headers = [X_ORIGINAL_URI, X_ORIGINAL_URL, X_FORWARDED_URI]
        .into_iter()
        .flat_map(|name| headers.get_all(name).iter())
        .map(|value| {
            value
                .to_str()
                .map_err(|_| "an original URI header is not text")
        });
    let from_suffix = (!suffix.is_empty()).then_some(Ok(suffix));
    for candidate in from_headers.chain(from_suffix) {
        let normalized = normalize_original(candidate?)?;
        match &agreed {
            Some(seen) if *seen != normalized => {
                return Err("the original URI sources disagree");
            }
            Some(_) => {}
            None => agreed = Some(normalized),
        }
    }
    agreed.ok_or("no original URI was given")
}

/// The normalized path of a path-with-query (`/a/b?x=1`) or an absolute URL
/// (`https://host/a/b?x=1`).
fn normalize_original(value: &str) -> Result<String, &'static str> {
    let value = value.trim();
    // A path is not parsed as a URI: `//host/x` is a path here, as nginx's $request_uri means it.
    let path_and_query = if value.starts_with('/') {
        value
    } else {
        url_path(value)?
    };
    let raw_path = path_and_query.split(['?', '#']).next().unwrap_or_default();
    path::normalize(raw_path)
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| "the original path cannot be normalized")
}

/// The path-and-query of an `http(s)://host[:port]/...` URL. ingress-nginx builds X-Original-URL
/// from the client's Host header, which nginx lets carry `?` and `#`: with `Host: x?` the URL of
/// a request for `/api/secret` reads `https://x?/api/secret`, which a URL parser takes for the
/// root path. So the host must be a plain host, and the path is what follows its first `/`.
fn url_path(url: &str) -> Result<&str, &'static str> {
    let not_a_url = "the original URI is neither a path nor an http(s) URL";
    let (scheme, rest) = url.split_once("://").ok_or(not_a_url)?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(not_a_url);
    }
    let (authority, path_and_query) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if authority.is_empty() || !authority.chars().all(plain) {
        return Err("the original URL's host is not a plain host");
    }
    Ok(path_and_query)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::headers::tests::headers;

    fn judged(suffix: &str, pairs: &[(&str, &str)]) -> Result<String, &'static str> {
        original_request("GET", suffix, &headers(pairs), true).path
    }

    #[test]
    fn each_proxy_shape_gives_the_normalized_path() {
        assert_eq!(
            judged("", &[("x-original-uri", "/a/./b?x=1")]),
            Ok("/a/b".into())
        );
        assert_eq!(
            judged("", &[("x-original-url", "https://shop.example/a/%62?q")]),
            Ok("/a/b".into())
        );
        assert_eq!(
            judged("", &[("x-forwarded-uri", "/a//b#f")]),
            Ok("/a/b".into())
        );
        assert_eq!(judged("/a/b", &[]), Ok("/a/b".into()));
    }

    #[test]
    fn the_original_method_comes_from_the_proxy_headers_or_the_request() {
        let original = original_request("GET", "", &headers(&[("x-original-method", "PUT")]), true);
        assert_eq!(original.method, "PUT");
        let original =
            original_request("GET", "", &headers(&[("x-forwarded-method", "POST")]), true);
        assert_eq!(original.method, "POST");
        assert_eq!(
            original_request("DELETE", "/x", &HeaderMap::new(), true).method,
            "DELETE"
        );
    }

    #[test]
    fn disagreeing_or_unusable_sources_are_judged_protected() {
        let smuggled = [
            ("x-forwarded-uri", "/api/secret"),
            ("x-original-uri", "/public"),
        ];
        assert!(judged("", &smuggled).is_err());
        let twice = [("x-forwarded-uri", "/public"), ("x-forwarded-uri", "/api")];
        assert!(judged("", &twice).is_err());
        assert!(judged("/api", &[("x-forwarded-uri", "/public")]).is_err());
        assert!(judged("", &[("x-original-uri", "/a/%2f/b")]).is_err());
        assert!(judged("", &[("x-original-uri", "/../x")]).is_err());
        assert!(judged("", &[("x-original-uri", "public")]).is_err());
        assert!(judged("", &[("x-original-url", "ftp://h/public")]).is_err());
        assert!(judged("", &[]).is_err());
    }

    #[test]
    fn agreeing_sources_are_fine() {
        let both = [
            ("x-original-uri", "/public/x"),
            ("x-forwarded-uri", "/public/./x?y"),
        ];
        assert_eq!(judged("", &both), Ok("/public/x".into()));
    }

    #[test]
    fn untrusted_peers_are_judged_protected_whatever_they_say() {
        let pairs = headers(&[("x-forwarded-uri", "/public"), ("x-original-method", "GET")]);
        let original = original_request("POST", "/public", &pairs, false);
        assert!(original.path.is_err());
        assert_eq!(original.method, "POST");
    }

    /// Catches trusting a URL parser with ingress-nginx's `$scheme://$http_host$request_uri`: a
    /// client-chosen Host ending in `?` or `#` would turn any path into the root path.
    #[test]
    fn a_host_that_swallows_the_path_is_judged_protected() {
        for url in [
            "https://evil?/api/secret",
            "https://evil?x=/api/secret",
            "https://evil#/api/secret",
            "https://user@evil/public",
            "https:///public",
        ] {
            assert!(judged("", &[("x-original-url", url)]).is_err(), "{url}");
        }
        assert_eq!(
            judged("", &[("x-original-url", "http://shop.example:8443")]),
            Ok("/".into())
        );
        assert_eq!(
            judged("", &[("x-original-url", "HTTPS://[::1]:443/a?b")]),
            Ok("/a".into())
        );
    }
}
