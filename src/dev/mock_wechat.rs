//! A faithful fake of WeChat's server APIs, for offline development (`wxgate mock-wechat`,
//! `wxgate demo`) and for the tests. It behaves like the real API where the gateway can tell:
//! JSON answered as `text/plain`, errors with HTTP 200, single-use codes, appid/secret checks,
//! 43002 for the wrong method, 41001 without an access_token, 40001 with one that is not current.
//! `/sns/jscode2session` is here; the APIs behind an access_token are in `access_token.rs` and
//! `api.rs`; the other platforms' in `douyin.rs`, `oauth_form.rs` (Baidu, Kuaishou) and
//! `alipay.rs`. The APIs of `api.rs` answer any platform's current token.
//!
//! Codes: any printable code logs a user in once; the part before the first `.` names the user, so
//! `alice.1` and `alice.2` are two logins of the same user (openid `oMock_alice`, unionid
//! `uMock_alice`; users whose name starts with `nounion` get no unionid, users whose name starts
//! with `samplekey` get the fixed [`SAMPLE_SESSION_KEY`], the others a random one). Reusing a code answers
//! 40163. Magic codes: `mock-invalid` -> 40029, `mock-busy` -> -1, `mock-ratelimit` -> 45011,
//! `mock-blocked` -> 40226, `mock-garbage` -> a body that is not JSON, `mock-slow` -> answers after
//! 10 seconds, `mock-busy-spent` -> -1 while spending the code (a retry finds it used). The user's
//! session_key stays current until the user logs in again or [`MockWeChat::replace_session_key`].

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::http::error::{full_body, Body};

mod access_token;
mod alipay;
mod api;
mod douyin;
mod oauth_form;
mod push;
pub use access_token::MOCK_PHONE;
pub use alipay::AlipayRequest;
pub use api::RecordedCall;
pub use push::MockPush;

/// The session_key of users whose name starts with `samplekey`: the sample key of WeChat's
/// documentation, so data encrypted with it can be decrypted offline.
pub const SAMPLE_SESSION_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";

/// The session_key of Baidu users whose name starts with `samplekey`: the one of Baidu's published
/// decryption vector (its AppKey is `y2dTfnWfkx2OXttMEMWlGHoB1KzMogm7`).
pub const BAIDU_SAMPLE_SESSION_KEY: &str = "1df09d0a1677dd72b8325aec59576e0c";

/// How long `mock-slow` makes the caller wait.
const SLOW_ANSWER: Duration = Duration::from_secs(10);
/// What `mock-garbage` answers: a proxy's error page, not JSON.
const GARBAGE: &str = "<html>502 Bad Gateway</html>";

/// The fake WeChat API; clone it to keep a handle on its counters while it serves.
#[derive(Clone, Default)]
pub struct MockWeChat {
    inner: Arc<MockState>,
}

#[derive(Default)]
struct MockState {
    /// (appid, secret) of every app it serves; empty: any.
    credentials: Vec<(String, String)>,
    used_codes: Mutex<HashSet<String>>,
    calls: AtomicUsize,
    issued_session_keys: Mutex<Vec<String>>,
    stable_token_calls: AtomicUsize,
    /// QQ getToken and Baidu access_token calls.
    get_token_calls: AtomicUsize,
    baidu_token_calls: AtomicUsize,
    /// QQ tokens replaced by a newer getToken, still valid for their last minutes.
    replaced_tokens: Mutex<Vec<(String, access_token::IssuedToken)>>,
    phone_calls: AtomicUsize,
    /// Each app's one valid access_token (by appid), made on its first stable_token call after a
    /// rotation.
    access_tokens: Mutex<std::collections::HashMap<String, access_token::IssuedToken>>,
    access_token_generation: AtomicUsize,
    /// How long a new access_token lives (None: WeChat's 7200 s).
    access_token_lifetime: Mutex<Option<Duration>>,
    /// Each user's current session_key, by openid.
    session_keys: Mutex<std::collections::HashMap<String, String>>,
    /// (appid, code) of the phone codes used.
    used_phone_codes: Mutex<HashSet<(String, String)>>,
    /// The calls to the APIs of `api.rs`, as received.
    api_calls: Mutex<Vec<RecordedCall>>,
    /// The Alipay app it serves, if any.
    alipay: Mutex<Option<alipay::MockAlipay>>,
    alipay_requests: Mutex<Vec<AlipayRequest>>,
}

impl MockWeChat {
    /// A mock that accepts any appid and secret.
    pub fn new() -> Self {
        MockWeChat::default()
    }

    /// A mock that answers 40013 / 40125 unless called with this appid and secret.
    pub fn with_credentials(appid: impl Into<String>, secret: impl Into<String>) -> Self {
        MockWeChat::with_apps([(appid.into(), secret.into())])
    }

    /// A mock serving several mini-programs: 40013 for an appid not among them, 40125 for the
    /// wrong secret of one.
    pub fn with_apps(apps: impl IntoIterator<Item = (String, String)>) -> Self {
        MockWeChat {
            inner: Arc::new(MockState {
                credentials: apps.into_iter().collect(),
                ..MockState::default()
            }),
        }
    }

    /// How many code2session calls it has received.
    pub fn calls(&self) -> usize {
        self.inner.calls.load(Ordering::SeqCst)
    }

    /// Every session_key it has handed out, so tests can prove none of them leaks.
    pub fn issued_session_keys(&self) -> Vec<String> {
        self.inner
            .issued_session_keys
            .lock()
            .map(|keys| keys.clone())
            .unwrap_or_default()
    }

    /// Serves the mock on `listener` until `shutdown` completes.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let mock = self.clone();
        crate::simple_http::serve_handler(listener, shutdown, move |request| {
            let mock = mock.clone();
            async move { mock.answer(request).await }
        })
        .await
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path();
        let query = parts.uri.query().unwrap_or_default();
        let Some(method) = api::method_of(path) else {
            return reply(
                StatusCode::NOT_FOUND,
                r#"{"errcode":-1,"errmsg":"mock: unknown path"}"#.into(),
            );
        };
        if parts.method != method {
            return error(43002, &format!("require {method} method"));
        }
        let body = body.collect().await;
        let body = body.map(|body| body.to_bytes()).unwrap_or_default();
        match path {
            "/sns/jscode2session" => self.code2session(query).await,
            "/cgi-bin/stable_token" => self.stable_token(&body),
            "/api/getToken" => self.qq_get_token(query),
            "/oauth/2.0/token" => self.baidu_token(&body),
            "/rest/2.0/smartapp/getunionid" => self.baidu_unionid(query, &body),
            "/api/apps/v2/jscode2session" => self.douyin_code2session(&body).await,
            "/oauth/jscode2sessionkey" => self.baidu_code2session(&body).await,
            "/oauth2/mp/code2session" => self.kuaishou_code2session(&body).await,
            "/gateway.do" => self.alipay_gateway(query, &body).await,
            _ => {
                if path == "/wxa/business/getuserphonenumber" {
                    self.inner.phone_calls.fetch_add(1, Ordering::SeqCst);
                }
                let appid = match self.app_of_token(query) {
                    Ok(appid) => appid,
                    Err((errcode, errmsg)) => return error(errcode, errmsg),
                };
                match path {
                    "/wxa/business/getuserphonenumber" => self.phone_number(&appid, &body),
                    "/wxa/checksession" => self.check_session(query),
                    _ => self.api(path, query, &parts.headers, &body),
                }
            }
        }
    }

    /// 40013 / 40125 unless the appid is one the mock serves, with its secret.
    fn check_credentials(&self, appid: &str, secret: &str) -> Option<Response<Body>> {
        if self.inner.credentials.is_empty() {
            return None;
        }
        let Some((_, known)) = self.inner.credentials.iter().find(|(id, _)| id == appid) else {
            return Some(error(40013, "invalid appid"));
        };
        if !bool::from(secret.as_bytes().ct_eq(known.as_bytes())) {
            return Some(error(40125, "invalid appsecret"));
        }
        None
    }

    async fn code2session(&self, query: &str) -> Response<Body> {
        self.inner.calls.fetch_add(1, Ordering::SeqCst);
        let param = |name: &str| query_param(query, name);
        if let Some(refused) = self.check_credentials(&param("appid"), &param("secret")) {
            return refused;
        }
        if param("grant_type") != "authorization_code" {
            return error(40002, "invalid grant_type");
        }
        let code = param("js_code");
        match code.as_str() {
            "" => return error(41008, "missing code"),
            "mock-invalid" => return error(40029, "invalid code"),
            "mock-busy" => return error(-1, "system error"),
            "mock-ratelimit" => return error(45011, "api minute-quota reach limit"),
            // The errmsg WeChat's answers carry for 40226 in the field.
            "mock-blocked" => return error(40226, "code blocked"),
            "mock-garbage" => return reply(StatusCode::OK, GARBAGE.into()),
            "mock-slow" => tokio::time::sleep(SLOW_ANSWER).await,
            _ => {}
        }
        match self.log_in(&code) {
            Login::Reused => error(40163, "code been used"),
            Login::Busy => error(-1, "system error"),
            Login::User(user) => {
                let mut answer = serde_json::json!({
                    "openid": user.openid, "session_key": user.session_key,
                });
                if let Some(unionid) = user.unionid {
                    answer["unionid"] = serde_json::Value::String(unionid);
                }
                reply(StatusCode::OK, answer.to_string())
            }
        }
    }

    /// Spends `code` and logs its user in: a new session_key (the sample one for `samplekey`
    /// users), recorded as issued and as the user's current one.
    fn log_in(&self, code: &str) -> Login {
        self.log_in_with(code, KeyKind::Aes128)
    }

    /// [`MockWeChat::log_in`] for a platform whose session_key is `kind`.
    fn log_in_with(&self, code: &str, kind: KeyKind) -> Login {
        let first_use = self
            .inner
            .used_codes
            .lock()
            .map(|mut used| used.insert(code.to_string()))
            .unwrap_or(false);
        if !first_use {
            return Login::Reused;
        }
        if code == "mock-busy-spent" {
            return Login::Busy;
        }
        let user = code.split('.').next().unwrap_or_default();
        let session_key = match (user.starts_with("samplekey"), kind) {
            (true, KeyKind::Aes128) => SAMPLE_SESSION_KEY.to_string(),
            (true, KeyKind::Aes192) => BAIDU_SAMPLE_SESSION_KEY.to_string(),
            (false, kind) => {
                let mut key = vec![0u8; if kind == KeyKind::Aes192 { 24 } else { 16 }];
                if getrandom::fill(&mut key).is_err() {
                    return Login::Busy;
                }
                STANDARD.encode(key)
            }
        };
        if let Ok(mut issued) = self.inner.issued_session_keys.lock() {
            issued.push(session_key.clone());
        }
        let openid = format!("oMock_{user}");
        if let Ok(mut current) = self.inner.session_keys.lock() {
            current.insert(openid.clone(), session_key.clone());
        }
        Login::User(MockUser {
            openid,
            session_key,
            unionid: (!user.starts_with("nounion")).then(|| format!("uMock_{user}")),
        })
    }
}

/// The session_key a platform hands out: 16 bytes, or Baidu's 24.
#[derive(Clone, Copy, PartialEq)]
enum KeyKind {
    Aes128,
    Aes192,
}

/// What spending a login code gave.
enum Login {
    /// The code was used before.
    Reused,
    /// The mock "failed" (`mock-busy-spent`, no randomness).
    Busy,
    User(MockUser),
}

/// A logged-in mock user.
struct MockUser {
    openid: String,
    session_key: String,
    unionid: Option<String>,
}

/// One query parameter, decoded; empty when absent.
fn query_param(query: &str, name: &str) -> String {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

/// A WeChat-style error: HTTP 200 with errcode and errmsg.
fn error(errcode: i64, errmsg: &str) -> Response<Body> {
    let body = serde_json::json!({ "errcode": errcode, "errmsg": format!("{errmsg}, rid: mock") });
    reply(StatusCode::OK, body.to_string())
}

/// WeChat labels its JSON as text/plain; so does the mock.
fn reply(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}
