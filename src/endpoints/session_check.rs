//! `POST /wx/session/check` (authenticated): asks WeChat's checksession whether the session_key
//! the gateway holds for the user is still the current one. `{"valid": false}` marks the login's
//! key stale in the session store (every replica sees it), and `/wx/decrypt` then answers 401
//! `session_key_stale` at once instead of failing on the data: the client must log in again.

use http::{Request, Response, StatusCode};

use crate::auth::{self, Identity};
use crate::config::Platform;
use crate::endpoints::login::store_failed;
use crate::http::error::{json_response, Body, BoxError, GatewayError};
use crate::state::AppState;

/// The endpoint's path.
pub(crate) const PATH: &str = crate::config::SESSION_CHECK_PATH;

/// Answers `{"valid": true|false}` for the authenticated user's session_key.
pub(crate) async fn handle<B>(
    state: &AppState,
    request: Request<B>,
) -> Result<(Response<Body>, Identity), GatewayError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let (identity, _body, app) = auth::authenticated_app_post(state, request).await?;
    if app.platform != Platform::WeChat {
        return Err(GatewayError::PlatformNotSupported(
            "checksession is WeChat's; this app is on another platform",
        ));
    }
    let session = state
        .sessions
        .touch(&app.appid, &identity.openid)
        .await
        .map_err(store_failed)?
        .ok_or(GatewayError::SessionExpired)?;
    let known_stale = state
        .sessions
        .key_stale(&session.sid)
        .await
        .map_err(store_failed)?;
    let valid = !known_stale && {
        let wechat = &state.wechat;
        let (openid, session_key) = (session.openid.as_str(), &session.session_key);
        state
            .access_tokens
            .call_with_token(state.access_token_sources(), app, |token| async move {
                wechat
                    .check_session(app, &token, (openid, session_key))
                    .await
            })
            .await?
    };
    if !valid && !known_stale {
        tracing::info!(appid = %app.appid, "checksession: the session_key is no longer current");
        state
            .sessions
            .mark_key_stale(&session.sid, state.config.session.ttl)
            .await
            .map_err(store_failed)?;
    }
    let answer = serde_json::json!({ "valid": valid });
    Ok((json_response(StatusCode::OK, &answer), identity))
}
