//! The login endpoint: POST `{"code": "..."}` (JSON or form-encoded) -> code2session -> the
//! session_key stored server-side -> a signed token for the client.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use http::{Method, Request, Response};

use crate::auth::Identity;
use crate::client::ClientConnection;
use crate::config::{Secret, WeChatApp};
use crate::endpoints::decrypt::{self, DecryptRequest};
use crate::http::error::{full_body, Body, GatewayError};
use crate::session::Session;
use crate::state::AppState;

/// wx.login() codes are short; anything much longer is not one.
pub(crate) const MAX_CODE_LEN: usize = 256;

use crate::single_flight::LoginOutcome;

mod lifecycle;
pub(crate) use lifecycle::{logout, refresh};

/// Handles a request to the login path, or to `<login path>/<app name>`; answers with the token
/// and the identity it carries.
pub(crate) async fn handle<B>(
    state: &Arc<AppState>,
    path: &str,
    client: &ClientConnection,
    request: Request<B>,
) -> Result<(Response<Body>, Identity), GatewayError>
where
    B: http_body::Body,
    B::Error: Into<crate::http::error::BoxError>,
{
    if request.method() != Method::POST {
        return Err(GatewayError::MethodNotAllowed { allow: "POST" });
    }
    let trusted = &state.config.server.trusted_proxies;
    let client_ip = trusted.client_ip(client.peer.ip(), request.headers());
    if let Some(limiter) = state.limits.login() {
        let fleet_key = || format!("login:{client_ip}");
        let store = state.sessions.as_ref();
        limiter
            .take(client_ip, fleet_key, store, "login_ip", &state.metrics)
            .await?;
    }
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let body = crate::client::read_limited(state, request.into_body()).await?;
    let LoginBody {
        code,
        app,
        user_data,
    } = login_body(&content_type, &body)?;
    let from_path = path
        .strip_prefix(state.config.login.path.as_str())
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|name| !name.is_empty());
    let app = match (from_path, app.as_deref()) {
        (Some(from_path), Some(from_body)) if from_path != from_body => {
            return Err(GatewayError::InvalidRequest(
                "the app in the path and the app in the body differ",
            ))
        }
        (Some(name), _) | (None, Some(name)) => state
            .config
            .wechat
            .app_named(name)
            .ok_or(GatewayError::UnknownApp)?,
        (None, None) => state.config.wechat.default_app(),
    }
    .clone();

    let (appid, platform) = (app.appid.clone(), app.platform);
    let key = (app.appid.clone(), code.clone());
    let work = {
        let state = state.clone();
        async move { complete(&state, &app, &code).await }
    };
    let outcome = state.logins.run(key, work).await;
    let (body, identity, session_key) =
        outcome.unwrap_or(Err(GatewayError::Internal("the login failed")))?;
    let body = match user_data {
        Some(user_data) => with_user_data(&body, &session_key, &user_data, (&appid, platform)),
        None => body,
    };
    let mut response = Response::new(full_body(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    Ok((response, identity))
}

/// The login itself: code2session, the session stored, the token issued; the answer's JSON body.
async fn complete(state: &AppState, app: &WeChatApp, code: &str) -> LoginOutcome {
    let wechat = state.wechat.code2session(app, code).await?;
    let unionid = match &app.baidu {
        Some(baidu) if baidu.fetch_unionid => {
            let token = state
                .access_tokens
                .get(state.access_token_sources(), app)
                .await?;
            let unionid = state.wechat.baidu_unionid(app, &token, &wechat.openid);
            Some(unionid.await?)
        }
        _ => wechat.unionid,
    };
    let identity = Identity {
        openid: wechat.openid,
        unionid,
        appid: Some(app.appid.clone()),
        platform: app.platform,
    };
    let sid = crate::token::random_id()?;
    let now = crate::session::unix_now();
    let session = Session {
        sid: sid.clone(),
        openid: identity.openid.clone(),
        unionid: identity.unionid.clone(),
        appid: app.appid.clone(),
        session_key: wechat.session_key,
        created_at: now,
        last_seen: now,
    };
    // Stored before the token exists: no token for a session the store does not have.
    state.sessions.save(&session).await.map_err(store_failed)?;
    let issued = state.keys.issue(&identity, Some(&sid))?;

    let answer = token_answer(&issued, &identity);
    // Serializing a `Value` cannot fail (its map keys are always strings).
    let body = serde_json::to_vec(&answer).unwrap_or_default();
    Ok((Bytes::from(body), identity, session.session_key))
}

/// The login's answer with the user data the client posted beside its code, decrypted with the
/// session_key this very login obtained (so no later `wx.login` can have replaced it): `"data"`,
/// or `"data_error"` with the error code when it does not decrypt. The login stands either way.
fn with_user_data(
    answer: &Bytes,
    session_key: &Secret,
    user_data: &DecryptRequest,
    (appid, platform): (&str, crate::config::Platform),
) -> Bytes {
    let Ok(serde_json::Value::Object(mut answer_object)) = serde_json::from_slice(answer) else {
        return answer.clone();
    };
    match decrypt::open(session_key.expose(), user_data, appid, platform) {
        Ok(data) => answer_object.insert("data".into(), data),
        Err(error) => answer_object.insert("data_error".into(), error.code().into()),
    };
    let body = serde_json::to_vec(&answer_object).unwrap_or_default();
    Bytes::from(body)
}

/// The answer of a login and of a refresh: `{"token", "token_type", "expires_in", "openid",
/// "platform"}`, and `"unionid"` when the platform gave one (openapi.yaml's `TokenAnswer`).
pub(crate) fn token_answer(
    issued: &crate::token::IssuedToken,
    identity: &Identity,
) -> serde_json::Value {
    let mut answer = serde_json::json!({
        "token": issued.token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "openid": identity.openid,
        "platform": identity.platform.name(),
    });
    if let Some(unionid) = &identity.unionid {
        answer["unionid"] = unionid.as_str().into();
    }
    answer
}

/// A store failure while logging in: the login cannot complete whatever the policy, since the
/// session_key would be lost.
pub(crate) fn store_failed(error: crate::session::StoreError) -> GatewayError {
    tracing::warn!(%error, "session store failed");
    GatewayError::SessionStoreUnavailable
}

/// What a login body carries.
#[derive(Debug, PartialEq)]
pub(crate) struct LoginBody {
    /// The wx.login() code.
    pub(crate) code: String,
    /// The app's name, when the body names one.
    pub(crate) app: Option<String>,
    /// `encryptedData` and `iv` (with `rawData` and `signature`, when given) posted beside the
    /// code, to decrypt with the session_key the login obtains.
    pub(crate) user_data: Option<DecryptRequest>,
}

/// The fields a login body may carry: the code, the app, user data to decrypt, and Douyin's
/// anonymous code (in either spelling), which is refused.
const FIELDS: [&str; 8] = [
    "code",
    "app",
    "encryptedData",
    "iv",
    "rawData",
    "signature",
    "anonymous_code",
    "anonymousCode",
];

/// Reads `code` (and `app`, and user data to decrypt) from a JSON object or a form-encoded body
/// (a body opening with `{` is JSON whatever its Content-Type says). Other members are ignored.
pub(crate) fn login_body(content_type: &str, body: &[u8]) -> Result<LoginBody, GatewayError> {
    let looks_like_json = body.trim_ascii_start().starts_with(b"{");
    let mut values: [Option<String>; FIELDS.len()] = Default::default();
    if content_type.starts_with("application/x-www-form-urlencoded") && !looks_like_json {
        for (value, wanted) in values.iter_mut().zip(FIELDS) {
            let mut found = form_urlencoded::parse(body).filter(|(name, _)| name == wanted);
            *value = found.next().map(|(_, value)| value.into_owned());
            if found.next().is_some() {
                return Err(GatewayError::InvalidRequest("the form repeats a field"));
            }
        }
    } else {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
            GatewayError::InvalidRequest(
                "the body must be JSON {\"code\": \"...\"} or a form with code=...",
            )
        })?;
        let serde_json::Value::Object(mut object) = value else {
            return Err(GatewayError::InvalidRequest(
                "the JSON body must be an object",
            ));
        };
        for (value, name) in values.iter_mut().zip(FIELDS) {
            *value = match object.remove(name) {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(text)) => Some(text),
                Some(_) => {
                    return Err(GatewayError::InvalidRequest(
                        "\"code\", \"app\", \"encryptedData\", \"iv\", \"rawData\", \"signature\" and \"anonymous_code\" must be strings",
                    ))
                }
            };
        }
    }
    let [code, app, encrypted_data, iv, raw_data, signature, anonymous, anonymous_camel] = values;
    let code = code.unwrap_or_default();
    let anonymous = anonymous
        .or(anonymous_camel)
        .filter(|code| !code.is_empty());
    if code.trim().is_empty() && anonymous.is_some() {
        return Err(GatewayError::InvalidRequest(
            "anonymous Douyin logins (anonymous_code alone) are not supported: it names a device, \
             not a user; call tt.login({force: true}) and post its code",
        ));
    }
    if code.trim().is_empty() {
        return Err(GatewayError::MissingCode);
    }
    if code.len() > MAX_CODE_LEN || !code.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(GatewayError::InvalidRequest(
            "the code is not a wx.login() code (too long or not printable ASCII)",
        ));
    }
    // Refused before WeChat is called: the code stays usable for a corrected request.
    let user_data =
        match (encrypted_data, iv) {
            (Some(encrypted_data), Some(iv)) => Some(DecryptRequest {
                encrypted_data,
                iv,
                raw_data,
                signature,
            }),
            (None, None) if raw_data.is_none() && signature.is_none() => None,
            _ => return Err(GatewayError::InvalidRequest(
                "user data needs both encryptedData and iv (rawData and signature only with them)",
            )),
        };
    Ok(LoginBody {
        code,
        app: app.filter(|app| !app.is_empty()),
        user_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = "application/json";
    const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

    fn login_code(content_type: &str, body: &[u8]) -> Result<String, GatewayError> {
        login_body(content_type, body).map(|body| body.code)
    }

    #[test]
    fn code_from_json_or_form() {
        assert_eq!(login_code(JSON, br#"{"code":"abc"}"#).unwrap(), "abc");
        assert_eq!(login_code("", br#"{"code":"abc","x":1}"#).unwrap(), "abc");
        assert_eq!(login_code(FORM, b"code=a%2Bb&x=1").unwrap(), "a+b");
        // curl -d '{...}' labels JSON as a form; a body that opens an object is JSON.
        assert_eq!(login_code(FORM, br#" {"code":"abc"}"#).unwrap(), "abc");
    }

    #[test]
    fn the_app_comes_from_the_body_when_named() {
        let app = |content_type, body| login_body(content_type, body).unwrap().app;
        assert_eq!(
            app(JSON, br#"{"code":"c","app":"shop"}"#),
            Some("shop".into())
        );
        assert_eq!(app(FORM, b"code=c&app=shop"), Some("shop".into()));
        assert_eq!(app(JSON, br#"{"code":"c","app":""}"#), None);
        assert!(login_body(JSON, br#"{"code":"c","app":7}"#).is_err());
        assert!(login_body(FORM, b"code=c&app=a&app=b").is_err());
    }

    #[test]
    fn an_anonymous_douyin_code_alone_is_refused_with_a_reason() {
        for body in [
            &br#"{"anonymous_code":"a1"}"#[..],
            br#"{"anonymousCode":"a1","code":""}"#,
        ] {
            let refused = login_code(JSON, body).unwrap_err();
            assert!(refused.to_string().contains("anonymous"), "{refused}");
        }
        assert_eq!(
            login_code(JSON, br#"{"code":"c","anonymousCode":"a1"}"#).unwrap(),
            "c"
        );
        assert_eq!(
            login_code(FORM, b"anonymous_code=a1").unwrap_err().code(),
            "invalid_request"
        );
    }

    #[test]
    fn missing_or_empty_code() {
        for (content_type, body) in [
            (JSON, &br#"{}"#[..]),
            (JSON, br#"{"code":""}"#),
            (JSON, br#"{"code":null}"#),
            (JSON, br#"{"code":"   "}"#),
            (FORM, b""),
            (FORM, b"code="),
        ] {
            assert_eq!(
                login_code(content_type, body),
                Err(GatewayError::MissingCode)
            );
        }
    }

    #[test]
    fn unparseable_bodies_are_invalid_requests() {
        for (content_type, body) in [
            (JSON, &b"{not json"[..]),
            (JSON, b"[1,2]"),
            (JSON, br#"{"code":123}"#),
            (FORM, b"code=a&code=b"),
            (JSON, br#"{"code":"has space"}"#),
        ] {
            assert!(
                matches!(
                    login_code(content_type, body),
                    Err(GatewayError::InvalidRequest(_))
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let long = format!(r#"{{"code":"{}"}}"#, "a".repeat(MAX_CODE_LEN + 1));
        assert!(login_code(JSON, long.as_bytes()).is_err());
    }
}
