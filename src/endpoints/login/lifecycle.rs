//! After login, beside the login endpoint: `POST /token/refresh` trades a valid token (or one
//! expired less than `jwt.refresh_window_secs` ago) of a live session for a new one;
//! `POST /logout` ends the session and revokes the token, on every replica sharing the store.
//!
//! Both take the token in `Authorization: Bearer`. A store failure is always a 503 here: a refresh
//! cannot check the session, and a logout that did not happen must not look as if it had.

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, CACHE_CONTROL, PRAGMA};
use http::{Method, Request, Response, StatusCode};

use crate::auth::{self, Identity};
use crate::endpoints::login::store_failed;
use crate::http::error::{json_response, Body, GatewayError};
use crate::session::unix_now;
use crate::state::AppState;
use crate::token::VerifiedToken;

/// Issues a new token for the session of the presented one: only while that session is still the
/// token's own login (a later login replaced it, or a logout ended it: 401 `session_expired`), and
/// within the user's refresh rate limit.
pub(crate) async fn refresh<B>(
    state: &AppState,
    request: Request<B>,
) -> Result<(Response<Body>, Identity), GatewayError> {
    let verified = presented(state, &request)?;
    auth::ensure_current_generation(state, &verified).map_err(|_| GatewayError::SessionExpired)?;
    let appid = app_of(state, &verified);
    if let Some(limiter) = state.limits.refresh() {
        let openid = &verified.identity.openid;
        let fleet_key = || format!("refresh:{appid}:{openid}");
        let user = (appid.to_string(), openid.clone());
        let store = state.sessions.as_ref();
        limiter
            .take(user, fleet_key, store, "refresh_user", &state.metrics)
            .await?;
    }
    if state
        .sessions
        .any_revoked(verified.revocation_ids())
        .await
        .map_err(store_failed)?
    {
        return Err(GatewayError::SessionExpired);
    }
    // Tokens minted by other tooling have no session to refresh.
    let sid = verified
        .sid
        .as_deref()
        .ok_or(GatewayError::SessionExpired)?;
    let session = state
        .sessions
        .touch(appid, &verified.identity.openid)
        .await
        .map_err(store_failed)?
        .filter(|session| session.sid == sid)
        .ok_or(GatewayError::SessionExpired)?;
    let identity = Identity {
        openid: session.openid,
        unionid: session.unionid,
        appid: Some(session.appid),
        platform: verified.identity.platform,
    };
    let issued = state.keys.issue(&identity, Some(sid))?;
    let answer = super::token_answer(&issued, &identity);
    Ok((no_store(json_response(StatusCode::OK, &answer)), identity))
}

/// Ends the session of the presented token and revokes its login and the token itself.
pub(crate) async fn logout<B>(
    state: &AppState,
    request: Request<B>,
) -> Result<(Response<Body>, Identity), GatewayError> {
    let verified = presented(state, &request)?;
    let jwt = &state.config.jwt;
    // Long enough that no token of this login, nor this token, can outlive its revocation.
    let grace = jwt.leeway_secs + jwt.refresh_window_secs;
    let login_ttl = Duration::from_secs(jwt.ttl_secs + grace);
    let token_ttl = Duration::from_secs(verified.exp.saturating_sub(unix_now()) + grace);
    let sessions = &state.sessions;
    if let Some(sid) = &verified.sid {
        let ids = [format!("sid:{sid}")];
        sessions
            .revoke(&ids, login_ttl)
            .await
            .map_err(store_failed)?;
        let appid = app_of(state, &verified);
        let openid = &verified.identity.openid;
        sessions
            .end(appid, openid, sid)
            .await
            .map_err(store_failed)?;
    }
    // One entry per login: its `sid` covers all its tokens, so a login logged out again (or its
    // other tokens) adds nothing. Only a token of no login (`wxgate token`) is revoked by its id.
    if let (None, Some(jti)) = (&verified.sid, &verified.jti) {
        let ids = [format!("jti:{jti}")];
        sessions
            .revoke(&ids, token_ttl)
            .await
            .map_err(store_failed)?;
    }
    let answer = serde_json::json!({ "logged_out": true });
    Ok((
        no_store(json_response(StatusCode::OK, &answer)),
        Arc::unwrap_or_clone(verified.identity),
    ))
}

/// The POSTed bearer token, verified (expired within the refresh window is accepted).
fn presented<B>(state: &AppState, request: &Request<B>) -> Result<VerifiedToken, GatewayError> {
    if request.method() != Method::POST {
        return Err(GatewayError::MethodNotAllowed { allow: "POST" });
    }
    let token = auth::required_bearer_token(request.headers())?;
    state
        .keys
        .verify_for_refresh(token, state.config.jwt.refresh_window_secs)
}

/// The app a token belongs to: its `appid` claim, or the configured app for tokens without one.
fn app_of<'a>(state: &'a AppState, verified: &'a VerifiedToken) -> &'a str {
    verified
        .identity
        .appid
        .as_deref()
        .unwrap_or(&state.config.wechat.default_app().appid)
}

fn no_store(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
