//! `POST /wx/phone` `{"code"}` (authenticated): the code from the client's getPhoneNumber button,
//! exchanged with WeChat's getuserphonenumber for the user's `phone_info`, with the app's
//! access_token. A stale access_token (40001/40014/42001) is dropped, fetched again once, and the
//! call retried once. An answer whose `watermark.appid` is not the app's is refused (502).

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
    let (identity, body) = auth::authenticated_post(state, request).await?;
    let PhoneRequest { code } = serde_json::from_slice(&body)
        .map_err(|_| GatewayError::InvalidRequest("the body must be JSON {\"code\": \"...\"}"))?;
    if code.trim().is_empty() || code.len() > MAX_CODE_LEN {
        return Err(GatewayError::InvalidRequest(
            "\"code\" must be the code from getPhoneNumber",
        ));
    }
    let app = state
        .config
        .wechat
        .app_of_token(identity.appid.as_deref())
        .ok_or(GatewayError::UnknownApp)?;
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
