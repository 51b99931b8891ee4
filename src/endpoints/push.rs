//! WeChat's message push (消息推送) for each app with a `[wechat.push]` section: GET is the
//! console's URL check (the `echostr`, once `signature` verifies); POST is a message, verified
//! (`signature` in plain mode, `msg_signature` over the `Encrypt` text otherwise), decrypted
//! (`wechat::push`), converted to JSON and POSTed to the app's backend with `X-App`. WeChat is
//! answered `success` only once the backend took the message (2xx); otherwise 5xx, so WeChat
//! pushes it again. Redeliveries are forwarded once: the message's `MsgId` (or sender, time and
//! event) is claimed in the session store for 10 minutes, fleet-wide, and released when
//! delivery failed. Refusals log one line, never key material or the message.

use std::time::Duration;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value};

use crate::config::{PushConfig, PushFormat, PushMode, WeChatApp};
use crate::http::error::{full_body, Body, BoxError, GatewayError};
use crate::session::unix_now;
use crate::state::AppState;
use crate::wechat::push::{self as crypto, Refused};

mod xml;

/// How long a delivered message is remembered (WeChat retries within about 15 seconds).
const SEEN_FOR: Duration = Duration::from_secs(600);

/// Answers WeChat's push to `app`.
pub(crate) async fn handle<B>(
    state: &AppState,
    app: &WeChatApp,
    request: Request<B>,
) -> Result<Response<Body>, GatewayError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let Some(push) = &app.push else {
        return Err(GatewayError::NotFound);
    };
    let query = Query::of(request.uri().query().unwrap_or_default());
    check_timestamp(push, &query.timestamp)?;
    let token = push.token.expose();
    let plain_signed =
        || crypto::signature_matches(&query.signature, &[token, &query.timestamp, &query.nonce]);
    match *request.method() {
        Method::GET => {
            if !plain_signed() {
                return Err(refuse(app, "the URL check's signature does not verify"));
            }
            Ok(text(StatusCode::OK, query.echostr))
        }
        Method::POST => {
            let body = crate::client::read_limited(state, request.into_body()).await?;
            let message = match push.mode {
                PushMode::Plain if plain_signed() => body.to_vec(),
                PushMode::Plain => return Err(refuse(app, "the push's signature does not verify")),
                PushMode::Safe | PushMode::Compatible => open(app, push, &query, &body)?,
            };
            let message = parse(push.format, &message).ok_or_else(|| {
                malformed(app, "the push is not a message in the configured format")
            })?;
            deliver(state, app, push, message).await
        }
        _ => Err(GatewayError::MethodNotAllowed { allow: "GET, POST" }),
    }
}

/// The query WeChat signs its pushes with.
#[derive(Default)]
struct Query {
    signature: String,
    msg_signature: String,
    timestamp: String,
    nonce: String,
    echostr: String,
}

impl Query {
    fn of(query: &str) -> Query {
        let mut parsed = Query::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "signature" => &mut parsed.signature,
                "msg_signature" => &mut parsed.msg_signature,
                "timestamp" => &mut parsed.timestamp,
                "nonce" => &mut parsed.nonce,
                "echostr" => &mut parsed.echostr,
                _ => continue,
            };
            *slot = value.into_owned();
        }
        parsed
    }
}

/// Refuses a timestamp further than `max_age_secs` from now: a replayed push.
fn check_timestamp(push: &PushConfig, timestamp: &str) -> Result<(), GatewayError> {
    let sent: u64 = timestamp
        .parse()
        .map_err(|_| GatewayError::PushRefused("the push has no timestamp"))?;
    if unix_now().abs_diff(sent) > push.max_age.as_secs() {
        tracing::warn!(
            "a push's timestamp is outside wechat.push.max_age_secs; refused as a replay"
        );
        return Err(GatewayError::PushRefused(
            "the push's timestamp is too far from now (a replay?)",
        ));
    }
    Ok(())
}

/// The message inside an encrypted push, once `msg_signature` verifies.
fn open(
    app: &WeChatApp,
    push: &PushConfig,
    query: &Query,
    body: &[u8],
) -> Result<Vec<u8>, GatewayError> {
    let envelope = parse(push.format, body)
        .ok_or_else(|| malformed(app, "the push is not an envelope in the configured format"))?;
    let encrypted = envelope
        .get("Encrypt")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(app, "the push has no Encrypt"))?;
    let parts = [
        push.token.expose(),
        &query.timestamp,
        &query.nonce,
        encrypted,
    ];
    if !crypto::signature_matches(&query.msg_signature, &parts) {
        return Err(refuse(app, "the push's msg_signature does not verify"));
    }
    let key = push.aes_key.as_ref().ok_or(GatewayError::Internal(
        "an encrypted push mode without a key",
    ))?;
    crypto::decrypt(key, encrypted, &app.appid).map_err(|refused| {
        malformed(
            app,
            match refused {
                Refused::Malformed => "the push's Encrypt is not base64 of whole AES blocks",
                Refused::BadPadding => "the push does not decrypt (bad padding: another key?)",
                Refused::BadFrame => "the push's decrypted length does not fit",
                Refused::WrongApp => "the push is for another app (appid)",
            },
        )
    })
}

/// A message or envelope as a JSON object: JSON as it is, XML converted.
fn parse(format: PushFormat, bytes: &[u8]) -> Option<Map<String, Value>> {
    match format {
        PushFormat::Json => match serde_json::from_slice(bytes).ok()? {
            Value::Object(object) => Some(object),
            _ => None,
        },
        PushFormat::Xml => xml::to_json(bytes),
    }
}

/// Forwards the message once: a redelivery of a message already delivered is answered
/// `success` without forwarding; a failed delivery is forgotten, so WeChat's retry gets through.
async fn deliver(
    state: &AppState,
    app: &WeChatApp,
    push: &PushConfig,
    message: Map<String, Value>,
) -> Result<Response<Body>, GatewayError> {
    let claim = format!("push:{}:{}", app.appid, identity_of(&message));
    let claimed = match state.sessions.claim(&claim, SEEN_FOR).await {
        Ok(true) => true,
        Ok(false) => {
            tracing::info!(app = %app.name, "a push already delivered was pushed again; answered success");
            return Ok(text(StatusCode::OK, "success".into()));
        }
        Err(error) => {
            tracing::warn!(%error, "session store unavailable; delivering the push without deduplication");
            false
        }
    };
    let delivered = state
        .wechat
        .deliver_push(
            &push.upstream,
            &app.name,
            &Value::Object(message),
            push.timeout,
        )
        .await;
    if let Err(error) = delivered {
        if claimed {
            if let Err(store) = state.sessions.release_claim(&claim).await {
                tracing::warn!(error = %store, "could not release a failed push's claim");
            }
        }
        return Err(error);
    }
    Ok(text(StatusCode::OK, "success".into()))
}

/// What tells a message from its redeliveries: `MsgId`, or for events the sender, time and event.
fn identity_of(message: &Map<String, Value>) -> String {
    let field = |name: &str| match message.get(name) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => String::new(),
    };
    let msg_id = field("MsgId");
    if msg_id.is_empty() {
        format!(
            "{}:{}:{}",
            field("FromUserName"),
            field("CreateTime"),
            field("Event")
        )
    } else {
        format!("msg:{msg_id}")
    }
}

/// A refused signature or timestamp, logged once without key material.
fn refuse(app: &WeChatApp, why: &'static str) -> GatewayError {
    tracing::warn!(app = %app.name, why, "a message push was refused");
    GatewayError::PushRefused(why)
}

/// A push that does not decrypt or parse, logged once without key material.
fn malformed(app: &WeChatApp, why: &'static str) -> GatewayError {
    tracing::warn!(app = %app.name, why, "a message push was refused");
    GatewayError::PushMalformed(why)
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
