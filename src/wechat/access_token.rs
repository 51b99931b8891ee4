//! Access tokens and the WeChat APIs behind one: `cgi-bin/stable_token` (the normal mode, which
//! hands every replica the same token instead of knocking the others out), QQ's `api/getToken`
//! (each fetch replaces the previous token: `shared/platforms.md` section 1), Baidu's (in
//! `baidu.rs`), `wxa/business/getuserphonenumber` and `wxa/checksession`. The access_token rides
//! in the URL: the same no-URL logging rules as code2session apply.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{api_url, WeChatClient};
use crate::config::{Platform, Secret, WeChatApp};
use crate::http::error::GatewayError;

/// A fetched access_token and its lifetime.
pub(crate) struct AccessToken {
    pub(crate) token: Secret,
    pub(crate) expires_in: u64,
}

/// What an API behind an access_token answered.
pub(crate) enum TokenAnswer<T> {
    /// The API's answer.
    Done(T),
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
pub(crate) const STALE_TOKEN: [i64; 3] = [40001, 40014, 42001];

impl WeChatClient {
    /// Fetches the app's access_token the way its platform hands them out.
    pub(crate) async fn access_token(&self, app: &WeChatApp) -> Result<AccessToken, GatewayError> {
        match app.platform {
            Platform::WeChat => self.stable_token(app).await,
            Platform::Qq => self.qq_token(app).await,
            Platform::Baidu => self.baidu_token(app).await,
            Platform::Douyin | Platform::Kuaishou | Platform::Alipay => {
                Err(GatewayError::PlatformNotSupported(
                    "the gateway keeps access_tokens for WeChat, QQ and Baidu apps only",
                ))
            }
        }
    }

    /// Fetches a WeChat app's access_token in normal (not forced) mode.
    async fn stable_token(&self, app: &WeChatApp) -> Result<AccessToken, GatewayError> {
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "appid": app.appid,
            "secret": app.secret.expose(),
            "force_refresh": false,
        });
        let url = api_url(&app.api_base, "/cgi-bin/stable_token");
        let request = || self.post_json(url.clone(), &body);
        self.call("stable_token", &app.api_base, request, |answer: Answer| {
            token_from("stable_token", answer, &[])
        })
        .await
    }

    /// Fetches a QQ app's access_token: `GET /api/getToken`. Every fetch replaces the app's
    /// previous token (both work for 5 minutes), which is why the fleet has one owner.
    async fn qq_token(&self, app: &WeChatApp) -> Result<AccessToken, GatewayError> {
        let mut url = api_url(&app.api_base, "/api/getToken");
        url.query_pairs_mut()
            .append_pair("grant_type", "client_credential")
            .append_pair("appid", &app.appid)
            .append_pair("secret", app.secret.expose());
        let request = || self.http.get(url.clone());
        // 40001: the AppSecret is wrong; 40002: grant_type; 40013: the AppID.
        self.call("qq_get_token", &app.api_base, request, |answer: Answer| {
            token_from("qq_get_token", answer, &[40001, 40002, 40013])
        })
        .await
    }

    /// Exchanges a getPhoneNumber button code for the user's phone number; the answer must carry
    /// the watermark of `app` (whose access_token this is).
    pub(crate) async fn phone_number(
        &self,
        access_token: &Secret,
        code: &str,
        app: &WeChatApp,
    ) -> Result<TokenAnswer<serde_json::Value>, GatewayError> {
        let appid = app.appid.as_str();
        let mut url = api_url(&app.api_base, "/wxa/business/getuserphonenumber");
        url.query_pairs_mut()
            .append_pair("access_token", access_token.expose());
        let body = serde_json::json!({ "code": code });
        let request = || self.post_json(url.clone(), &body);
        self.call("getuserphonenumber", &app.api_base, request, |answer: Answer| {
            match (answer.errcode, answer.phone_info) {
                (0, Some(info)) => match info["watermark"]["appid"].as_str() {
                    Some(owner) if owner == appid => Ok(TokenAnswer::Done(info)),
                    _ => {
                        tracing::warn!(%appid, "getuserphonenumber answered without this app's watermark");
                        Err(GatewayError::WeChatBadAnswer)
                    }
                },
                (0, None) => Err(GatewayError::WeChatBadAnswer),
                (code, _) if STALE_TOKEN.contains(&code) => Ok(TokenAnswer::StaleToken),
                (40029, _) => Err(GatewayError::InvalidPhoneCode),
                (45011, _) => Err(GatewayError::WeChatRateLimited),
                (code, _) => Err(refused("getuserphonenumber", code, &answer.errmsg)),
            }
        })
        .await
    }

    /// Asks checksession whether `session_key` is still the current one of the user `openid`:
    /// true when it is, false on 87009 (the signature made with it is refused).
    pub(crate) async fn check_session(
        &self,
        app: &WeChatApp,
        access_token: &Secret,
        (openid, session_key): (&str, &Secret),
    ) -> Result<TokenAnswer<bool>, GatewayError> {
        let mut url = api_url(&app.api_base, "/wxa/checksession");
        url.query_pairs_mut()
            .append_pair("access_token", access_token.expose())
            .append_pair("openid", openid)
            .append_pair("signature", &session_signature(session_key)?)
            .append_pair("sig_method", "hmac_sha256");
        let request = || self.http.get(url.clone());
        self.call(
            "checksession",
            &app.api_base,
            request,
            |answer: Answer| match answer.errcode {
                0 => Ok(TokenAnswer::Done(true)),
                87009 => Ok(TokenAnswer::Done(false)),
                code if STALE_TOKEN.contains(&code) => Ok(TokenAnswer::StaleToken),
                code => Err(refused("checksession", code, &answer.errmsg)),
            },
        )
        .await
    }

    fn post_json(&self, url: reqwest::Url, body: &serde_json::Value) -> reqwest::RequestBuilder {
        self.http
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
    }
}

/// checksession's `signature`: hex(HMAC-SHA256(key = the session_key string, message = "")).
fn session_signature(session_key: &Secret) -> Result<String, GatewayError> {
    let mac = Hmac::<Sha256>::new_from_slice(session_key.expose().as_bytes())
        .map_err(|_| GatewayError::Internal("HMAC refused a key"))?;
    let digest = mac.finalize().into_bytes();
    Ok(digest.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// The token of an access_token answer (WeChat's and QQ's share a shape), or its errcode mapped;
/// `operator_codes` are the platform's own codes for wrong credentials.
fn token_from(
    api: &str,
    answer: Answer,
    operator_codes: &[i64],
) -> Result<AccessToken, GatewayError> {
    match (answer.errcode, answer.access_token, answer.expires_in) {
        (0, Some(token), Some(expires_in)) if !token.is_empty() => Ok(AccessToken {
            token: Secret::new(token),
            expires_in,
        }),
        (0, _, _) => Err(GatewayError::WeChatBadAnswer),
        (code, _, _) if operator_codes.contains(&code) => {
            Err(super::config_rejected(api, code, &answer.errmsg))
        }
        (code, _, _) => Err(refused(api, code, &answer.errmsg)),
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
    fn the_session_signature_is_the_hmac_of_the_empty_string() {
        // Python: hmac.new(b"tiihtNczf5v6AKRyjwEUhQ==", b"", hashlib.sha256).hexdigest()
        assert_eq!(
            session_signature(&Secret::new("tiihtNczf5v6AKRyjwEUhQ==")).unwrap(),
            "7154f9f8b4b76b92f541cbf0e37d48840fa06e5e42da92a6f80168a1516a4735"
        );
    }

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
