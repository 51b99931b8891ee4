//! The mini-program platforms' API client: code2session, with timeouts and the errcode -> error
//! mapping described in `shared/wechat-api.md` (WeChat, and QQ, which copies its API on another
//! host) and `shared/platforms.md` (Douyin, in `douyin.rs`); WeChat's access_token APIs, its API
//! proxy and its message push crypto. One circuit breaker per API host.
//!
//! The AppSecret travels in the code2session URL, so that URL must never be logged: errors are
//! stripped of their URL before they go anywhere, redirects are not followed, and no `log` bridge is
//! installed (reqwest logs request URLs at debug level through `log`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::config::{Platform, Secret, WeChatApp, WeChatConfig};
use crate::http::error::GatewayError;
use crate::metrics::Metrics;
use crate::telemetry::ChildSpan;
use opentelemetry::trace::SpanKind;

mod access_token;
pub(crate) mod alipay;
pub(crate) mod baidu;
mod breaker;
mod douyin;
mod forward;
mod kuaishou;
pub(crate) mod pkcs7;
pub(crate) mod push;
pub(crate) use access_token::{TokenAnswer, STALE_TOKEN};
pub(crate) use forward::{ApiAnswer, ApiRequest};

/// The largest code2session answer read; real ones are a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Calls the WeChat API on the gateway's behalf, with the app's credentials, behind one circuit
/// breaker, retrying once where that is safe.
#[derive(Debug)]
pub(crate) struct WeChatClient {
    http: reqwest::Client,
    retry_backoff: Duration,
    /// One breaker per API host (`host:port`): one platform failing leaves the others alone.
    breakers: Vec<(String, breaker::Breaker)>,
    /// Each Alipay app's keys, by appid.
    alipay: HashMap<String, alipay::AlipayKeys>,
    metrics: Arc<Metrics>,
}

/// A failed exchange, and whether it failed before the request left (safe to send again).
struct FetchError {
    error: GatewayError,
    before_sending: bool,
}

/// What a successful code2session gives.
#[derive(Debug)]
pub(crate) struct Code2Session {
    /// The user's openid.
    pub(crate) openid: String,
    /// The key WeChat uses to sign and encrypt this user's data; stays in the gateway.
    pub(crate) session_key: Secret,
    /// The user's unionid, when the app is bound to an Open Platform account.
    pub(crate) unionid: Option<String>,
}

/// The code2session answer as WeChat sends it (JSON, whatever its Content-Type says).
#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    openid: Option<String>,
    session_key: Option<String>,
    unionid: Option<String>,
}

impl WeChatClient {
    /// Builds the client for the configured API base, timeouts and breaker.
    pub(crate) fn new(
        config: &WeChatConfig,
        alipay: HashMap<String, alipay::AlipayKeys>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wxgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("cannot build the WeChat HTTP client: {error}"))?;
        let mut breakers: Vec<(String, breaker::Breaker)> = Vec::new();
        for host in api_hosts(config) {
            if !breakers.iter().any(|(known, _)| *known == host) {
                let breaker = breaker::Breaker::new(config.breaker_threshold, config.breaker_open);
                breakers.push((host, breaker));
            }
        }
        Ok(WeChatClient {
            http,
            retry_backoff: config.retry_backoff,
            breakers,
            alipay,
            metrics,
        })
    }

    /// Whether this client can serve `config` as it is (same API base and timeouts), keeping its
    /// breaker and connections across a config reload.
    pub(crate) fn serves(&self, config: &WeChatConfig, previous: &WeChatConfig) -> bool {
        let bases = |config: &WeChatConfig| -> Vec<String> { api_hosts(config).collect() };
        // Alipay's keys are read again at every reload: a client holding them is not kept.
        let no_alipay = |config: &WeChatConfig| config.apps.iter().all(|app| app.alipay.is_none());
        no_alipay(config)
            && no_alipay(previous)
            && bases(config) == bases(previous)
            && previous.timeout == config.timeout
            && previous.retry_backoff == config.retry_backoff
            && previous.breaker_threshold == config.breaker_threshold
            && previous.breaker_open == config.breaker_open
    }

    /// Exchanges a login code of `app` (wx.login, qq.login, tt.login) for the user's openid and
    /// session_key, the way `app`'s platform does it.
    pub(crate) async fn code2session(
        &self,
        app: &WeChatApp,
        code: &str,
    ) -> Result<Code2Session, GatewayError> {
        match app.platform {
            Platform::Douyin => return self.douyin_code2session(app, code).await,
            Platform::Baidu => return self.baidu_code2session(app, code).await,
            Platform::Kuaishou => return self.kuaishou_code2session(app, code).await,
            Platform::Alipay => return self.alipay_code2session(app, code).await,
            Platform::WeChat | Platform::Qq => {}
        }
        let mut url = api_url(&app.api_base, "/sns/jscode2session");
        url.query_pairs_mut()
            .append_pair("appid", &app.appid)
            .append_pair("secret", app.secret.expose())
            .append_pair("js_code", code)
            .append_pair("grant_type", "authorization_code");
        let api = match app.platform {
            Platform::Qq => "qq_code2session",
            _ => "code2session",
        };
        self.call(api, &app.api_base, || self.http.get(url.clone()), interpret)
            .await
    }

    /// One API call: through the breaker (503 at once while it is open), timed, retried once
    /// after a short backoff when WeChat said -1 (busy) or could not be connected to (nothing was
    /// sent, so a single-use code is not spent).
    async fn call<A, T>(
        &self,
        api: &'static str,
        base: &reqwest::Url,
        request: impl Fn() -> reqwest::RequestBuilder,
        interpret: impl Fn(A) -> Result<T, GatewayError>,
    ) -> Result<T, GatewayError>
    where
        A: DeserializeOwned,
    {
        let breaker = self
            .breaker_for(base)
            .ok_or(GatewayError::Internal("no app, so no WeChat API host"))?;
        let permit = breaker.admit().map_err(|wait| {
            self.metrics.count_circuit_rejection(api);
            GatewayError::WeChatUnavailable {
                retry_after_secs: crate::rate_limit::retry_after_secs(wait),
            }
        })?;
        let mut outcome = self.attempt(api, &request, &interpret).await;
        if let Err((first, true)) = &outcome {
            let after_busy = *first == GatewayError::WeChatBusy;
            self.metrics.count_wechat_retry(api);
            tokio::time::sleep(jittered(self.retry_backoff)).await;
            outcome = self.attempt(api, &request, &interpret).await;
            if after_busy {
                outcome = outcome.map_err(|(error, retry)| (code_spent_by_busy(error), retry));
            }
        }
        let outcome = outcome.map_err(|(error, _)| error);
        let outage = matches!(
            outcome,
            Err(GatewayError::WeChatBusy
                | GatewayError::WeChatBusyCodeSpent
                | GatewayError::WeChatUnreachable
                | GatewayError::WeChatTimeout
                | GatewayError::WeChatBadAnswer)
        );
        permit.record(!outage);
        self.metrics.wechat_circuit_open.set(i64::from(
            self.breakers.iter().any(|(_, breaker)| breaker.is_open()),
        ));
        outcome
    }

    /// The breaker of the host `base` names (every configured app's host has one).
    fn breaker_for(&self, base: &reqwest::Url) -> Option<&breaker::Breaker> {
        let host = host_of(base);
        let found = self.breakers.iter().find(|(known, _)| *known == host);
        found.or(self.breakers.first()).map(|(_, breaker)| breaker)
    }

    /// One attempt; the error says whether a retry is worth it.
    async fn attempt<A, T>(
        &self,
        api: &'static str,
        request: &impl Fn() -> reqwest::RequestBuilder,
        interpret: &impl Fn(A) -> Result<T, GatewayError>,
    ) -> Result<T, (GatewayError, bool)>
    where
        A: DeserializeOwned,
    {
        // A span per attempt of a traced request: the API's name, never the URL (it may carry
        // the AppSecret, the code or an access_token).
        let span = ChildSpan::start(api, SpanKind::Client);
        let started = Instant::now();
        let fetched = self.fetch(request()).await;
        self.metrics.observe_wechat(api, started.elapsed());
        let interpreted = fetched
            .map_err(|failed| (failed.error, failed.before_sending))
            .and_then(|body| {
                let answer: A = serde_json::from_slice(&body).map_err(|_| {
                    tracing::warn!(api, "a WeChat API answered something that is not JSON");
                    (GatewayError::WeChatBadAnswer, false)
                })?;
                interpret(answer).map_err(|error| {
                    let busy = error == GatewayError::WeChatBusy;
                    (error, busy)
                })
            });
        if let Err((error, _)) = &interpreted {
            span.fail(error.code());
        }
        interpreted
    }

    /// Sends a request and reads the answer body, bounded in size and time.
    async fn fetch(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, FetchError> {
        let mut response = request
            .send()
            .await
            .map_err(|error| transport_error(error, "call"))?;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| transport_error(error, "read the answer of"))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                tracing::warn!("a WeChat answer is larger than {MAX_ANSWER_BYTES} bytes");
                return Err(FetchError {
                    error: GatewayError::WeChatBadAnswer,
                    before_sending: false,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The error of a retry that followed WeChat's -1: a single-use code found invalid or used then
/// may have been spent by the busy attempt, which is WeChat's fault, not the client's.
fn code_spent_by_busy(error: GatewayError) -> GatewayError {
    match error {
        GatewayError::WeChatInvalidCode
        | GatewayError::WeChatCodeUsed
        | GatewayError::InvalidPhoneCode => {
            tracing::warn!(
                "WeChat was busy, then refused the code on the retry: it may have spent it"
            );
            GatewayError::WeChatBusyCodeSpent
        }
        other => other,
    }
}

/// `base` scaled by a random factor in [0.5, 1.5), so replicas retrying together spread out.
fn jittered(base: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let random = getrandom::fill(&mut byte).map_or(128, |()| byte[0]);
    base.mul_f64(0.5 + f64::from(random) / 256.0)
}

impl WeChatClient {
    /// A form-encoded POST of `pairs` to `url` (Baidu's and Kuaishou's logins).
    fn post_form(&self, url: &reqwest::Url, pairs: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.http
            .post(url.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
    }
}

/// Every API host the apps call (Baidu's two among them), each once per app.
fn api_hosts(config: &WeChatConfig) -> impl Iterator<Item = String> + '_ {
    config
        .apps
        .iter()
        .flat_map(|app| [host_of(&app.api_base), host_of(app.server_api_base())])
}

/// The breaker key of an API base: `host:port`.
fn host_of(base: &reqwest::Url) -> String {
    format!(
        "{}:{}",
        base.host_str().unwrap_or_default(),
        base.port_or_known_default().unwrap_or_default()
    )
}

/// `path` under the API base (which may carry a path prefix of its own).
fn api_url(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut url = base.clone();
    let base_path = base.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{base_path}{path}"));
    url
}

/// Maps a reqwest failure, logging it without its URL (which holds the AppSecret or an
/// access_token).
fn transport_error(error: reqwest::Error, doing: &str) -> FetchError {
    let timed_out = error.is_timeout();
    let before_sending = error.is_connect() && !timed_out;
    let error = error.without_url();
    tracing::warn!(error = %error, "could not {doing} the WeChat API");
    FetchError {
        error: if timed_out {
            GatewayError::WeChatTimeout
        } else {
            GatewayError::WeChatUnreachable
        },
        before_sending,
    }
}

/// errcodes that only an operator can clear: a wrong appid or AppSecret (40013, 40125, 41002,
/// 41004), a caller IP off the whitelist (40164) or awaiting confirmation (89501, 89503, 89506,
/// 89507), the app's daily quota spent (45009).
fn needs_an_operator(code: i64) -> bool {
    matches!(
        code,
        40013 | 40125 | 40164 | 41002 | 41004 | 45009 | 89501 | 89503 | 89506 | 89507
    )
}

/// The error for an errcode that [`needs_an_operator`], logged at error for the operator.
fn config_rejected(api: &str, code: i64, errmsg: &str) -> GatewayError {
    tracing::error!(errcode = code, %errmsg, api, "WeChat refused the gateway itself (appid, AppSecret, IP whitelist or daily quota); an operator must act");
    GatewayError::WeChatConfigRejected(code)
}

/// Applies the errcode table of `shared/wechat-api.md`.
fn interpret(answer: Answer) -> Result<Code2Session, GatewayError> {
    let error = match answer.errcode {
        0 => {
            return match (answer.openid, answer.session_key) {
                (Some(openid), Some(session_key))
                    if !openid.is_empty() && !session_key.is_empty() =>
                {
                    Ok(Code2Session {
                        openid,
                        session_key: Secret::new(session_key),
                        unionid: answer.unionid.filter(|unionid| !unionid.is_empty()),
                    })
                }
                _ => {
                    tracing::warn!("code2session success lacks openid or session_key");
                    Err(GatewayError::WeChatBadAnswer)
                }
            };
        }
        40029 => GatewayError::WeChatInvalidCode,
        40163 => GatewayError::WeChatCodeUsed,
        40226 => GatewayError::WeChatUserBlocked,
        45011 => GatewayError::WeChatRateLimited,
        -1 => GatewayError::WeChatBusy,
        code if needs_an_operator(code) => {
            return Err(config_rejected("code2session", code, &answer.errmsg));
        }
        code => GatewayError::WeChatOther(code),
    };
    tracing::info!(errcode = answer.errcode, errmsg = %answer.errmsg, "code2session refused the code");
    Err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> Result<Code2Session, GatewayError> {
        interpret(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn success_with_or_without_errcode_zero() {
        let ok = answer(r#"{"openid":"o1","session_key":"k","unionid":"u1"}"#).unwrap();
        assert_eq!(
            (ok.openid.as_str(), ok.unionid.as_deref()),
            ("o1", Some("u1"))
        );
        let ok =
            answer(r#"{"errcode":0,"errmsg":"ok","openid":"o1","session_key":"k","x":1}"#).unwrap();
        assert_eq!(ok.unionid, None);
    }

    #[test]
    fn success_needs_openid_and_session_key() {
        assert_eq!(
            answer(r#"{"openid":"o1"}"#).err(),
            Some(GatewayError::WeChatBadAnswer)
        );
        assert_eq!(
            answer(r#"{"session_key":"k"}"#).err(),
            Some(GatewayError::WeChatBadAnswer)
        );
        assert_eq!(
            answer(r#"{"openid":"","session_key":"k"}"#).err(),
            Some(GatewayError::WeChatBadAnswer)
        );
    }

    #[test]
    fn errcodes_map_to_their_errors() {
        let cases = [
            (40029, GatewayError::WeChatInvalidCode),
            (40163, GatewayError::WeChatCodeUsed),
            (40226, GatewayError::WeChatUserBlocked),
            (45011, GatewayError::WeChatRateLimited),
            (-1, GatewayError::WeChatBusy),
            (40125, GatewayError::WeChatConfigRejected(40125)),
            (40164, GatewayError::WeChatConfigRejected(40164)),
            (45009, GatewayError::WeChatConfigRejected(45009)),
            (89501, GatewayError::WeChatConfigRejected(89501)),
            (89503, GatewayError::WeChatConfigRejected(89503)),
            (89506, GatewayError::WeChatConfigRejected(89506)),
            (89507, GatewayError::WeChatConfigRejected(89507)),
            (99999, GatewayError::WeChatOther(99999)),
        ];
        for (code, expected) in cases {
            let json = format!(r#"{{"errcode":{code},"errmsg":"x, rid: 1"}}"#);
            assert_eq!(answer(&json).err(), Some(expected), "{code}");
        }
    }

    #[test]
    fn debug_output_hides_the_session_key() {
        let ok = answer(r#"{"openid":"o1","session_key":"SESSIONKEY"}"#).unwrap();
        assert!(!format!("{ok:?}").contains("SESSIONKEY"));
    }
}
