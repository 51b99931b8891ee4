//! The mock's access_token and the APIs that check it: `POST /cgi-bin/stable_token` (an app gets
//! the same token on every call until it expires or is rotated, with the lifetime it has left, as
//! WeChat's normal mode does; each app its own), QQ's `GET /api/getToken` (every call a new token;
//! the previous one works 5 more minutes), `POST /wxa/business/getuserphonenumber` (single-use
//! codes; the watermark names the app the token is for) and `GET /wxa/checksession`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use http::StatusCode;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{error, query_param, reply, MockWeChat};
use crate::http::error::Body;

/// The phone number the mock answers for every valid code.
pub const MOCK_PHONE: &str = "13800138000";

/// WeChat's access_token lifetime.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(7200);
/// How long a QQ token replaced by a newer one keeps working.
const QQ_OVERLAP: Duration = Duration::from_secs(300);

/// An access_token the mock handed out, and when it stops working.
pub(super) struct IssuedToken {
    token: String,
    expires_at: Instant,
}

impl MockWeChat {
    /// How many stable_token calls it has answered.
    pub fn stable_token_calls(&self) -> usize {
        self.inner.stable_token_calls.load(Ordering::SeqCst)
    }

    /// How many QQ getToken calls it has answered.
    pub fn get_token_calls(&self) -> usize {
        self.inner.get_token_calls.load(Ordering::SeqCst)
    }

    /// How many Baidu access_token calls it has answered.
    pub fn baidu_token_calls(&self) -> usize {
        self.inner.baidu_token_calls.load(Ordering::SeqCst)
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
        if let Ok(mut replaced) = self.inner.replaced_tokens.lock() {
            replaced.clear();
        }
    }

    /// Makes access_tokens handed out from now on live `lifetime` instead of 7200 s, so that a
    /// gateway's refresh ahead of expiry can be seen.
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        if let Ok(mut current) = self.inner.access_token_lifetime.lock() {
            *current = Some(lifetime);
        }
    }

    /// Answers stable_token: `{"grant_type": "client_credential", "appid", "secret"}`, with the
    /// token's remaining lifetime as `expires_in`.
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
        match self.current_token(&field("appid")) {
            Some((token, expires_in)) => {
                let answer = serde_json::json!({ "access_token": token, "expires_in": expires_in });
                reply(StatusCode::OK, answer.to_string())
            }
            None => error(-1, "system error"),
        }
    }

    /// The app's current token and its remaining seconds, a new one if it has none that lives.
    pub(super) fn current_token(&self, appid: &str) -> Option<(String, u64)> {
        let lifetime = self.token_lifetime();
        let mut current = self.inner.access_tokens.lock().ok()?;
        let now = Instant::now();
        let issued = current
            .entry(appid.to_string())
            .and_modify(|issued| {
                if issued.expires_at <= now {
                    *issued = self.new_token(lifetime);
                }
            })
            .or_insert_with(|| self.new_token(lifetime));
        let expires_in = issued.expires_at.saturating_duration_since(now).as_secs();
        Some((issued.token.clone(), expires_in))
    }

    fn token_lifetime(&self) -> Duration {
        self.inner
            .access_token_lifetime
            .lock()
            .ok()
            .and_then(|lifetime| *lifetime)
            .unwrap_or(DEFAULT_LIFETIME)
    }

    /// Answers QQ's getToken (`grant_type`, `appid`, `secret` in the query): a new token every
    /// time; the one it replaces keeps working for 5 minutes.
    pub(super) fn qq_get_token(&self, query: &str) -> http::Response<Body> {
        self.inner.get_token_calls.fetch_add(1, Ordering::SeqCst);
        let param = |name: &str| query_param(query, name);
        if param("grant_type") != "client_credential" {
            return error(40002, "grant_type must be client_credential");
        }
        if !self.knows(&param("appid"), &param("secret")) {
            let known = self
                .inner
                .credentials
                .iter()
                .any(|(id, _)| *id == param("appid"));
            return if known {
                error(40001, "invalid appsecret")
            } else {
                error(40013, "invalid appid")
            };
        }
        let lifetime = self.token_lifetime();
        let (Ok(mut current), Ok(mut replaced)) = (
            self.inner.access_tokens.lock(),
            self.inner.replaced_tokens.lock(),
        ) else {
            return error(-1, "system error");
        };
        let fresh = self.new_token(lifetime);
        let answer =
            serde_json::json!({ "access_token": fresh.token, "expires_in": lifetime.as_secs() });
        if let Some(mut previous) = current.insert(param("appid"), fresh) {
            previous.expires_at = previous.expires_at.min(Instant::now() + QQ_OVERLAP);
            replaced.push((param("appid"), previous));
        }
        reply(StatusCode::OK, answer.to_string())
    }

    fn new_token(&self, lifetime: Duration) -> IssuedToken {
        let generation = self
            .inner
            .access_token_generation
            .fetch_add(1, Ordering::SeqCst);
        IssuedToken {
            token: format!("mock-access-token-{generation}"),
            expires_at: Instant::now() + lifetime,
        }
    }

    /// The app whose current access_token the query carries: 41001 without one, 40001 for one
    /// that is unknown, expired or rotated.
    pub(super) fn app_of_token(&self, query: &str) -> Result<String, (i64, &'static str)> {
        let token = query_param(query, "access_token");
        if token.is_empty() {
            return Err((41001, "access_token missing"));
        }
        let now = Instant::now();
        let live = |(appid, issued): (&String, &IssuedToken)| {
            (issued.token == token && now < issued.expires_at).then(|| appid.clone())
        };
        let current = self
            .inner
            .access_tokens
            .lock()
            .ok()
            .and_then(|tokens| tokens.iter().find_map(live));
        let replaced = || {
            self.inner.replaced_tokens.lock().ok().and_then(|tokens| {
                tokens
                    .iter()
                    .find_map(|(appid, issued)| live((appid, issued)))
            })
        };
        current.or_else(replaced).ok_or((
            40001,
            "invalid credential, access_token is invalid or not latest",
        ))
    }

    /// Answers getuserphonenumber of app `appid` for the body `{"code": "..."}`. Each code works
    /// once per app (then 40029); `mock-invalid` gets 40029, `mock-ratelimit` 45011, `mock-busy-spent` -1
    /// while spending the code, and `mock-other-app` an answer whose watermark names another app
    /// (what a gateway must refuse).
    pub(super) fn phone_number(&self, appid: &str, body: &[u8]) -> http::Response<Body> {
        let code = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|request| request["code"].as_str().map(str::to_string))
            .unwrap_or_default();
        match code.as_str() {
            "" | "mock-invalid" => return error(40029, "invalid code"),
            "mock-ratelimit" => return error(45011, "api minute-quota reach limit"),
            _ => {}
        }
        let first_use = self
            .inner
            .used_phone_codes
            .lock()
            .map(|mut used| used.insert((appid.to_string(), code.clone())))
            .unwrap_or(false);
        if !first_use {
            return error(40029, "invalid code");
        }
        if code == "mock-busy-spent" {
            return error(-1, "system error");
        }
        let watermark_appid = match code.as_str() {
            "mock-other-app" => "wx-another-app",
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

    /// Makes the user's session_key no longer current (as `resetusersessionkey` or a login
    /// elsewhere would): checksession with the old one answers 87009.
    pub fn replace_session_key(&self, openid: &str) {
        if let Ok(mut current) = self.inner.session_keys.lock() {
            current.insert(openid.to_string(), "mock-replaced-session-key".to_string());
        }
    }

    /// Answers checksession: `openid`, `signature` = hex(HMAC-SHA256(session_key, "")) and
    /// `sig_method=hmac_sha256`; 87009 unless signed with the user's current session_key.
    pub(super) fn check_session(&self, query: &str) -> http::Response<Body> {
        let param = |name: &str| query_param(query, name);
        if param("sig_method") != "hmac_sha256" {
            return error(87009, "invalid signature method");
        }
        let current = self
            .inner
            .session_keys
            .lock()
            .ok()
            .and_then(|keys| keys.get(&param("openid")).cloned());
        let Some(session_key) = current else {
            return error(40003, "invalid openid");
        };
        let Ok(mac) = Hmac::<Sha256>::new_from_slice(session_key.as_bytes()) else {
            return error(-1, "system error");
        };
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        if bool::from(expected.as_bytes().ct_eq(param("signature").as_bytes())) {
            reply(StatusCode::OK, r#"{"errcode":0,"errmsg":"ok"}"#.into())
        } else {
            error(87009, "invalid signature")
        }
    }
}
