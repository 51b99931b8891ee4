//! The mock as Douyin's code2session v2 (`POST /api/apps/v2/jscode2session`, JSON in, the
//! `err_no` envelope out, `application/json`): single-use codes (40018 on reuse), 40015 / 40017
//! for another appid or secret, and the magic codes `mock-invalid` (40018), `mock-busy` (-1),
//! `mock-garbage` (not JSON) and `mock-slow` (10 s). Users as for WeChat: `alice.1` is
//! `oMock_alice`.

use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use subtle::ConstantTimeEq;

use super::{reply, Login, MockWeChat, SLOW_ANSWER};
use crate::http::error::Body;

impl MockWeChat {
    /// Answers a Douyin code2session body `{"appid", "secret", "code", "anonymous_code"}`.
    pub(super) async fn douyin_code2session(&self, body: &[u8]) -> http::Response<Body> {
        self.inner
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else {
            return envelope(40014, "bad params", None);
        };
        let field = |name: &str| request[name].as_str().unwrap_or_default().to_string();
        if !self.inner.credentials.is_empty() {
            let known = self
                .inner
                .credentials
                .iter()
                .find(|(appid, _)| *appid == field("appid"));
            match known {
                None => return envelope(40015, "bad appid", None),
                Some((_, secret))
                    if !bool::from(secret.as_bytes().ct_eq(field("secret").as_bytes())) =>
                {
                    return envelope(40017, "bad secret", None)
                }
                Some(_) => {}
            }
        }
        let code = field("code");
        match code.as_str() {
            "" if !field("anonymous_code").is_empty() => return envelope(40019, "bad acode", None),
            "" => return envelope(40014, "bad params", None),
            "mock-invalid" => return envelope(40018, "bad code", None),
            "mock-busy" => return envelope(-1, "system error", None),
            "mock-garbage" => return reply(StatusCode::OK, super::GARBAGE.into()),
            "mock-slow" => tokio::time::sleep(SLOW_ANSWER).await,
            _ => {}
        }
        match self.log_in(&code) {
            Login::Reused => envelope(40018, "bad code", None),
            Login::Busy => envelope(-1, "system error", None),
            Login::User(user) => {
                let data = serde_json::json!({
                    "session_key": user.session_key,
                    "openid": user.openid,
                    "anonymous_openid": "",
                    "unionid": user.unionid.unwrap_or_default(),
                });
                envelope(0, "success", Some(data))
            }
        }
    }
}

/// Douyin's envelope; an error carries `data` with empty values, as the documentation shows.
fn envelope(err_no: i64, err_tips: &str, data: Option<serde_json::Value>) -> http::Response<Body> {
    let data = data.unwrap_or_else(|| serde_json::json!({ "session_key": "", "openid": "" }));
    let body = serde_json::json!({
        "err_no": err_no, "err_tips": err_tips, "log_id": "mock-log-id", "data": data,
    });
    let mut response = reply(StatusCode::OK, body.to_string());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
