//! Configuration: a TOML file, overlaid by `WXGATE_<SECTION>__<KEY>` environment variables (the
//! documented way to pass secrets), validated once at start into typed settings.
//!
//! Every error names the key it is about (`jwt.secret: ...`), so a bad config is fixed in one go.
//! Every key, its default and its meaning are documented in `config/wxgate.toml`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::identity::Platform;

mod apps;
mod identity;
mod jwt;
mod ops;
mod push;
mod raw;
mod redis;
mod render;
mod route;
mod server;
mod session;
mod telemetry;
mod upstream_group;
mod validate;
mod wechat_api;

pub use identity::IdentityConfig;
pub use jwt::{JwtConfig, JwtKeyInfo, KeySource};
pub use ops::{parse_filter, LogFormat};
/// The mock pushes messages encrypted with the key the gateway decodes.
#[cfg(feature = "dev-tools")]
pub(crate) use push::aes_key_bytes;
pub use push::{PushConfig, PushFormat, PushMode};
pub use route::{AuthMode, FleetFallback, LimitScope, RateLimit, RouteConfig};
pub use server::{CertificateFiles, TlsConfig};
pub use telemetry::TracingConfig;
pub use upstream_group::{Balance, UpstreamGroupConfig, UpstreamHealth};
pub use wechat_api::WeChatApiConfig;

/// The default `session.ttl_secs`: how long a session_key is kept when the config says nothing.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The default `session.path`: the embedded store's file, relative to the working directory.
pub const DEFAULT_SESSION_PATH: &str = "data/wxgate.db";

/// The gateway's own endpoints at fixed paths (the others are configured): no route or
/// forward-auth path may hide them.
pub(crate) const DECRYPT_PATH: &str = "/wx/decrypt";
/// `/wx/phone`: getuserphonenumber.
pub(crate) const PHONE_PATH: &str = "/wx/phone";
/// `/wx/session/check`: checksession.
pub(crate) const SESSION_CHECK_PATH: &str = "/wx/session/check";
/// The JWKS.
pub(crate) const JWKS_PATH: &str = "/.well-known/jwks.json";

/// A value that must never be printed: its `Debug` and `Display` say `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it (a WeChat call, a key).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why the configuration was refused, naming the key (`section.key`, or the environment variable).
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The key, file or environment variable at fault.
    pub key: String,
    /// What is wrong and, where it helps, what is expected.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The validated configuration the gateway runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// `[server]`: the public listener and its limits.
    pub server: ServerConfig,
    /// `[upstream]`: how upstream services are called.
    pub upstream: UpstreamConfig,
    /// `[wechat]`: the mini-program's credentials and the WeChat API.
    pub wechat: WeChatConfig,
    /// `[jwt]`: the gateway's tokens.
    pub jwt: JwtConfig,
    /// `[login]`: the login endpoint.
    pub login: LoginConfig,
    /// `[session]`: where session keys are kept.
    pub session: SessionConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
    /// `[websocket]`: upgrade requests.
    pub websocket: WebSocketConfig,
    /// `[forward_auth]`: the auth-decision endpoint for ingress controllers.
    pub forward_auth: ForwardAuthConfig,
    /// `[admin]`: the operators' listener (metrics, health).
    pub admin: AdminConfig,
    /// `[reload]`: reloading the config file while running.
    pub reload: ReloadConfig,
    /// `[wechat_api]`: the backends' listener for WeChat's server APIs.
    pub wechat_api: WeChatApiConfig,
    /// `[identity]`: the identity headers' names and the signed assertion.
    pub identity: IdentityConfig,
    /// `[tracing]`: OpenTelemetry spans to a collector (off unless `otlp_endpoint` is set).
    pub tracing: TracingConfig,
    /// `[[routes]]`: what is forwarded where, and how it is authenticated.
    pub routes: Vec<RouteConfig>,
    /// The file the config was read from, which a reload reads again; `None` when built from text.
    pub source: Option<PathBuf>,
}

/// `[admin]` settings.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// Whether the admin listener runs.
    pub enabled: bool,
    /// Its address: /metrics, /healthz, /readyz. Never the public listener's.
    pub listen: SocketAddr,
}

/// `[reload]` settings.
#[derive(Clone, Debug)]
pub struct ReloadConfig {
    /// Also reload when the config file's content changes (SIGHUP always reloads).
    pub watch: bool,
    /// How often the file is checked when watched.
    pub interval: Duration,
}

/// `[server]` settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address of the public listener.
    pub listen: SocketAddr,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: u64,
    /// Connections served at once; further clients wait to be accepted.
    pub max_connections: usize,
    /// How long a client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// How long a request body may take: the whole body for the gateway's own endpoints, the gap
    /// between two chunks for a forwarded one (408 beyond).
    pub body_read_timeout: Duration,
    /// Streams one HTTP/2 connection may have open at once (advertised in SETTINGS).
    pub http2_max_concurrent_streams: u32,
    /// Requests to the gateway's own endpoints (login, refresh, logout, /wx/decrypt, /wx/phone)
    /// answered at once; beyond, 503 at once.
    pub endpoint_max_in_flight: usize,
    /// How long an HTTP/1.1 connection may wait for its next request before it is closed.
    pub keepalive_timeout: Duration,
    /// Threads serving connections, each with its own single-threaded runtime.
    pub workers: usize,
    /// How long in-flight requests and open WebSockets may run after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Largest request head (request line and headers) accepted; larger -> 431.
    pub max_header_bytes: usize,
    /// Offer HTTP/2 to TLS clients through ALPN.
    pub http2: bool,
    /// Accept HTTP/2 with prior knowledge (h2c) on a plain listener.
    pub h2c: bool,
    /// A plain-HTTP listener that redirects every request to HTTPS (TLS only).
    pub redirect_http_listen: Option<SocketAddr>,
    /// Peers allowed to describe the original request (X-Forwarded-*, X-Original-*).
    pub trusted_proxies: crate::http::trust::TrustedProxies,
    /// `[server.tls]`: terminate TLS on the public listener.
    pub tls: Option<TlsConfig>,
}

impl ServerConfig {
    /// Whether clients may speak HTTP/2: over TLS when `http2` is on, in plain text when `h2c` is.
    pub fn http2_enabled(&self) -> bool {
        if self.tls.is_some() {
            self.http2
        } else {
            self.h2c
        }
    }
}

/// `[websocket]` settings.
#[derive(Clone, Debug)]
pub struct WebSocketConfig {
    /// A query parameter that may carry the bearer token on upgrade requests, for clients that
    /// cannot set headers; removed before forwarding. Unset: header only.
    pub token_query_param: Option<String>,
    /// How long an open tunnel may go without a byte in either direction before it is closed.
    pub idle_timeout: Duration,
}

/// `[forward_auth]` settings.
#[derive(Clone, Debug)]
pub struct ForwardAuthConfig {
    /// Whether the endpoint answers at all.
    pub enabled: bool,
    /// The endpoint's path; everything under it is the endpoint too (Envoy appends the original
    /// path).
    pub path: String,
}

impl ForwardAuthConfig {
    /// Whether the normalized `path` is the forward-auth endpoint.
    pub fn covers(&self, path: &str) -> bool {
        self.enabled
            && path
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// `[upstream]` settings, shared by all routes.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// How long connecting to an upstream may take (502 beyond).
    pub connect_timeout: Duration,
    /// Default time for an upstream to send response headers (504 beyond).
    pub timeout: Duration,
    /// How long an idle pooled upstream connection is kept.
    pub pool_idle_timeout: Duration,
    /// Idle pooled connections kept per upstream.
    pub pool_max_idle_per_host: usize,
    /// Requests in flight to upstreams at once, whole process; beyond, 503 at once.
    pub max_in_flight: usize,
}

/// `[wechat]` settings.
#[derive(Clone, Debug)]
pub struct WeChatConfig {
    /// Every mini-program served: `[wechat]` itself first (named "default"), then
    /// `[wechat.apps.NAME]` in name order.
    pub apps: Vec<WeChatApp>,
    /// Base URL of the WeChat API (regional or disaster-recovery hosts, or the mock).
    pub api_base: reqwest::Url,
    /// Time allowed for a whole WeChat call (504 beyond).
    pub timeout: Duration,
    /// Pause before the one retry after errcode -1 or a connection error (jittered).
    pub retry_backoff: Duration,
    /// Failed calls in a row that open the circuit breaker.
    pub breaker_threshold: u32,
    /// How long the open breaker refuses calls before a probe.
    pub breaker_open: Duration,
}

impl WeChatConfig {
    /// The `[wechat]` app: logins that name no app, tokens that carry no appid.
    pub fn default_app(&self) -> &WeChatApp {
        &self.apps[0]
    }

    /// The app called `name`.
    pub fn app_named(&self, name: &str) -> Option<&WeChatApp> {
        self.apps.iter().find(|app| app.name == name)
    }

    /// The app whose message push is served at `path`.
    pub fn push_app(&self, path: &str) -> Option<&WeChatApp> {
        self.apps
            .iter()
            .find(|app| app.push.as_ref().is_some_and(|push| push.path == path))
    }

    /// The app a token was issued for: the one with its `appid`, or the default app for a token
    /// that carries none.
    pub fn app_of_token(&self, appid: Option<&str>) -> Option<&WeChatApp> {
        match appid {
            Some(appid) => self.apps.iter().find(|app| app.appid == appid),
            None => Some(self.default_app()),
        }
    }
}

/// One mini-program's credentials.
#[derive(Clone, Debug, PartialEq)]
pub struct WeChatApp {
    /// "default" for `[wechat]`, NAME for `[wechat.apps.NAME]`.
    pub name: String,
    /// The mini-program's appid.
    pub appid: String,
    /// The mini-program's AppSecret.
    pub secret: Secret,
    /// The platform it runs on (`[apps.NAME] platform`; WeChat for `[wechat]` and
    /// `[wechat.apps.NAME]`).
    pub platform: Platform,
    /// The platform API base its calls go to (`api_base`; the platform's official host).
    pub api_base: reqwest::Url,
    /// An Alipay app's keys (its `secret` is empty: Alipay signs instead).
    pub alipay: Option<AlipayConfig>,
    /// A Baidu app's second API host and whether logins fetch the unionid there.
    pub baidu: Option<BaiduConfig>,
    /// Its message push, when configured.
    pub push: Option<PushConfig>,
}

impl WeChatApp {
    /// Where the app's access_token and the server APIs behind it live: the API base, but for
    /// Baidu, whose logins are on `spapi.baidu.com` and the rest on `openapi.baidu.com`.
    pub fn server_api_base(&self) -> &reqwest::Url {
        self.baidu
            .as_ref()
            .map_or(&self.api_base, |baidu| &baidu.openapi_base)
    }
}

/// What a Baidu app has beyond its login: `shared/platforms.md` section 4.
#[derive(Clone, Debug, PartialEq)]
pub struct BaiduConfig {
    /// `openapi_base`: the host of Baidu's access_token and getunionid
    /// (`https://openapi.baidu.com`).
    pub openapi_base: reqwest::Url,
    /// `fetch_unionid`: each login also asks getunionid (an access_token and one more call),
    /// and fails when Baidu does not answer it.
    pub fetch_unionid: bool,
}

/// An Alipay app's keys: the files are loaded with the running state, like the JWT keys.
#[derive(Clone, Debug, PartialEq)]
pub struct AlipayConfig {
    /// The app's RSA2 private key (PEM), which signs its requests.
    pub private_key_file: PathBuf,
    /// Alipay's public key (PEM), which verifies Alipay's answers.
    pub alipay_public_key_file: PathBuf,
    /// The console's content-encryption key (接口内容加密, AES-128, base64), which decrypts
    /// `my.getPhoneNumber` answers; without it, phone numbers are refused.
    pub aes_key: Option<Secret>,
}

/// `[login]` settings.
#[derive(Clone, Debug)]
pub struct LoginConfig {
    /// The login endpoint's path.
    pub path: String,
    /// The token refresh endpoint's path.
    pub refresh_path: String,
    /// The logout endpoint's path.
    pub logout_path: String,
    /// `[login.rate_limit]`: logins per client IP; `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    /// `[login.refresh_rate_limit]`: refreshes per user; `None`: unlimited.
    pub refresh_rate_limit: Option<RateLimit>,
}

impl LoginConfig {
    /// Whether the normalized `path` is the login endpoint: `path` itself, or `path/<app name>`.
    pub fn covers(&self, path: &str) -> bool {
        path.strip_prefix(self.path.as_str()).is_some_and(|rest| {
            rest.is_empty()
                || rest
                    .strip_prefix('/')
                    .is_some_and(|name| !name.contains('/'))
        })
    }
}

/// `[session]` settings.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// How long a session (and its session_key) is kept after login.
    pub ttl: Duration,
    /// Most sessions kept in memory; the least used go first.
    pub max_entries: u64,
    /// Where sessions and revocations are kept.
    pub store: StoreKind,
    /// What a request gets when the store cannot say whether its token was revoked.
    pub on_store_error: StoreErrorPolicy,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            ttl: DEFAULT_SESSION_TTL,
            max_entries: 100_000,
            store: StoreKind::Embedded {
                path: PathBuf::from(DEFAULT_SESSION_PATH),
            },
            on_store_error: StoreErrorPolicy::Refuse,
        }
    }
}

/// `[session] store`: where sessions and revocations live.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreKind {
    /// `"memory"`: this process only, lost on restart (tests, throwaway runs).
    Memory,
    /// `"embedded"` (the default): a database file of this gateway's, kept across restarts.
    Embedded {
        /// `session.path`: the database file.
        path: PathBuf,
    },
    /// `"redis"`: shared by every replica.
    Redis(RedisConfig),
}

/// `[session] store = "redis"` settings.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisConfig {
    /// Where Redis is: a URL, or the Sentinels that know the master.
    pub target: RedisTarget,
    /// `redis_password`: the password of the Redis servers (not in the URL).
    pub password: Option<Secret>,
    /// TLS to Redis (`rediss://`, or `redis_tls` with Sentinels); `None`: plain TCP.
    pub tls: Option<RedisTls>,
    /// Prefix of every key the gateway writes.
    pub key_prefix: String,
    /// Time allowed for connecting and for each exchange.
    pub timeout: Duration,
}

/// Where the Redis session store is.
#[derive(Clone, Debug, PartialEq)]
pub enum RedisTarget {
    /// `redis_url`: `redis[s]://[:password@]host:port/db`; secret, since it may carry a password.
    Url(Secret),
    /// `redis_sentinels`: the master of `redis_sentinel_master` as the Sentinels name it now,
    /// asked again after a failover.
    Sentinel {
        /// The Sentinels, as host and port.
        sentinels: Vec<(String, u16)>,
        /// The name the Sentinels monitor the master under.
        master: String,
        /// `redis_sentinel_password`: the Sentinels' own password, if they require one.
        password: Option<Secret>,
    },
}

/// TLS to Redis: what to trust and what to present, as files (read when the store is made).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisTls {
    /// `redis_ca_file`: the CA certificates (PEM) trusted instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// `redis_client_cert_file` and `redis_client_key_file`: a client certificate and its key,
    /// for servers that require one (`tls-auth-clients yes`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// `[session] on_store_error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorPolicy {
    /// Fail closed: 503 until the store answers again.
    Refuse,
    /// Keep serving on the token signature alone (revocations are not seen meanwhile).
    Signature,
}

/// `[log]` settings.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// A tracing filter (`info`, `wxgate=debug`...); `RUST_LOG` wins when set.
    pub level: String,
    /// `text` (human-readable, the default) or `json` (one object per line).
    pub format: LogFormat,
}

impl Config {
    /// Reads the file at `path` and overlays the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::new(
                "--config",
                format!("cannot read {}: {error}", path.display()),
            )
        })?;
        let mut config = Config::from_toml(&text, std::env::vars())?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses TOML text, overlays the given `WXGATE_*` variables, and validates.
    pub fn from_toml(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let raw = raw::parse(text, env)?;
        raw.validate()
    }

    /// The resolved configuration as TOML, secrets replaced by `<redacted>`: what `wxgate check`
    /// prints.
    pub fn to_redacted_toml(&self) -> String {
        render::redacted_toml(self)
    }
}

/// The smallest valid config (a WeChat app and an HS256 secret) with `extra` TOML appended: the
/// config modules' unit tests load their sections on it.
#[cfg(test)]
pub(crate) fn minimal_with(extra: &str) -> Result<Config, ConfigError> {
    let base = "[wechat]\nappid = \"wx1\"\nsecret = \"s\"\n\
        [jwt]\nsecret = \"a-secret-that-is-at-least-32-bytes-long!\"\n";
    Config::from_toml(&format!("{base}{extra}"), std::iter::empty())
}

#[cfg(test)]
mod tests;
