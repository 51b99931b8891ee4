//! The mock as the platforms whose login takes a form: Baidu's `POST /oauth/jscode2sessionkey`
//! (`code`, `client_id`, `sk`; OAuth errors with HTTP 400: `invalid_client` for other
//! credentials, `invalid_grant` for `mock-invalid` and a reused code; 24-byte session_keys, the
//! published vector's for `samplekey` users) and Kuaishou's `POST /oauth2/mp/code2session`
//! (`app_id`, `app_secret`, `js_code`; `result` 1 on success, 100200101 for other credentials;
//! the mock answers 2 for a bad or reused code, a number Kuaishou does not document).

use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use subtle::ConstantTimeEq;

use super::{reply, KeyKind, Login, MockWeChat};
use crate::http::error::Body;

impl MockWeChat {
    /// Whether `appid` and `secret` are an app the mock serves (any, when it was given none).
    fn knows(&self, appid: &str, secret: &str) -> bool {
        self.inner.credentials.is_empty()
            || self.inner.credentials.iter().any(|(known, known_secret)| {
                known == appid && bool::from(known_secret.as_bytes().ct_eq(secret.as_bytes()))
            })
    }

    /// Answers Baidu's jscode2sessionkey.
    pub(super) fn baidu_code2session(&self, body: &[u8]) -> http::Response<Body> {
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

    /// Answers Kuaishou's code2session.
    pub(super) fn kuaishou_code2session(&self, body: &[u8]) -> http::Response<Body> {
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
        if code.is_empty() || code == "mock-invalid" {
            return json(StatusCode::OK, refused);
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
