//! Kuaishou's code2session: `POST {api_base}/oauth2/mp/code2session`, form-encoded `app_id`,
//! `app_secret`, `js_code`, answered `{"result": 1, "session_key", "open_id"}` on success and
//! `result` != 1 with `error_msg` otherwise (`shared/platforms.md`, section 5, as the client
//! libraries use it: Kuaishou's own page was not available). `open_id` is per developer, not per
//! app; no union id is documented.

use serde::Deserialize;

use super::{api_url, Code2Session, WeChatClient};
use crate::config::{Secret, WeChatApp};
use crate::http::error::GatewayError;

#[derive(Deserialize)]
struct Answer {
    result: Option<i64>,
    #[serde(default)]
    error_msg: String,
    #[serde(default)]
    open_id: String,
    #[serde(default)]
    session_key: String,
}

impl WeChatClient {
    /// Exchanges a `ks.login()` code for the user's open_id and session_key.
    pub(super) async fn kuaishou_code2session(
        &self,
        app: &WeChatApp,
        code: &str,
    ) -> Result<Code2Session, GatewayError> {
        let url = api_url(&app.api_base, "/oauth2/mp/code2session");
        let pairs = [
            ("app_id", app.appid.as_str()),
            ("app_secret", app.secret.expose()),
            ("js_code", code),
        ];
        let request = || self.post_form(&url, &pairs);
        self.call("kuaishou_code2session", &app.api_base, request, interpret)
            .await
    }
}

/// 100200100 (bad parameters) and 100200101 (app_id or app_secret wrong) need an operator; any
/// other failure is taken as a bad code, which a new `ks.login()` cures (no busy or rate-limit
/// result is documented).
fn interpret(answer: Answer) -> Result<Code2Session, GatewayError> {
    match answer.result {
        Some(1) if !answer.open_id.is_empty() && !answer.session_key.is_empty() => {
            Ok(Code2Session {
                openid: answer.open_id,
                session_key: Secret::new(answer.session_key),
                unionid: None,
            })
        }
        Some(1) | None => {
            tracing::warn!("a Kuaishou code2session answer lacks result, open_id or session_key");
            Err(GatewayError::WeChatBadAnswer)
        }
        Some(code @ (100_200_100 | 100_200_101)) => {
            tracing::error!(result = code, error_msg = %answer.error_msg, "Kuaishou refused the gateway itself (app_id, app_secret or a parameter); an operator must act");
            Err(GatewayError::WeChatConfigRejected(code))
        }
        Some(code) => {
            tracing::info!(result = code, error_msg = %answer.error_msg, "Kuaishou refused the login code");
            Err(GatewayError::WeChatInvalidCode)
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
    fn result_one_is_success_and_the_rest_is_classed() {
        let ok = answer(r#"{"result":1,"session_key":"k","open_id":"f1"}"#).unwrap();
        assert_eq!((ok.openid.as_str(), ok.unionid), ("f1", None));
        let cases = [
            (
                r#"{"result":1,"open_id":"f1"}"#,
                GatewayError::WeChatBadAnswer,
            ),
            (r#"{"error_msg":"x"}"#, GatewayError::WeChatBadAnswer),
            (
                r#"{"result":100200101,"error_msg":"验证出错"}"#,
                GatewayError::WeChatConfigRejected(100_200_101),
            ),
            (
                r#"{"result":100200100,"error_msg":"参数有误"}"#,
                GatewayError::WeChatConfigRejected(100_200_100),
            ),
            (
                r#"{"result":2,"error_msg":"code invalid"}"#,
                GatewayError::WeChatInvalidCode,
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(answer(json).err(), Some(expected), "{json}");
        }
    }
}
