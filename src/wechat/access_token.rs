//! The WeChat APIs behind an access_token: `cgi-bin/stable_token` (the normal mode, which hands
//! every replica the same token instead of knocking the others out) and
//! `wxa/business/getuserphonenumber`. The access_token rides in the URL: the same no-URL logging
//! rules as code2session apply.

use serde::Deserialize;

use super::{api_url, WeChatClient};
use crate::config::{Secret, WeChatApp};
use crate::http::error::GatewayError;

/// A fetched access_token and its lifetime.
pub(crate) struct AccessToken {
    pub(crate) token: Secret,
    pub(crate) expires_in: u64,
}

/// What getuserphonenumber answered.
pub(crate) enum PhoneAnswer {
    /// `phone_info`, as WeChat gave it.
    Info(serde_json::Value),
    /// 40001 / 40014 / 42001: the access_token is not (or no longer) valid.
    StaleToken,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    access_token: Option<String>,
    expires_in: Option<u64>,
    phone_info: Option<serde_json::Value>,
}

/// errcodes meaning the access_token itself is refused.
const STALE_TOKEN: [i64; 3] = [40001, 40014, 42001];

impl WeChatClient {
    /// Fetches the app's access_token in normal (not forced) mode.
    pub(crate) async fn stable_token(&self, app: &WeChatApp) -> Result<AccessToken, GatewayError> {
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "appid": app.appid,
            "secret": app.secret.expose(),
            "force_refresh": false,
        });
        let url = api_url(&self.api_base, "/cgi-bin/stable_token");
        let request = || self.post_json(url.clone(), &body);
        self.call("stable_token", request, |answer: Answer| {
            match (answer.errcode, answer.access_token, answer.expires_in) {
                (0, Some(token), Some(expires_in)) if !token.is_empty() => Ok(AccessToken {
                    token: Secret::new(token),
                    expires_in,
                }),
                (0, _, _) => Err(GatewayError::WeChatBadAnswer),
                (code, _, _) => Err(refused("stable_token", code, &answer.errmsg)),
            }
        })
        .await
    }

    /// Exchanges a getPhoneNumber button code for the user's phone number; the answer must carry
    /// the watermark of the app `appid` (whose access_token this is).
    pub(crate) async fn phone_number(
        &self,
        access_token: &Secret,
        code: &str,
        appid: &str,
    ) -> Result<PhoneAnswer, GatewayError> {
        let mut url = api_url(&self.api_base, "/wxa/business/getuserphonenumber");
        url.query_pairs_mut()
            .append_pair("access_token", access_token.expose());
        let body = serde_json::json!({ "code": code });
        let request = || self.post_json(url.clone(), &body);
        self.call("getuserphonenumber", request, |answer: Answer| {
            match (answer.errcode, answer.phone_info) {
                (0, Some(info)) => match info["watermark"]["appid"].as_str() {
                    Some(owner) if owner == appid => Ok(PhoneAnswer::Info(info)),
                    _ => {
                        tracing::warn!(%appid, "getuserphonenumber answered without this app's watermark");
                        Err(GatewayError::WeChatBadAnswer)
                    }
                },
                (0, None) => Err(GatewayError::WeChatBadAnswer),
                (code, _) if STALE_TOKEN.contains(&code) => Ok(PhoneAnswer::StaleToken),
                (40029, _) => Err(GatewayError::InvalidPhoneCode),
                (45011, _) => Err(GatewayError::WeChatRateLimited),
                (code, _) => Err(refused("getuserphonenumber", code, &answer.errmsg)),
            }
        })
        .await
    }

    fn post_json(&self, url: reqwest::Url, body: &serde_json::Value) -> reqwest::RequestBuilder {
        self.http
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
    }
}

/// Maps an errcode of the access_token APIs.
fn refused(api: &str, code: i64, errmsg: &str) -> GatewayError {
    match code {
        -1 => GatewayError::WeChatBusy,
        code if super::needs_an_operator(code) => super::config_rejected(api, code, errmsg),
        code => {
            tracing::warn!(errcode = code, %errmsg, api, "WeChat refused the call");
            GatewayError::WeChatOther(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes_that_need_an_operator_are_config_rejections() {
        for code in [
            40013, 40125, 40164, 41002, 41004, 45009, 89501, 89503, 89506, 89507,
        ] {
            assert_eq!(
                refused("getuserphonenumber", code, "x"),
                GatewayError::WeChatConfigRejected(code)
            );
        }
        assert_eq!(refused("stable_token", -1, "x"), GatewayError::WeChatBusy);
        assert_eq!(
            refused("stable_token", 12345, "x"),
            GatewayError::WeChatOther(12345)
        );
    }
}
