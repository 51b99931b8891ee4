//! The one error type of the request path, its one status mapping, and the one place that turns an
//! error into the JSON response a client sees: `{"error": "<code>", "message": "<text>"}`.
//!
//! Messages are written for the mini-program developer reading them; none of them ever carries a
//! secret, a token or a WeChat `session_key` (the variants hold no such data to begin with).

use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

pub(crate) use crate::http::body::{full_body, json_response};
pub use crate::http::body::{Body, BoxError};

/// How long a client told to slow down (WeChat 45011) should wait, in seconds.
const RATE_LIMIT_RETRY_AFTER_SECS: &str = "60";

/// Everything that can go wrong while the gateway answers a request.
///
/// Each variant maps to exactly one HTTP status and one stable snake_case `error` code, which are
/// part of the public interface: clients branch on the code.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum GatewayError {
    /// The request path cannot be normalized safely (encoded `/` or `\`, `..` above the root, NUL...).
    #[error("the request path is not allowed: {0}")]
    InvalidPath(&'static str),
    /// No configured route covers the path.
    #[error("no route matches this path")]
    NotFound,
    /// The endpoint exists but not for this method.
    #[error("method not allowed; use {allow}")]
    MethodNotAllowed {
        /// The value of the `Allow` header sent back.
        allow: &'static str,
    },
    /// The body could not be parsed (bad JSON, bad form encoding, wrong shape).
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// The client's request body broke off or was malformed (bad chunked framing) while it was
    /// forwarded: the client's fault, not the upstream's.
    #[error("the request body was malformed or cut off")]
    InvalidRequestBody,
    /// The request body did not arrive within `server.body_read_timeout_ms` (the whole body for
    /// the gateway's own endpoints; between two chunks for a forwarded body).
    #[error("the request body did not arrive in time")]
    BodyReadTimeout,
    /// The login body has no usable `code`.
    #[error("the login body needs a non-empty \"code\" from wx.login()")]
    MissingCode,
    /// The request body is larger than `server.max_body_bytes`.
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit, for the message.
        limit: u64,
    },
    /// A route with `auth = "required"` was called without a bearer token.
    #[error("this path needs an Authorization: Bearer token; log in first")]
    MissingToken,
    /// A bearer token was presented but is not valid.
    #[error("the bearer token is not valid ({0}); log in again")]
    InvalidToken(&'static str),
    /// WeChat 40029 (QQ 40029, Douyin 40018/40019): the code is invalid or expired.
    #[error("the platform rejected the login code as invalid, expired or used (WeChat and QQ 40029, Douyin 40018, Baidu invalid_grant); call the login API again (wx.login, qq.login, tt.login, swan.login, ks.login)")]
    WeChatInvalidCode,
    /// WeChat 40163: the code was already used.
    #[error("this login code was already used (errcode 40163); call wx.login() again")]
    WeChatCodeUsed,
    /// WeChat 40226: a high-risk user WeChat blocks from logging in.
    #[error("WeChat refused to log this user in (errcode 40226)")]
    WeChatUserBlocked,
    /// WeChat 45011: too many logins for this user.
    #[error("too many login attempts (errcode 45011); slow down and try again later")]
    WeChatRateLimited,
    /// WeChat -1: WeChat is busy.
    #[error("WeChat is busy (errcode -1); try again shortly")]
    WeChatBusy,
    /// WeChat was busy (-1), the call was retried, and the retry found the single-use code
    /// invalid or used: the first attempt may have spent it. 503: get a new code and try again.
    #[error("WeChat was busy and may have used up this code; get a new code and try again")]
    WeChatBusyCodeSpent,
    /// WeChat says the gateway itself is misconfigured (appid, AppSecret, IP whitelist).
    #[error("the gateway's WeChat configuration was rejected (errcode {0}); contact the operator")]
    WeChatConfigRejected(i64),
    /// Any other WeChat errcode.
    #[error("WeChat returned errcode {0}")]
    WeChatOther(i64),
    /// WeChat answered something that is not a usable code2session answer.
    #[error("WeChat returned an answer the gateway could not understand")]
    WeChatBadAnswer,
    /// The circuit breaker is open: WeChat has been failing, so the call is refused at once.
    #[error("WeChat is failing at the moment; try again in {retry_after_secs} s")]
    WeChatUnavailable {
        /// Seconds until the breaker lets a probe through (the Retry-After header).
        retry_after_secs: u64,
    },
    /// A gateway rate limit (logins per client IP, a route's per-user limit) is used up.
    #[error("too many requests; try again in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until the bucket holds a request again (the Retry-After header).
        retry_after_secs: u64,
    },
    /// WeChat could not be reached.
    #[error("WeChat could not be reached")]
    WeChatUnreachable,
    /// WeChat did not answer within `wechat.timeout_ms`.
    #[error("WeChat did not answer in time")]
    WeChatTimeout,
    /// The route's upstream refused or dropped the connection.
    #[error("the upstream service could not be reached")]
    UpstreamUnreachable,
    /// The upstream did not send response headers within the route's timeout.
    #[error("the upstream service did not answer in time")]
    UpstreamTimeout,
    /// `upstream.max_in_flight` requests are already waiting on upstreams: refused at once.
    #[error("the gateway is at its limit of requests in flight to upstreams; try again shortly")]
    UpstreamBusy,
    /// `server.endpoint_max_in_flight` requests to the gateway's own endpoints are being
    /// answered: refused at once.
    #[error(
        "the gateway is at its limit of login and session requests in flight; try again shortly"
    )]
    EndpointBusy,
    /// The upstream broke the exchange after the connection was made.
    #[error("the upstream service failed to answer")]
    UpstreamFailed,
    /// The token is fine but its login session is gone (logged out, expired, or forgotten by a
    /// restarted in-memory gateway): refresh and decryption need it.
    #[error("the login session has ended (logged out or expired); log in again with wx.login()")]
    SessionExpired,
    /// `/wx/session/check` found the session's session_key no longer current at WeChat: data
    /// encrypted for the user cannot be decrypted until a new login.
    #[error("WeChat no longer accepts this login's session_key; call wx.login() and log in again")]
    SessionKeyStale,
    /// Encrypted user data could not be decrypted or verified; the message says what to do.
    #[error("{0}")]
    UndecryptableData(&'static str),
    /// WeChat refused the getPhoneNumber code (40029).
    #[error("the phone number code is invalid or expired; ask the user again (getPhoneNumber)")]
    InvalidPhoneCode,
    /// The login names an app that is not configured.
    #[error("no mini-program of that name is configured")]
    UnknownApp,
    /// The `[wechat_api]` listener refused the call: a caller outside loopback and
    /// `wechat_api.allow`, or an API that would hand out the access_token.
    #[error("{0}")]
    Forbidden(&'static str),
    /// A message push whose signature does not verify or whose timestamp is too old.
    #[error("{0}")]
    PushRefused(&'static str),
    /// A message push that does not decrypt or parse (bad padding, another app's, not a message).
    #[error("{0}")]
    PushMalformed(&'static str),
    /// The endpoint uses an API the app's platform does not have here (phone numbers by code,
    /// checksession and the WeChat API listener are WeChat's).
    #[error("{0}")]
    PlatformNotSupported(&'static str),
    /// The token belongs to a mini-program this route does not serve.
    #[error("this path does not serve the mini-program the token was issued for")]
    AppNotAllowed,
    /// The session store cannot be reached and the policy is to refuse.
    #[error("the session store is unavailable; try again shortly")]
    SessionStoreUnavailable,
    /// HTTP/2 on a listener where it is not enabled (`server.http2` / `server.h2c`).
    #[error("HTTP/2 is not enabled on this listener; use HTTP/1.1")]
    HttpVersionNotSupported,
    /// Something that should not fail did (no randomness, signing failed); details are logged.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl GatewayError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            InvalidPath(_)
            | InvalidRequest(_)
            | InvalidRequestBody
            | MissingCode
            | UndecryptableData(_)
            | InvalidPhoneCode
            | PushMalformed(_)
            | PlatformNotSupported(_) => StatusCode::BAD_REQUEST,
            BodyReadTimeout => StatusCode::REQUEST_TIMEOUT,
            NotFound | UnknownApp => StatusCode::NOT_FOUND,
            AppNotAllowed | Forbidden(_) => StatusCode::FORBIDDEN,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            MissingToken | InvalidToken(_) | SessionExpired | SessionKeyStale | PushRefused(_)
            | WeChatInvalidCode | WeChatCodeUsed => StatusCode::UNAUTHORIZED,
            WeChatUserBlocked => StatusCode::FORBIDDEN,
            WeChatRateLimited | RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            WeChatBusy
            | WeChatConfigRejected(_)
            | WeChatOther(_)
            | WeChatBadAnswer
            | WeChatUnreachable
            | UpstreamUnreachable
            | UpstreamFailed => StatusCode::BAD_GATEWAY,
            WeChatTimeout | UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            SessionStoreUnavailable
            | UpstreamBusy
            | EndpointBusy
            | WeChatBusyCodeSpent
            | WeChatUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            HttpVersionNotSupported => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
        }
    }

    /// The stable machine-readable code placed in the `error` field.
    pub fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            InvalidPath(_) => "invalid_path",
            NotFound => "not_found",
            MethodNotAllowed { .. } => "method_not_allowed",
            InvalidRequest(_) => "invalid_request",
            InvalidRequestBody => "invalid_request_body",
            BodyReadTimeout => "body_read_timeout",
            MissingCode => "missing_code",
            PayloadTooLarge { .. } => "payload_too_large",
            MissingToken => "missing_token",
            InvalidToken(_) => "invalid_token",
            WeChatInvalidCode => "invalid_code",
            WeChatCodeUsed => "code_already_used",
            WeChatUserBlocked => "user_blocked",
            WeChatRateLimited | RateLimited { .. } => "rate_limited",
            WeChatUnavailable { .. } => "wechat_unavailable",
            WeChatBusy | WeChatBusyCodeSpent => "wechat_busy",
            WeChatConfigRejected(_) => "wechat_config_rejected",
            WeChatOther(_) => "wechat_error",
            WeChatBadAnswer => "wechat_bad_answer",
            WeChatUnreachable => "wechat_unreachable",
            WeChatTimeout => "wechat_timeout",
            UpstreamUnreachable => "upstream_unreachable",
            UpstreamTimeout => "upstream_timeout",
            UpstreamFailed => "upstream_error",
            UpstreamBusy => "upstream_busy",
            EndpointBusy => "endpoint_busy",
            SessionExpired => "session_expired",
            SessionKeyStale => "session_key_stale",
            UnknownApp => "unknown_app",
            InvalidPhoneCode => "invalid_phone_code",
            AppNotAllowed => "app_not_allowed",
            Forbidden(_) => "forbidden",
            PushRefused(_) => "push_refused",
            PushMalformed(_) => "push_malformed",
            PlatformNotSupported(_) => "platform_not_supported",
            UndecryptableData(_) => "decrypt_failed",
            SessionStoreUnavailable => "session_store_unavailable",
            Internal(_) => "internal_error",
            HttpVersionNotSupported => "http_version_not_supported",
        }
    }

    /// The WeChat errcode behind this error, for the login metrics.
    pub(crate) fn wechat_errcode(&self) -> Option<i64> {
        use GatewayError::*;
        match self {
            WeChatInvalidCode => Some(40029),
            WeChatCodeUsed => Some(40163),
            WeChatUserBlocked => Some(40226),
            WeChatRateLimited => Some(45011),
            WeChatBusy | WeChatBusyCodeSpent => Some(-1),
            WeChatConfigRejected(code) | WeChatOther(code) => Some(*code),
            _ => None,
        }
    }

    /// Builds the JSON error response, with the headers the status calls for.
    pub fn into_response(self) -> Response<Body> {
        let body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        let mut response = json_response(self.status(), &body);
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            GatewayError::MissingToken => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="wxgate""#),
                );
            }
            GatewayError::InvalidToken(_) | GatewayError::SessionExpired => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="wxgate", error="invalid_token""#),
                );
            }
            GatewayError::MethodNotAllowed { allow } => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            GatewayError::SessionStoreUnavailable
            | GatewayError::UpstreamBusy
            | GatewayError::EndpointBusy
            | GatewayError::WeChatBusyCodeSpent => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            GatewayError::WeChatRateLimited => {
                headers.insert(
                    RETRY_AFTER,
                    HeaderValue::from_static(RATE_LIMIT_RETRY_AFTER_SECS),
                );
            }
            GatewayError::RateLimited { retry_after_secs }
            | GatewayError::WeChatUnavailable { retry_after_secs } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn error_response_is_json_with_code_and_message() {
        let response = GatewayError::InvalidToken("token expired").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            r#"Bearer realm="wxgate", error="invalid_token""#
        );
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["error"], "invalid_token");
        assert!(json["message"].as_str().unwrap().contains("token expired"));
    }

    #[test]
    fn every_wechat_error_class_has_the_documented_status() {
        assert_eq!(GatewayError::WeChatInvalidCode.status(), 401);
        assert_eq!(GatewayError::WeChatCodeUsed.status(), 401);
        assert_eq!(GatewayError::WeChatUserBlocked.status(), 403);
        assert_eq!(GatewayError::WeChatRateLimited.status(), 429);
        assert_eq!(GatewayError::WeChatBusy.status(), 502);
        assert_eq!(GatewayError::WeChatBadAnswer.status(), 502);
        assert_eq!(GatewayError::WeChatUnreachable.status(), 502);
        assert_eq!(GatewayError::WeChatTimeout.status(), 504);
    }

    /// One error of each kind. The match makes this fail to compile when a kind is added here
    /// not: a new error code cannot skip the documentation check below.
    fn one_of_each() -> Vec<GatewayError> {
        use GatewayError::*;
        let all = vec![
            InvalidPath(""),
            NotFound,
            MethodNotAllowed { allow: "POST" },
            InvalidRequest(""),
            InvalidRequestBody,
            BodyReadTimeout,
            UpstreamBusy,
            EndpointBusy,
            MissingCode,
            PayloadTooLarge { limit: 1 },
            MissingToken,
            InvalidToken(""),
            WeChatInvalidCode,
            WeChatCodeUsed,
            WeChatUserBlocked,
            WeChatRateLimited,
            WeChatBusy,
            WeChatBusyCodeSpent,
            WeChatConfigRejected(40013),
            WeChatOther(1),
            WeChatBadAnswer,
            WeChatUnavailable {
                retry_after_secs: 1,
            },
            RateLimited {
                retry_after_secs: 1,
            },
            WeChatUnreachable,
            WeChatTimeout,
            UpstreamUnreachable,
            UpstreamTimeout,
            UpstreamFailed,
            SessionExpired,
            SessionKeyStale,
            UndecryptableData(""),
            InvalidPhoneCode,
            UnknownApp,
            AppNotAllowed,
            Forbidden(""),
            PushRefused(""),
            PushMalformed(""),
            PlatformNotSupported(""),
            SessionStoreUnavailable,
            HttpVersionNotSupported,
            Internal(""),
        ];
        for error in &all {
            match error {
                InvalidPath(_)
                | NotFound
                | MethodNotAllowed { .. }
                | InvalidRequest(_)
                | InvalidRequestBody
                | BodyReadTimeout
                | UpstreamBusy
                | EndpointBusy
                | MissingCode
                | PayloadTooLarge { .. }
                | MissingToken
                | InvalidToken(_)
                | WeChatInvalidCode
                | WeChatCodeUsed
                | WeChatUserBlocked
                | WeChatRateLimited
                | WeChatBusy
                | WeChatBusyCodeSpent
                | WeChatConfigRejected(_)
                | WeChatOther(_)
                | WeChatBadAnswer
                | WeChatUnavailable { .. }
                | RateLimited { .. }
                | WeChatUnreachable
                | WeChatTimeout
                | UpstreamUnreachable
                | UpstreamTimeout
                | UpstreamFailed
                | SessionExpired
                | SessionKeyStale
                | UndecryptableData(_)
                | InvalidPhoneCode
                | UnknownApp
                | AppNotAllowed
                | Forbidden(_)
                | PushRefused(_)
                | PushMalformed(_)
                | PlatformNotSupported(_)
                | SessionStoreUnavailable
                | HttpVersionNotSupported
                | Internal(_) => {}
            }
        }
        all
    }

    /// Catches an error code that clients would meet undocumented: every code is in openapi.yaml's
    /// Error schema and in the README's error table, with its status.
    #[test]
    fn every_error_code_is_documented_in_openapi_yaml_and_the_readme() {
        let openapi = include_str!("../../openapi.yaml");
        let readme = include_str!("../../README.md");
        for error in one_of_each() {
            let code = error.code();
            assert!(
                openapi.contains(&format!("            - {code}\n")),
                "{code} is not in openapi.yaml's Error enum"
            );
            let row = format!("| {} | `{code}` |", error.status().as_u16());
            assert!(readme.contains(&row), "README has no row {row}");
        }
    }
}
