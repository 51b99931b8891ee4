//! Request heads refused before anything else looks at them: framing an upstream could read
//! differently from the gateway, and a host that says two things.

use http::header::{HeaderMap, HeaderValue, HOST, TRANSFER_ENCODING};
use http::{Uri, Version};

use crate::http::error::GatewayError;

/// Refuses (400) a request with `chunked` applied more than once (two `Transfer-Encoding:
/// chunked` headers, or `chunked, chunked`): hyper decodes it once, an upstream might twice. Over
/// HTTP/2, also one whose `host` header names another authority than `:authority` (RFC 9113
/// 8.3.1: malformed).
pub(crate) fn check(version: Version, uri: &Uri, headers: &HeaderMap) -> Result<(), GatewayError> {
    let mut encodings = headers.get_all(TRANSFER_ENCODING).iter();
    if let Some(first) = encodings.next() {
        let chunked = std::iter::once(first)
            .chain(encodings)
            .flat_map(|value| value.as_bytes().split(|byte| *byte == b','))
            .filter(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"))
            .count();
        if chunked > 1 {
            return Err(GatewayError::InvalidRequest(
                "the request applies chunked more than once",
            ));
        }
    }
    if version == Version::HTTP_2 {
        if let (Some(authority), Some(host)) = (uri.authority(), headers.get(HOST)) {
            if !host
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes())
            {
                return Err(GatewayError::InvalidRequest(
                    "the host header disagrees with :authority",
                ));
            }
        }
    }
    Ok(())
}

/// The host the client addressed: the request target's authority when it has one (HTTP/2's
/// `:authority`, an HTTP/1.1 absolute-form target, which wins over `Host` per RFC 9112 3.2.2),
/// without any user information; else the `Host` header.
pub(crate) fn client_host(uri: &Uri, headers: &HeaderMap) -> Option<HeaderValue> {
    match uri.authority() {
        Some(authority) => {
            let text = authority.as_str();
            let host = text.rsplit_once('@').map_or(text, |(_, host)| host);
            HeaderValue::from_str(host).ok()
        }
        None => headers.get(HOST).cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn chunked_applied_twice_is_refused() {
        let origin = Uri::from_static("/x");
        let once = headers(&[("transfer-encoding", "chunked")]);
        assert!(check(Version::HTTP_11, &origin, &once).is_ok());
        for twice in [
            headers(&[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ]),
            headers(&[("transfer-encoding", "chunked, CHUNKED")]),
            headers(&[
                ("transfer-encoding", "gzip, chunked"),
                ("transfer-encoding", " chunked"),
            ]),
        ] {
            assert!(
                check(Version::HTTP_11, &origin, &twice).is_err(),
                "{twice:?}"
            );
        }
    }

    #[test]
    fn an_http2_host_must_match_the_authority() {
        let uri = Uri::from_static("https://api.example/x");
        let same = headers(&[("host", "API.example")]);
        assert!(check(Version::HTTP_2, &uri, &same).is_ok());
        let other = headers(&[("host", "evil.example")]);
        assert!(check(Version::HTTP_2, &uri, &other).is_err());
        assert!(
            check(Version::HTTP_11, &uri, &other).is_ok(),
            "1.1: the target wins"
        );
    }

    #[test]
    fn the_target_authority_wins_over_host() {
        let host = headers(&[("host", "evil.example")]);
        let absolute = Uri::from_static("http://user:pw@api.example:8080/x");
        assert_eq!(client_host(&absolute, &host).unwrap(), "api.example:8080");
        let origin = Uri::from_static("/x");
        assert_eq!(client_host(&origin, &host).unwrap(), "evil.example");
        assert!(client_host(&origin, &HeaderMap::new()).is_none());
    }
}
