//! The authentication decision for one request: find the bearer token, verify it, and apply the
//! route's auth mode. Fails closed: anything ambiguous about the credentials is a 401.

use std::sync::Arc;

use http::header::{HeaderMap, AUTHORIZATION};

use crate::config::StoreErrorPolicy;
use crate::config::{AuthMode, RouteConfig};
use crate::http::error::GatewayError;
use crate::http::headers::ForwardedIdentity;
use crate::state::AppState;
use crate::token::{AssertionOf, VerifiedToken};

pub use crate::identity::Identity;

/// The one authorization step, shared by the proxy (WebSocket upgrades included), forward-auth
/// checks and the gateway's own authenticated endpoints: who may pass on `route` (`None`: a path
/// no route covers, or an endpoint of the gateway's own, judged as `auth = "required"` with no app
/// restriction or rate limit). The answer is the verified token, or `Ok(None)` to pass without
/// identity; every refusal is an error.
///
/// In order: the route's auth mode; the bearer token (`query_token` is one from the WebSocket
/// query parameter: with a header token too, the request is ambiguous and refused), verified;
/// the route's `apps`; the revocations and the store's generation; the route's per-user
/// `rate_limit`.
pub(crate) async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    query_token: Option<&str>,
    route: Option<&RouteConfig>,
) -> Result<Option<Arc<VerifiedToken>>, GatewayError> {
    let mode = route.map_or(AuthMode::Required, |route| route.auth);
    if mode == AuthMode::None {
        return Ok(None);
    }
    let keys = &state.keys;
    let recent = match (query_token, plain_bearer_bytes(headers)) {
        (None, Some(token)) => keys.recently_verified(token),
        _ => None,
    };
    let verified = match recent {
        Some(verified) => verified,
        None => {
            let token = match (bearer_token(headers)?, query_token) {
                (Some(_), Some(_)) => {
                    return Err(GatewayError::InvalidToken(
                        "a token in both the header and the query",
                    ))
                }
                (Some(token), None) | (None, Some(token)) => Some(token),
                (None, None) => None,
            };
            match token {
                Some(token) => keys.verify(token)?,
                None if mode == AuthMode::Required => return Err(GatewayError::MissingToken),
                None => return Ok(None),
            }
        }
    };
    if let Some(apps) = route.and_then(|route| route.apps.as_deref()) {
        let appid = verified.identity.appid.as_deref();
        let appid = appid.unwrap_or(&state.config.wechat.default_app().appid);
        if !apps.iter().any(|allowed| allowed == appid) {
            return Err(GatewayError::AppNotAllowed);
        }
    }
    ensure_not_revoked(state, &verified).await?;
    if let Some(limit) = route.and_then(|route| Some((route, state.limits.route(route)?))) {
        let (route, limiter) = limit;
        let openid = &verified.identity.openid;
        let fleet_key = || format!("route:{}:{openid}", route.prefix);
        let store = state.sessions.as_ref();
        limiter
            .take(
                openid.clone(),
                fleet_key,
                store,
                &route.prefix,
                &state.metrics,
            )
            .await?;
    }
    Ok(Some(verified))
}

/// What upstreams are told of a passed request's caller (forwarded requests and forward-auth
/// answers alike): the token's identity, the app's name when `[identity.headers] app` names a
/// header for it, and, with `[identity] assertion`, the signed assertion for `audience` (the
/// route's).
pub(crate) fn forwarded_identity<'a>(
    state: &'a AppState,
    verified: &'a VerifiedToken,
    audience: &str,
) -> Result<ForwardedIdentity<'a>, GatewayError> {
    let config = &state.config.identity;
    let appid = verified.identity.appid.as_deref();
    let assertion = match config.assertion {
        true => {
            let app = || Some(state.app_name(appid)?.to_str().ok()?.to_string());
            let of = AssertionOf {
                identity: &verified.identity,
                app: &app,
                audience,
                ttl_secs: config.assertion_ttl.as_secs(),
            };
            Some(state.keys.assertion(verified, of)?)
        }
        false => None,
    };
    Ok(ForwardedIdentity {
        headers: verified.identity_headers(),
        app: config
            .app_header
            .as_ref()
            .and_then(|_| state.app_name(appid)),
        assertion,
    })
}

/// The caller and the (bounded) body of a POST to one of the gateway's own authenticated
/// endpoints (`/wx/decrypt`, `/wx/phone`): 405 for another method, 401 without a valid token.
pub(crate) async fn authenticated_post<B>(
    state: &AppState,
    request: http::Request<B>,
) -> Result<(Identity, bytes::Bytes), GatewayError>
where
    B: http_body::Body,
    B::Error: Into<crate::http::error::BoxError>,
{
    if request.method() != http::Method::POST {
        return Err(GatewayError::MethodNotAllowed { allow: "POST" });
    }
    let verified = authorize(state, request.headers(), None, None)
        .await?
        .ok_or(GatewayError::MissingToken)?;
    let identity = Identity::clone(&verified.identity);
    let body = crate::client::read_limited(state, request.into_body()).await?;
    Ok((identity, body))
}

/// [`authenticated_post`], with the app the caller's token was issued for (404 `unknown_app`
/// when the config no longer has it): `/wx/phone`, `/wx/session/check`.
pub(crate) async fn authenticated_app_post<B>(
    state: &AppState,
    request: http::Request<B>,
) -> Result<(Identity, bytes::Bytes, &crate::config::WeChatApp), GatewayError>
where
    B: http_body::Body,
    B::Error: Into<crate::http::error::BoxError>,
{
    let (identity, body) = authenticated_post(state, request).await?;
    let app = state
        .config
        .wechat
        .app_of_token(identity.appid.as_deref())
        .ok_or(GatewayError::UnknownApp)?;
    Ok((identity, body, app))
}

/// The bearer token of a request to the gateway's own token endpoints (header only).
pub(crate) fn required_bearer_token(headers: &HeaderMap) -> Result<&str, GatewayError> {
    bearer_token(headers)?.ok_or(GatewayError::MissingToken)
}

/// Refuses a token whose login or own id was revoked (logout). When the store cannot tell,
/// `session.on_store_error` decides: refuse (503) or trust the signature alone. A token found not
/// revoked is not looked up again until the next revocation, where the store can tell when that
/// is (in memory).
async fn ensure_not_revoked(
    state: &AppState,
    verified: &VerifiedToken,
) -> Result<(), GatewayError> {
    let ids = verified.revocation_ids();
    if ids.is_empty() {
        return Ok(());
    }
    ensure_current_generation(state, verified)?;
    // Read before the lookup: a revocation recorded meanwhile changes it.
    let count = state.sessions.revocation_count();
    if count.is_some_and(|count| verified.not_revoked_at().holds_at(count)) {
        return Ok(());
    }
    match state.sessions.any_revoked(ids).await {
        Ok(false) => {
            // The lookup may have found the store emptied (Redis flushed): a new generation.
            ensure_current_generation(state, verified)?;
            if let Some(count) = count {
                verified.not_revoked_at().record(count);
            }
            Ok(())
        }
        Ok(true) => Err(GatewayError::InvalidToken("token revoked by a logout")),
        Err(error) => match state.config.session.on_store_error {
            StoreErrorPolicy::Refuse => {
                tracing::warn!(%error, "revocation check failed; refusing (session.on_store_error)");
                Err(GatewayError::SessionStoreUnavailable)
            }
            StoreErrorPolicy::Signature => {
                tracing::warn!(%error, "revocation check failed; trusting the signature (session.on_store_error)");
                Ok(())
            }
        },
    }
}

/// Refuses a revocable token issued before the session store's current generation: the store
/// lost its contents since (a new database file, a flushed Redis), and with them perhaps the
/// token's logout. Everyone logs in again; nothing logged out comes back.
pub(crate) fn ensure_current_generation(
    state: &AppState,
    verified: &VerifiedToken,
) -> Result<(), GatewayError> {
    if verified.issued_before(state.sessions.generation()) {
        return Err(GatewayError::InvalidToken(
            "issued before the session store was reset",
        ));
    }
    Ok(())
}

/// The bearer token, if the request carries one. Two `Authorization` headers, a value that is not
/// visible ASCII, an empty bearer token, or any value that is not `Bearer <token>` (another scheme,
/// `Bearer<TAB>token`) are refused rather than guessed at: on a route the gateway authenticates,
/// a credential it did not check must not reach a backend that might read it.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, GatewayError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(GatewayError::InvalidToken(
            "more than one Authorization header",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| GatewayError::InvalidToken("malformed Authorization header"))?;
    let (scheme, credentials) = match value.bytes().position(|byte| byte == b' ') {
        Some(space) => (&value[..space], &value[space + 1..]),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(GatewayError::InvalidToken(
            "the Authorization header is not a Bearer credential",
        ));
    }
    match credentials.trim() {
        "" => Err(GatewayError::InvalidToken("empty bearer token")),
        token => Ok(Some(token)),
    }
}

/// The hot path's shortcut to the bearer token, as bytes, without [`bearer_token`]'s checks of
/// the whole value: the token of the one `Authorization` header when it reads `Bearer <token>`
/// (any case, one space, blanks around the token), else `None`. Only used to look the token up
/// among remembered verifications; whatever is found there is a verified token (base64url and
/// dots, as every token that verifies), which `bearer_token` accepts, and around it are only
/// bytes `bearer_token` accepts and trims, so both ways agree (a property test below holds them
/// to it). Anything else takes the full path.
fn plain_bearer_bytes(headers: &HeaderMap) -> Option<&[u8]> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next()?.as_bytes();
    if values.next().is_some() {
        return None;
    }
    let (scheme, credentials) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let blank = |byte: &u8| matches!(byte, b' ' | b'\t');
    let start = credentials.iter().position(|byte| !blank(byte))?;
    let end = credentials.iter().rposition(|byte| !blank(byte))? + 1;
    Some(&credentials[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_authorization(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let headers = with_authorization(&["bearer abc.def.ghi"]);
        assert_eq!(bearer_token(&headers), Ok(Some("abc.def.ghi")));
        let headers = with_authorization(&["BEARER  abc"]);
        assert_eq!(bearer_token(&headers), Ok(Some("abc")));
    }

    #[test]
    fn absence_is_no_token_and_other_schemes_are_refused() {
        assert_eq!(bearer_token(&HeaderMap::new()), Ok(None));
        let not_bearer = Err(GatewayError::InvalidToken(
            "the Authorization header is not a Bearer credential",
        ));
        assert_eq!(
            bearer_token(&with_authorization(&["Basic dTpw"])),
            not_bearer
        );
        assert_eq!(
            bearer_token(&with_authorization(&["Bearer\ttoken"])),
            not_bearer
        );
        assert_eq!(
            bearer_token(&with_authorization(&["Bearertoken"])),
            not_bearer
        );
    }

    #[test]
    fn ambiguous_credentials_are_refused() {
        assert!(bearer_token(&with_authorization(&["Bearer a", "Bearer b"])).is_err());
        assert!(bearer_token(&with_authorization(&["Bearer"])).is_err());
        assert!(bearer_token(&with_authorization(&["Bearer   "])).is_err());
    }

    #[test]
    fn values_that_are_not_visible_ascii_are_refused() {
        let malformed = Err(GatewayError::InvalidToken("malformed Authorization header"));
        for bytes in [&b"Bearer a\x80b"[..], b"Bearer \xc3\xa9", b"Bearer \xff"] {
            let mut headers = HeaderMap::new();
            let value = HeaderValue::from_bytes(bytes).unwrap();
            assert!(value.to_str().is_err());
            headers.insert(AUTHORIZATION, value);
            assert_eq!(bearer_token(&headers), malformed, "{bytes:?}");
        }
        let tabbed = with_authorization(&["Bearer\tx abc"]);
        assert!(bearer_token(&tabbed).is_err(), "not a Bearer credential");
        assert_eq!(
            bearer_token(&with_authorization(&["Bearer abc\t"])),
            Ok(Some("abc"))
        );
    }

    #[test]
    fn the_shortcut_reads_plain_bearer_values() {
        let read =
            |values: &[&str]| plain_bearer_bytes(&with_authorization(values)).map(<[u8]>::to_vec);
        assert_eq!(read(&["Bearer abc.def"]), Some(b"abc.def".to_vec()));
        assert_eq!(read(&["bEaReR \t abc \t"]), Some(b"abc".to_vec()));
        assert_eq!(read(&["Bearer a", "Bearer a"]), None);
        assert_eq!(read(&["Bearer"]), None);
        assert_eq!(read(&["Bearer   "]), None);
        assert_eq!(read(&["Basic abc"]), None);
        assert_eq!(read(&["Bearer\tabc"]), None);
        assert_eq!(read(&[]), None);
    }

    proptest::proptest! {
        /// Whatever token the shortcut reads, as a token that passed `bearer_token` once (visible
        /// ASCII, no blank), the full path reads the same token from the same headers.
        #[test]
        fn the_shortcut_agrees_with_the_full_path(
            values in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::sample::select(vec![
                        &b"Bearer"[..], b"bearer", b"BEARER", b"Basic", b" ", b"\t", b"\x0b",
                        b"\x0c", b"\x80", b"\xc3\xa9", b"tok.en", b"x", b",", b"=",
                    ]),
                    0..8,
                ),
                1..3,
            )
        ) {
            let mut headers = HeaderMap::new();
            for parts in &values {
                let value = parts.concat();
                if let Ok(value) = HeaderValue::from_bytes(&value) {
                    headers.append(AUTHORIZATION, value);
                }
            }
            let Some(token) = plain_bearer_bytes(&headers) else {
                return Ok(());
            };
            // Only tokens that could have been verified are ever found among recent ones.
            let Ok(text) = std::str::from_utf8(token) else {
                return Ok(());
            };
            if !text.bytes().all(|byte| byte.is_ascii_graphic()) {
                return Ok(());
            }
            proptest::prop_assert_eq!(bearer_token(&headers), Ok(Some(text)));
        }
    }
}
