//! A backend's call to any WeChat server API, passed on with the app's access_token (the
//! `[wechat_api]` listener). The body and the answer pass through unchanged; a JSON answer is
//! read first, so that the caller can tell a stale token (40001/40014/42001) and retry, and so
//! that an answer carrying the access_token itself is never passed on. Binary answers (images,
//! media) stream through.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_DISPOSITION, CONTENT_TYPE};
use http::{HeaderMap, Method, Response};
use http_body_util::BodyExt;

use super::{api_url, transport_error, WeChatClient};
use crate::config::Secret;
use crate::http::body::Prefixed;
use crate::http::error::{full_body, Body, BoxError, GatewayError};

/// A JSON answer larger than this is passed on unread (no stale-token retry for it).
const MAX_INSPECTED_ANSWER: usize = 4 * 1024 * 1024;

/// What a backend asked for, minus the access_token the gateway adds.
pub(crate) struct ApiRequest<'a> {
    pub(crate) method: &'a Method,
    /// The app's API base.
    pub(crate) api_base: &'a reqwest::Url,
    /// The WeChat path, e.g. `wxa/msg_sec_check` (no leading `/`).
    pub(crate) path: &'a str,
    /// The caller's query, as sent (any `access_token` in it is replaced).
    pub(crate) query: &'a str,
    /// The caller's Content-Type, passed on.
    pub(crate) content_type: Option<HeaderValue>,
    /// How long the whole exchange may take.
    pub(crate) timeout: Duration,
}

/// WeChat's answer, and the errcode it carried when it was JSON that was read.
pub(crate) struct ApiAnswer {
    pub(crate) response: Response<Body>,
    pub(crate) errcode: Option<i64>,
}

/// The errcode of a JSON answer; 0 when it has none (a success).
#[derive(serde::Deserialize)]
struct Errcode {
    #[serde(default)]
    errcode: i64,
}

impl WeChatClient {
    /// Sends `request` with `body` and `access_token` to WeChat and answers what it said.
    pub(crate) async fn forward(
        &self,
        request: &ApiRequest<'_>,
        body: reqwest::Body,
        access_token: &Secret,
    ) -> Result<ApiAnswer, GatewayError> {
        let mut url = api_url(request.api_base, &format!("/{}", request.path));
        url.set_query(Some(&with_access_token(request.query, access_token)));
        let mut outgoing = self
            .http
            .request(request.method.clone(), url)
            .timeout(request.timeout)
            .body(body);
        if let Some(content_type) = &request.content_type {
            outgoing = outgoing.header(CONTENT_TYPE, content_type.clone());
        }
        let started = Instant::now();
        let mut answer = outgoing
            .send()
            .await
            .map_err(|error| transport_error(error, "call").error)?;
        self.metrics.observe_wechat("api_proxy", started.elapsed());
        let mut response = Response::builder().status(answer.status());
        for name in [CONTENT_TYPE, CONTENT_DISPOSITION] {
            if let Some(value) = answer.headers().get(&name) {
                response = response.header(name, value.clone());
            }
        }
        let response = response
            .body(())
            .map_err(|_| GatewayError::WeChatBadAnswer)?;
        if !is_read_first(answer.headers()) {
            let rest = Response::from(answer).into_body();
            return Ok(ApiAnswer {
                response: response.map(|()| rest.map_err(BoxError::from).boxed_unsync()),
                errcode: None,
            });
        }
        let mut read = Vec::new();
        while let Some(chunk) = answer
            .chunk()
            .await
            .map_err(|error| transport_error(error, "read the answer of").error)?
        {
            read.extend_from_slice(&chunk);
            if read.len() > MAX_INSPECTED_ANSWER {
                let rest = Response::from(answer).into_body();
                let body = Prefixed::new(Bytes::from(read), rest);
                return Ok(ApiAnswer {
                    response: response.map(|()| body.boxed_unsync()),
                    errcode: None,
                });
            }
        }
        if contains(&read, access_token.expose().as_bytes()) {
            tracing::error!(
                path = request.path,
                "a WeChat answer carried the access_token; refused"
            );
            return Err(GatewayError::WeChatBadAnswer);
        }
        let errcode = serde_json::from_slice::<Errcode>(&read)
            .ok()
            .map(|answer| answer.errcode);
        Ok(ApiAnswer {
            response: response.map(|()| full_body(read)),
            errcode,
        })
    }
}

/// Whether the answer is read before it is passed on: JSON and text (WeChat labels its JSON
/// `text/plain`), not images, media or other binary content.
fn is_read_first(headers: &HeaderMap) -> bool {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    content_type.is_empty()
        || content_type.starts_with("application/json")
        || content_type.starts_with("text/")
}

/// The caller's query without any `access_token` parameter, then the gateway's.
pub(crate) fn with_access_token(query: &str, access_token: &Secret) -> String {
    let mut kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            let decoded = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
            decoded.replace('+', " ") != "access_token"
        })
        .collect();
    let ours = form_urlencoded::Serializer::new(String::new())
        .append_pair("access_token", access_token.expose())
        .finish();
    kept.push(&ours);
    kept.join("&")
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callers_access_token_is_replaced_and_the_rest_kept_as_sent() {
        let ours = Secret::new("OURS");
        assert_eq!(
            with_access_token("a=1&access_token=theirs&b=%20x", &ours),
            "a=1&b=%20x&access_token=OURS"
        );
        assert_eq!(
            with_access_token("access%5Ftoken=x&ACCESS_TOKEN=y", &ours),
            "ACCESS_TOKEN=y&access_token=OURS"
        );
        assert_eq!(with_access_token("", &ours), "access_token=OURS");
    }

    #[test]
    fn json_and_text_are_read_first_binary_is_not() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            is_read_first(&headers)
        };
        assert!(with("application/json; charset=utf-8") && with("text/plain"));
        assert!(!with("image/jpeg") && !with("application/octet-stream"));
        assert!(is_read_first(&HeaderMap::new()));
    }
}
