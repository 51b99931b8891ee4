//! The `[wechat_api]` listener's one endpoint: `GET|POST /<APP>/<wechat path>?<query>` passed on
//! to WeChat with the app's access_token, for backends only (loopback and `wechat_api.allow`).
//! The token is the gateway's, shared with its logins and phone numbers, fetched once for every
//! caller (and for the fleet through the session store); when WeChat calls it stale, it is
//! fetched again once and the call sent again, if its body was kept
//! (`wechat_api.max_retry_body_bytes`). APIs that hand out a token are refused.
//!
//! QQ and Baidu apps are served the same way, on their platform's server API host (QQ's
//! `api.q.qq.com`, Baidu's `openapi_base`) with their own token; neither documents which answer
//! means a stale token, so their calls are not sent again.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::config::{Platform, WeChatApp};
use crate::http::body::Prefixed;
use crate::http::error::{Body, GatewayError};
use crate::state::AppState;
use crate::wechat::{ApiRequest, STALE_TOKEN};

/// Answers one backend call from `peer`.
pub(crate) async fn handle(
    state: &AppState,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let api = &state.config.wechat_api;
    let ip = peer.ip().to_canonical();
    if !ip.is_loopback() && !api.allow.contains(ip) {
        tracing::warn!(%ip, "a WeChat API call from outside loopback and wechat_api.allow; refused");
        return Err(GatewayError::Forbidden(
            "this listener serves backends only (loopback and wechat_api.allow)",
        ));
    }
    let uri = request.uri().clone();
    let normalized = crate::http::path::normalize(uri.path())?;
    let (app_name, path) = normalized[1..]
        .split_once('/')
        .unwrap_or((&normalized[1..], ""));
    let app = state
        .config
        .wechat
        .app_named(app_name)
        .ok_or(GatewayError::UnknownApp)?;
    if !matches!(
        app.platform,
        Platform::WeChat | Platform::Qq | Platform::Baidu
    ) {
        return Err(GatewayError::PlatformNotSupported(
            "this listener serves WeChat, QQ and Baidu apps, whose access_tokens the gateway keeps",
        ));
    }
    if path.is_empty() {
        return Err(GatewayError::NotFound);
    }
    if hands_out_a_token(path) {
        return Err(GatewayError::Forbidden(
            "this API hands out an access_token; the gateway owns the token and adds it to every call made here",
        ));
    }
    let method = request.method().clone();
    if method != Method::GET && method != Method::POST {
        return Err(GatewayError::MethodNotAllowed { allow: "GET, POST" });
    }
    let call = ApiRequest {
        api_base: app.server_api_base(),
        method: &method,
        path,
        query: uri.query().unwrap_or_default(),
        content_type: request.headers().get(http::header::CONTENT_TYPE).cloned(),
        timeout: api.timeout,
    };
    let body = read_body(state, request).await?;
    send(state, app, &call, body).await
}

/// `cgi-bin/token`, `cgi-bin/stable_token`, QQ's `api/getToken`, Baidu's `oauth/2.0/token`, and
/// any API whose name ends in `token`: each would hand a token to the caller.
fn hands_out_a_token(path: &str) -> bool {
    let last = path
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    last.ends_with("token")
}

/// A request body as it goes to WeChat: kept whole (it can be sent twice), or streamed once.
enum Outgoing {
    Kept(Bytes),
    Streamed(Prefixed<Limited<Incoming>>),
}

/// Reads up to `wechat_api.max_retry_body_bytes` of the body; a larger one streams on, bounded
/// by `wechat_api.max_body_bytes` (413 when its Content-Length says more at once).
async fn read_body(state: &AppState, request: Request<Incoming>) -> Result<Outgoing, GatewayError> {
    let api = &state.config.wechat_api;
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > api.max_body_bytes) {
        return Err(GatewayError::PayloadTooLarge {
            limit: api.max_body_bytes,
        });
    }
    let limit = usize::try_from(api.max_body_bytes).unwrap_or(usize::MAX);
    let mut body = Limited::new(request.into_body(), limit);
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                GatewayError::PayloadTooLarge {
                    limit: api.max_body_bytes,
                }
            } else {
                GatewayError::InvalidRequestBody
            }
        })?;
        if let Ok(data) = frame.into_data() {
            kept.extend_from_slice(&data);
        }
        if kept.len() > api.max_retry_body_bytes {
            return Ok(Outgoing::Streamed(Prefixed::new(Bytes::from(kept), body)));
        }
    }
    Ok(Outgoing::Kept(Bytes::from(kept)))
}

/// Sends the call with the app's token; sends a kept body once more with a fresh token when
/// WeChat calls the first one stale.
async fn send(
    state: &AppState,
    app: &WeChatApp,
    call: &ApiRequest<'_>,
    body: Outgoing,
) -> Result<Response<Body>, GatewayError> {
    let sources = state.access_token_sources();
    let token = state.access_tokens.get(sources, app).await?;
    let (first, kept) = match body {
        Outgoing::Kept(bytes) => (reqwest::Body::from(bytes.clone()), Some(bytes)),
        Outgoing::Streamed(stream) => (reqwest::Body::wrap(stream), None),
    };
    let answer = state.wechat.forward(call, first, &token).await;
    let answer = count(state, app, call, answer)?;
    let stale = app.platform == Platform::WeChat
        && answer
            .errcode
            .is_some_and(|code| STALE_TOKEN.contains(&code));
    let Some(kept) = kept.filter(|_| stale) else {
        return Ok(answer.response);
    };
    tracing::info!(appid = %app.appid, "access_token refused as stale; fetching a new one");
    state.metrics.count_wechat_api_retry(&app.name, call.path);
    state.access_tokens.invalidate(sources, app, &token).await;
    let token = state.access_tokens.get(sources, app).await?;
    let answer = state
        .wechat
        .forward(call, reqwest::Body::from(kept), &token)
        .await;
    Ok(count(state, app, call, answer)?.response)
}

/// Counts an answer (or its failure) in the `[wechat_api]` metrics.
fn count<T>(
    state: &AppState,
    app: &WeChatApp,
    call: &ApiRequest<'_>,
    answer: Result<crate::wechat::ApiAnswer, T>,
) -> Result<crate::wechat::ApiAnswer, T> {
    let errcode = answer.as_ref().ok().and_then(|answer| answer.errcode);
    state
        .metrics
        .count_wechat_api_call(&app.name, call.path, errcode);
    answer
}

#[cfg(test)]
mod tests {
    use super::hands_out_a_token;

    #[test]
    fn token_handing_apis_are_recognized() {
        for path in [
            "cgi-bin/token",
            "cgi-bin/stable_token",
            "cgi-bin/component/api_component_token",
            "sns/oauth2/access_token",
            "CGI-BIN/TOKEN",
            "api/getToken",
            "oauth/2.0/token",
        ] {
            assert!(hands_out_a_token(path), "{path}");
        }
        for path in [
            "wxa/msg_sec_check",
            "cgi-bin/message/subscribe/send",
            "cgi-bin/ticket/getticket",
            "wxa/getwxacodeunlimit",
        ] {
            assert!(!hands_out_a_token(path), "{path}");
        }
    }
}
