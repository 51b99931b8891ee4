//! The mock as the platforms whose login takes a form: Baidu's `POST /oauth/jscode2sessionkey`
//! (`code`, `client_id`, `sk`; OAuth errors with HTTP 400: `invalid_client` for other
//! credentials, `invalid_grant` for `mock-invalid` and a reused code; 24-byte session_keys, the
//! published vector's for `samplekey` users) and Kuaishou's `POST /oauth2/mp/code2session`
//! (`app_id`, `app_secret`, `js_code`; `result` 1 on success, 100200101 for other credentials;
//! the mock answers 2 for a bad or reused code, a number Kuaishou does not document). Both take
//! `mock-garbage` (not JSON) and `mock-slow` (10 seconds) as WeChat's mock does. Baidu's
//! second host too: `POST /oauth/2.0/token` (client credentials; the same token until it expires)
//! and `POST /rest/2.0/smartapp/getunionid` (`uMock_NAME` for `oMock_NAME`; `errno` 1 for a token
//! that is not current and for users whose name starts with `nounion`).

use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use subtle::ConstantTimeEq;

use super::{reply, KeyKind, Login, MockWeChat};
use crate::http::error::Body;

impl MockWeChat {
    /// Whether `appid` and `secret` are an app the mock serves (any, when it was given none).
    pub(super) fn knows(&self, appid: &str, secret: &str) -> bool {
        self.inner.credentials.is_empty()
            || self.inner.credentials.iter().any(|(known, known_secret)| {
                known == appid && bool::from(known_secret.as_bytes().ct_eq(secret.as_bytes()))
            })
    }

    /// Answers Baidu's jscode2sessionkey.
    pub(super) async fn baidu_code2session(&self, body: &[u8]) -> http::Response<Body> {
        self.inner
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let field = |name: &str| form_field(body, name);
        if !self.knows(&field("client_id"), &field("sk")) {
            return oauth_error("invalid_client", "unknown client id");
        }
        let code = field("code");
        match code.as_str() {
            "" => return oauth_error("invalid_request", "missing code"),
            "mock-invalid" => return oauth_error("invalid_grant", "Invalid authorization code"),
            "mock-garbage" => return reply(StatusCode::OK, super::GARBAGE.into()),
            "mock-slow" => tokio::time::sleep(super::SLOW_ANSWER).await,
            _ => {}
        }
        match self.log_in_with(&code, KeyKind::Aes192) {
            Login::User(user) => json(
                StatusCode::OK,
                serde_json::json!({ "openid": user.openid, "session_key": user.session_key }),
            ),
            Login::Reused => oauth_error("invalid_grant", "Authorization Code used"),
            Login::Busy => json(StatusCode::INTERNAL_SERVER_ERROR, serde_json::json!({})),
        }
    }

    /// Answers Baidu's access_token request.
    pub(super) fn baidu_token(&self, body: &[u8]) -> http::Response<Body> {
        self.inner
            .baidu_token_calls
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let field = |name: &str| form_field(body, name);
        if field("grant_type") != "client_credentials" {
            return oauth_error(
                "unsupported_grant_type",
                "grant_type must be client_credentials",
            );
        }
        let appid = field("client_id");
        if !self.knows(&appid, &field("client_secret")) {
            return oauth_error("invalid_client", "unknown client id");
        }
        let Some((token, expires_in)) = self.current_token(&appid) else {
            return json(StatusCode::INTERNAL_SERVER_ERROR, serde_json::json!({}));
        };
        json(
            StatusCode::OK,
            serde_json::json!({
                "access_token": token, "expires_in": expires_in, "refresh_token": "mock-refresh",
                "scope": field("scope"), "session_key": "", "session_secret": "",
            }),
        )
    }

    /// Answers Baidu's getunionid for `openid` (form body), with the access_token in the query.
    pub(super) fn baidu_unionid(&self, query: &str, body: &[u8]) -> http::Response<Body> {
        let failed = |errmsg: &str| {
            json(
                StatusCode::OK,
                serde_json::json!({ "errno": 1, "errmsg": errmsg, "request_id": "mock", "timestamp": 0 }),
            )
        };
        if self.app_of_token(query).is_err() {
            return failed("invalid access_token");
        }
        let openid = form_field(body, "openid");
        let user = openid.strip_prefix("oMock_").unwrap_or_default();
        if user.is_empty() || user.starts_with("nounion") {
            return failed("no unionid for this openid");
        }
        json(
            StatusCode::OK,
            serde_json::json!({
                "data": { "unionid": format!("uMock_{user}") }, "errmsg": "succ", "errno": 0,
                "request_id": "mock", "timestamp": 1_563_886_782,
            }),
        )
    }

    /// Answers Kuaishou's code2session.
    pub(super) async fn kuaishou_code2session(&self, body: &[u8]) -> http::Response<Body> {
        self.inner
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let field = |name: &str| form_field(body, name);
        if !self.knows(&field("app_id"), &field("app_secret")) {
            return json(
                StatusCode::OK,
                serde_json::json!({ "result": 100_200_101, "error_msg": "验证出错" }),
            );
        }
        let code = field("js_code");
        let refused = serde_json::json!({ "result": 2, "error_msg": "js_code invalid" });
        match code.as_str() {
            "" | "mock-invalid" => return json(StatusCode::OK, refused),
            "mock-garbage" => return reply(StatusCode::OK, super::GARBAGE.into()),
            "mock-slow" => tokio::time::sleep(super::SLOW_ANSWER).await,
            _ => {}
        }
        match self.log_in_with(&code, KeyKind::Aes128) {
            Login::User(user) => json(
                StatusCode::OK,
                serde_json::json!({ "result": 1, "session_key": user.session_key, "open_id": user.openid }),
            ),
            Login::Reused | Login::Busy => json(StatusCode::OK, refused),
        }
    }
}

fn form_field(body: &[u8], name: &str) -> String {
    form_urlencoded::parse(body)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

/// Baidu's OAuth error: HTTP 400, JSON.
fn oauth_error(error: &str, description: &str) -> http::Response<Body> {
    let body = serde_json::json!({ "error": error, "error_description": description });
    json(StatusCode::BAD_REQUEST, body)
}

fn json(status: StatusCode, body: serde_json::Value) -> http::Response<Body> {
    let mut response = reply(status, body.to_string());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
