//! Douyin's (ByteDance's) code2session, v2: `POST {api_base}/api/apps/v2/jscode2session` with JSON
//! `{"appid", "secret", "code", "anonymous_code"}`, answered in the envelope `{"err_no",
//! "err_tips", "log_id", "data": {"session_key", "openid", "anonymous_openid", "unionid"}}`
//! (`shared/platforms.md`, section 2). Success is decided on `err_no` alone. `log_id` is logged
//! for Douyin's support and never shown to users.

use serde::Deserialize;

use super::{api_url, Code2Session, WeChatClient};
use crate::config::{Secret, WeChatApp};
use crate::http::error::GatewayError;

/// The v2 envelope.
#[derive(Deserialize)]
struct Envelope {
    err_no: Option<i64>,
    #[serde(default)]
    err_tips: String,
    #[serde(default)]
    log_id: String,
    data: Option<Data>,
}

#[derive(Deserialize, Default)]
struct Data {
    #[serde(default)]
    openid: String,
    #[serde(default)]
    session_key: String,
    #[serde(default)]
    unionid: String,
}

impl WeChatClient {
    /// Exchanges a `tt.login()` code for the user's openid and session_key.
    pub(super) async fn douyin_code2session(
        &self,
        app: &WeChatApp,
        code: &str,
    ) -> Result<Code2Session, GatewayError> {
        let url = api_url(&app.api_base, "/api/apps/v2/jscode2session");
        let body = serde_json::json!({
            "appid": app.appid,
            "secret": app.secret.expose(),
            "code": code,
            "anonymous_code": "",
        });
        let request = || {
            self.http
                .post(url.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.to_string())
        };
        self.call("douyin_code2session", &app.api_base, request, interpret)
            .await
    }
}

/// The err_no table of `shared/platforms.md`: -1 busy; 40018 (code) and 40019 (anonymous code)
/// invalid, expired or used; 40014 (bad parameters), 40015 (appid), 40017 (secret) and any other
/// need an operator.
fn interpret(answer: Envelope) -> Result<Code2Session, GatewayError> {
    let Some(err_no) = answer.err_no else {
        tracing::warn!("a Douyin code2session answer has no err_no");
        return Err(GatewayError::WeChatBadAnswer);
    };
    let log_id = answer.log_id.as_str();
    match err_no {
        0 => {
            let data = answer.data.unwrap_or_default();
            if data.openid.is_empty() || data.session_key.is_empty() {
                tracing::warn!(
                    log_id,
                    "Douyin code2session success lacks openid or session_key"
                );
                return Err(GatewayError::WeChatBadAnswer);
            }
            Ok(Code2Session {
                openid: data.openid,
                session_key: Secret::new(data.session_key),
                unionid: Some(data.unionid).filter(|unionid| !unionid.is_empty()),
            })
        }
        -1 => Err(GatewayError::WeChatBusy),
        40018 | 40019 => {
            tracing::info!(err_no, log_id, err_tips = %answer.err_tips, "Douyin refused the login code");
            Err(GatewayError::WeChatInvalidCode)
        }
        code => {
            tracing::error!(err_no = code, log_id, err_tips = %answer.err_tips, "Douyin refused the gateway itself (appid, secret or a parameter); an operator must act");
            Err(GatewayError::WeChatConfigRejected(code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> Result<Code2Session, GatewayError> {
        interpret(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn the_envelope_decides_on_err_no() {
        let ok = answer(
            r#"{"err_no":0,"err_tips":"success","log_id":"1","data":{"session_key":"k","openid":"o","anonymous_openid":"","unionid":"u"}}"#,
        )
        .unwrap();
        assert_eq!(
            (ok.openid.as_str(), ok.unionid.as_deref()),
            ("o", Some("u"))
        );
        let no_union =
            answer(r#"{"err_no":0,"data":{"session_key":"k","openid":"o","unionid":""}}"#);
        assert_eq!(no_union.unwrap().unionid, None);
        let cases = [
            (
                r#"{"err_no":0,"data":{"openid":"o"}}"#,
                GatewayError::WeChatBadAnswer,
            ),
            (r#"{"err_tips":"x"}"#, GatewayError::WeChatBadAnswer),
            (
                r#"{"err_no":-1,"err_tips":"系统错误"}"#,
                GatewayError::WeChatBusy,
            ),
            (
                r#"{"err_no":40018,"err_tips":"bad code"}"#,
                GatewayError::WeChatInvalidCode,
            ),
            (
                r#"{"err_no":40019,"err_tips":"bad acode"}"#,
                GatewayError::WeChatInvalidCode,
            ),
            (
                r#"{"err_no":40015,"err_tips":"bad appid"}"#,
                GatewayError::WeChatConfigRejected(40015),
            ),
            (
                r#"{"err_no":40017,"err_tips":"bad secret","data":{"session_key":"","openid":""}}"#,
                GatewayError::WeChatConfigRejected(40017),
            ),
            (
                r#"{"err_no":40014,"err_tips":"bad params"}"#,
                GatewayError::WeChatConfigRejected(40014),
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(answer(json).err(), Some(expected), "{json}");
        }
    }
}
