//! `POST /wx/phone` `{"code"}` (authenticated): the code from the client's getPhoneNumber button,
//! exchanged with WeChat's getuserphonenumber for the user's `phone_info`, with the app's
//! access_token. A stale access_token (40001/40014/42001) is dropped, fetched again once, and the
//! call retried once. An answer whose `watermark.appid` is not the app's is refused (502). For an
//! Alipay app the body is `my.getPhoneNumber`'s answer instead, verified and decrypted by the
//! gateway (`wechat::alipay::phone`).

use http::{Request, Response, StatusCode};
use serde::Deserialize;

use crate::auth::{self, Identity};
use crate::config::Platform;
use crate::http::error::{json_response, Body, BoxError, GatewayError};
use crate::state::AppState;

/// The endpoint's path.
pub(crate) const PATH: &str = crate::config::PHONE_PATH;

/// getPhoneNumber codes are short; anything much longer is not one.
const MAX_CODE_LEN: usize = 256;

/// The getPhoneNumber button's `e.detail`, or just its `code`: the other members it carries
/// (`errMsg`, `encryptedData`, `iv`, `cloudID`) are ignored; a member of the wrong type is not.
#[derive(Deserialize)]
struct PhoneRequest {
    code: String,
}

/// Answers `{"phone_info": {...}}` for the authenticated user's code.
pub(crate) async fn handle<B>(
    state: &AppState,
    request: Request<B>,
) -> Result<(Response<Body>, Identity), GatewayError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let (identity, body, app) = auth::authenticated_app_post(state, request).await?;
    if app.platform == Platform::Alipay {
        let mobile = alipay_mobile(state, app, &body)?;
        let answer = serde_json::json!({
            "phone_info": { "phoneNumber": mobile, "purePhoneNumber": mobile },
        });
        return Ok((json_response(StatusCode::OK, &answer), identity));
    }
    let PhoneRequest { code } = serde_json::from_slice(&body)
        .map_err(|_| GatewayError::InvalidRequest("the body must be JSON {\"code\": \"...\"}"))?;
    if code.trim().is_empty() || code.len() > MAX_CODE_LEN {
        return Err(GatewayError::InvalidRequest(
            "\"code\" must be the code from getPhoneNumber",
        ));
    }
    if app.platform != Platform::WeChat {
        return Err(GatewayError::PlatformNotSupported(
            "phone numbers by button code come from WeChat's getuserphonenumber; this app is on another platform",
        ));
    }
    let (wechat, code) = (&state.wechat, code.as_str());
    let info = state
        .access_tokens
        .call_with_token(state.access_token_sources(), app, |token| async move {
            wechat.phone_number(&token, code, app).await
        })
        .await?;
    let answer = serde_json::json!({ "phone_info": info });
    Ok((json_response(StatusCode::OK, &answer), identity))
}

/// An Alipay user's number, from the `my.getPhoneNumber` answer the client posted.
fn alipay_mobile(
    state: &AppState,
    app: &crate::config::WeChatApp,
    body: &[u8],
) -> Result<String, GatewayError> {
    use crate::wechat::alipay::phone::{mobile, PhoneAnswer};
    let answer: PhoneAnswer = serde_json::from_slice(body).map_err(|_| {
        GatewayError::InvalidRequest(
            "the body must be my.getPhoneNumber's answer: {\"response\", \"sign\", ...}",
        )
    })?;
    let keys = state
        .wechat
        .alipay_keys(&app.appid)
        .ok_or(GatewayError::Internal("an Alipay app without its keys"))?;
    let aes_key = app
        .alipay
        .as_ref()
        .and_then(|alipay| alipay.aes_key.as_ref());
    mobile(keys, aes_key, &answer)
}
