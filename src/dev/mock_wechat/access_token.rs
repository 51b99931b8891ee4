//! The mock's access_token APIs: `POST /cgi-bin/stable_token` (an app gets the same token on
//! every call until it is rotated, as WeChat's normal mode does; each app its own) and
//! `POST /wxa/business/getuserphonenumber` (40001 for any token but an app's current one, so a
//! rotated token shows the re-fetch path; the watermark names the app the token is for).

use std::sync::atomic::Ordering;

use http::StatusCode;

use super::{error, reply, MockWeChat};
use crate::http::error::Body;

/// The phone number the mock answers for every valid code.
pub const MOCK_PHONE: &str = "13800138000";

impl MockWeChat {
    /// How many stable_token calls it has answered.
    pub fn stable_token_calls(&self) -> usize {
        self.inner.stable_token_calls.load(Ordering::SeqCst)
    }

    /// How many getuserphonenumber calls it has answered.
    pub fn phone_calls(&self) -> usize {
        self.inner.phone_calls.load(Ordering::SeqCst)
    }

    /// Makes the current access_token invalid (as a force_refresh elsewhere would): calls with it
    /// get 40001, and the next stable_token call hands out a new one.
    pub fn rotate_access_token(&self) {
        if let Ok(mut current) = self.inner.access_tokens.lock() {
            current.clear();
        }
    }

    /// Answers stable_token: `{"grant_type": "client_credential", "appid", "secret"}`.
    pub(super) fn stable_token(&self, body: &[u8]) -> http::Response<Body> {
        self.inner.stable_token_calls.fetch_add(1, Ordering::SeqCst);
        let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else {
            return error(47001, "data format error");
        };
        let field = |name: &str| request[name].as_str().unwrap_or_default().to_string();
        if field("grant_type") != "client_credential" {
            return error(40002, "invalid grant_type");
        }
        if let Some(answer) = self.check_credentials(&field("appid"), &field("secret")) {
            return answer;
        }
        let Ok(mut current) = self.inner.access_tokens.lock() else {
            return error(-1, "system error");
        };
        let token = current
            .entry(field("appid"))
            .or_insert_with(|| {
                let generation = self
                    .inner
                    .access_token_generation
                    .fetch_add(1, Ordering::SeqCst);
                format!("mock-access-token-{generation}")
            })
            .clone();
        let answer = serde_json::json!({ "access_token": token, "expires_in": 7200 });
        reply(StatusCode::OK, answer.to_string())
    }

    /// Answers getuserphonenumber for `access_token` and the body `{"code": "..."}`; the code
    /// `mock-invalid` gets 40029, `mock-ratelimit` 45011, and `mock-other-app` an answer whose
    /// watermark names another app (what a gateway must refuse).
    pub(super) fn phone_number(&self, access_token: &str, body: &[u8]) -> http::Response<Body> {
        self.inner.phone_calls.fetch_add(1, Ordering::SeqCst);
        let appid = self.inner.access_tokens.lock().ok().and_then(|tokens| {
            tokens
                .iter()
                .find(|(_, token)| token.as_str() == access_token)
                .map(|(appid, _)| appid.clone())
        });
        let Some(appid) = appid else {
            return error(
                40001,
                "invalid credential, access_token is invalid or not latest",
            );
        };
        let code = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|request| request["code"].as_str().map(str::to_string))
            .unwrap_or_default();
        match code.as_str() {
            "" | "mock-invalid" => return error(40029, "invalid code"),
            "mock-ratelimit" => return error(45011, "api minute-quota reach limit"),
            _ => {}
        }
        let watermark_appid = match code.as_str() {
            "mock-other-app" => "wx-another-app".to_string(),
            _ => appid,
        };
        let answer = serde_json::json!({
            "errcode": 0,
            "errmsg": "ok",
            "phone_info": {
                "phoneNumber": MOCK_PHONE,
                "purePhoneNumber": MOCK_PHONE,
                "countryCode": "86",
                "watermark": { "timestamp": 1_763_700_000, "appid": watermark_appid }
            }
        });
        reply(StatusCode::OK, answer.to_string())
    }
}
