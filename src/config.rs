//! Configuration: a TOML file, overlaid by `WXGATE_<SECTION>__<KEY>` environment variables (the
//! documented way to pass secrets), validated once at start into typed settings.
//!
//! Every error names the key it is about (`jwt.secret: ...`), so a bad config is fixed in one go.
//! Every key, its default and its meaning are documented in `config/wxgate.toml`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use crate::routes::{AuthMode, Route, Upstream};
use crate::token::{KeyMaterial, TokenKeys, TokenSettings};

mod raw;
mod render;

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
    /// `[[routes]]`: what is forwarded where, and how it is authenticated.
    pub routes: Vec<Route>,
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
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_grace: Duration,
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
}

/// `[wechat]` settings.
#[derive(Clone, Debug)]
pub struct WeChatConfig {
    /// The mini-program's appid.
    pub appid: String,
    /// The mini-program's AppSecret.
    pub secret: Secret,
    /// Base URL of the WeChat API (regional or disaster-recovery hosts, or the mock).
    pub api_base: reqwest::Url,
    /// Time allowed for a whole WeChat call (504 beyond).
    pub timeout: Duration,
}

/// `[jwt]` settings, with the keys already loaded and checked.
#[derive(Clone, Debug)]
pub struct JwtConfig {
    /// The pinned algorithm.
    pub algorithm: Algorithm,
    /// `iss` written and required.
    pub issuer: String,
    /// `aud` written and required, when set.
    pub audience: Option<String>,
    /// Lifetime of issued tokens.
    pub ttl_secs: u64,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// Where the private key came from (RS256, ES256, EdDSA).
    pub private_key_file: Option<PathBuf>,
    /// The loaded signing and verification keys.
    pub keys: Arc<TokenKeys>,
}

/// `[login]` settings.
#[derive(Clone, Debug)]
pub struct LoginConfig {
    /// The login endpoint's path.
    pub path: String,
}

/// `[session]` settings.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// How long a session (and its session_key) is kept after login.
    pub ttl: Duration,
    /// Most sessions kept in memory; the least used go first.
    pub max_entries: u64,
}

/// `[log]` settings.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// A tracing filter (`info`, `wxgate=debug`...); `RUST_LOG` wins when set.
    pub level: String,
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
        Config::from_toml(&text, std::env::vars())
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

impl raw::RawConfig {
    /// Checks every value and builds the typed configuration.
    fn validate(self) -> Result<Config, ConfigError> {
        let server = &self.server;
        let server = ServerConfig {
            listen: raw::parse_value("server.listen", server.listen.as_deref(), "0.0.0.0:8080")?,
            max_body_bytes: positive("server.max_body_bytes", &server.max_body_bytes, 1 << 20)?,
            max_connections: positive("server.max_connections", &server.max_connections, 10_000)?,
            header_read_timeout: millis(
                "server.header_read_timeout_ms",
                &server.header_read_timeout_ms,
                10_000,
            )?,
            shutdown_grace: secs(
                "server.shutdown_grace_secs",
                &server.shutdown_grace_secs,
                20,
            )?,
        };
        let upstream = &self.upstream;
        let upstream = UpstreamConfig {
            connect_timeout: millis(
                "upstream.connect_timeout_ms",
                &upstream.connect_timeout_ms,
                5_000,
            )?,
            timeout: millis("upstream.timeout_ms", &upstream.timeout_ms, 30_000)?,
            pool_idle_timeout: secs(
                "upstream.pool_idle_timeout_secs",
                &upstream.pool_idle_timeout_secs,
                90,
            )?,
            pool_max_idle_per_host: raw::number(
                "upstream.pool_max_idle_per_host",
                &upstream.pool_max_idle_per_host,
                256,
            )?,
        };
        let wechat = WeChatConfig {
            appid: required("wechat.appid", &self.wechat.appid)?,
            secret: Secret::new(required("wechat.secret", &self.wechat.secret)?),
            api_base: api_base(self.wechat.api_base.as_deref())?,
            timeout: millis("wechat.timeout_ms", &self.wechat.timeout_ms, 5_000)?,
        };
        let jwt = self.jwt.validate()?;
        let login = LoginConfig {
            path: endpoint_path("login.path", self.login.path.as_deref(), "/login")?,
        };
        let session = SessionConfig {
            ttl: secs(
                "session.ttl_secs",
                &self.session.ttl_secs,
                crate::session::DEFAULT_TTL.as_secs(),
            )?,
            max_entries: positive("session.max_entries", &self.session.max_entries, 100_000)?,
        };
        let log = LogConfig {
            level: self.log.level.clone().unwrap_or_else(|| "info".to_string()),
        };
        crate::logging::parse_filter(&log.level)
            .map_err(|message| ConfigError::new("log.level", message))?;
        let mut routes: Vec<Route> = Vec::with_capacity(self.routes.len());
        for (index, route) in self.routes.iter().enumerate() {
            let route = route.validate(&format!("routes[{index}]"), upstream.timeout)?;
            if routes.iter().any(|seen| seen.prefix == route.prefix) {
                return Err(ConfigError::new(
                    format!("routes[{index}].prefix"),
                    format!("{} is used by an earlier route", route.prefix),
                ));
            }
            routes.push(route);
        }
        Ok(Config {
            server,
            upstream,
            wechat,
            jwt,
            login,
            session,
            log,
            routes,
        })
    }
}

impl raw::RawJwt {
    fn validate(&self) -> Result<JwtConfig, ConfigError> {
        let algorithm = match self.algorithm.as_deref().unwrap_or("HS256") {
            "HS256" => Algorithm::HS256,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            "EdDSA" => Algorithm::EdDSA,
            other => {
                return Err(ConfigError::new(
                    "jwt.algorithm",
                    format!("{other:?} is not one of HS256, RS256, ES256, EdDSA"),
                ))
            }
        };
        let issuer = self.issuer.clone().unwrap_or_else(|| "wxgate".to_string());
        if issuer.is_empty() {
            return Err(ConfigError::new("jwt.issuer", "must not be empty"));
        }
        let audience = self
            .audience
            .clone()
            .filter(|audience| !audience.is_empty());
        let ttl_secs = positive("jwt.ttl_secs", &self.ttl_secs, 7200)?;
        let leeway_secs = raw::number("jwt.leeway_secs", &self.leeway_secs, 30)?;
        let private_key_file = self.private_key_file.as_ref().map(PathBuf::from);
        let pem;
        let (key, material) = match (algorithm, &self.secret, &private_key_file) {
            (Algorithm::HS256, Some(secret), None) => {
                ("jwt.secret", KeyMaterial::Secret(secret.as_bytes()))
            }
            (Algorithm::HS256, None, _) => {
                return Err(ConfigError::new(
                    "jwt.secret",
                    "HS256 needs a secret of at least 32 bytes (set WXGATE_JWT__SECRET)",
                ))
            }
            (Algorithm::HS256, Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "jwt.private_key_file",
                    "HS256 uses jwt.secret; remove the private key file",
                ))
            }
            (_, Some(_), _) => {
                return Err(ConfigError::new(
                    "jwt.secret",
                    "only HS256 uses a shared secret; use jwt.private_key_file",
                ))
            }
            (_, None, None) => {
                return Err(ConfigError::new(
                    "jwt.private_key_file",
                    "RS256, ES256 and EdDSA need a PEM private key file",
                ))
            }
            (_, None, Some(file)) => {
                pem = std::fs::read_to_string(file).map_err(|error| {
                    ConfigError::new(
                        "jwt.private_key_file",
                        format!("cannot read {}: {error}", file.display()),
                    )
                })?;
                ("jwt.private_key_file", KeyMaterial::PrivateKeyPem(&pem))
            }
        };
        let keys = TokenKeys::new(TokenSettings {
            algorithm,
            material,
            issuer: &issuer,
            audience: audience.as_deref(),
            ttl_secs,
            leeway_secs,
        })
        .map_err(|message| ConfigError::new(key, message))?;
        Ok(JwtConfig {
            algorithm,
            issuer,
            audience,
            ttl_secs,
            leeway_secs,
            private_key_file,
            keys: Arc::new(keys),
        })
    }
}

impl raw::RawRoute {
    fn validate(&self, key: &str, default_timeout: Duration) -> Result<Route, ConfigError> {
        let prefix_key = format!("{key}.prefix");
        let prefix = required(&prefix_key, &self.prefix)?;
        let prefix = match endpoint_path(&prefix_key, Some(&prefix), "/")?.trim_end_matches('/') {
            "" => "/".to_string(),
            trimmed => trimmed.to_string(),
        };
        let auth = match required(&format!("{key}.auth"), &self.auth)?.as_str() {
            "required" => AuthMode::Required,
            "optional" => AuthMode::Optional,
            "none" => AuthMode::None,
            other => {
                return Err(ConfigError::new(
                    format!("{key}.auth"),
                    format!("{other:?} is not one of \"required\", \"optional\", \"none\""),
                ))
            }
        };
        let upstream_key = format!("{key}.upstream");
        let upstream = upstream(&upstream_key, &required(&upstream_key, &self.upstream)?)?;
        Ok(Route {
            prefix,
            upstream,
            auth,
            strip_prefix: raw::number(&format!("{key}.strip_prefix"), &self.strip_prefix, false)?,
            preserve_host: raw::number(
                &format!("{key}.preserve_host"),
                &self.preserve_host,
                false,
            )?,
            timeout: match &self.timeout_ms {
                Some(_) => millis(&format!("{key}.timeout_ms"), &self.timeout_ms, 0)?,
                None => default_timeout,
            },
        })
    }
}

/// A value that must be present and non-empty.
fn required(key: &str, value: &Option<String>) -> Result<String, ConfigError> {
    match value.as_deref() {
        Some(value) if !value.is_empty() => Ok(value.to_string()),
        _ => Err(ConfigError::new(key, "is required")),
    }
}

/// A number that must be above zero.
fn positive<T>(key: &str, value: &Option<raw::Flex<T>>, default: T) -> Result<T, ConfigError>
where
    T: Copy + Default + PartialOrd + std::str::FromStr,
{
    let number = raw::number(key, value, default)?;
    if number <= T::default() {
        return Err(ConfigError::new(key, "must be greater than 0"));
    }
    Ok(number)
}

/// A positive duration given in milliseconds.
fn millis(
    key: &str,
    value: &Option<raw::Flex<u64>>,
    default: u64,
) -> Result<Duration, ConfigError> {
    positive(key, value, default).map(Duration::from_millis)
}

/// A positive duration given in seconds.
fn secs(key: &str, value: &Option<raw::Flex<u64>>, default: u64) -> Result<Duration, ConfigError> {
    positive(key, value, default).map(Duration::from_secs)
}

/// A gateway endpoint or route prefix: must already be in normalized form.
fn endpoint_path(key: &str, value: Option<&str>, default: &str) -> Result<String, ConfigError> {
    let path = value.unwrap_or(default);
    match crate::path::normalize(path) {
        Ok(normalized) if normalized == path => Ok(normalized),
        Ok(normalized) => Err(ConfigError::new(
            key,
            format!("{path:?} is not a normalized path; write {normalized:?}"),
        )),
        Err(error) => Err(ConfigError::new(key, format!("{path:?}: {error}"))),
    }
}

/// `wechat.api_base`: an http(s) URL without query, fragment or trailing slash.
fn api_base(value: Option<&str>) -> Result<reqwest::Url, ConfigError> {
    let key = "wechat.api_base";
    let text = value
        .unwrap_or("https://api.weixin.qq.com")
        .trim_end_matches('/');
    let url = reqwest::Url::parse(text)
        .map_err(|error| ConfigError::new(key, format!("{text:?} is not a URL: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError::new(
            key,
            "must be an http:// or https:// URL with a host",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(ConfigError::new(
            key,
            "must not carry a query, fragment or credentials",
        ));
    }
    Ok(url)
}

/// A route's `upstream`: `http://host:port[/base/path]`.
fn upstream(key: &str, text: &str) -> Result<Upstream, ConfigError> {
    let uri: http::Uri = text
        .parse()
        .map_err(|error| ConfigError::new(key, format!("{text:?} is not a URL: {error}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(ConfigError::new(
                key,
                "https upstreams are not supported yet; use http",
            ))
        }
        _ => {
            return Err(ConfigError::new(
                key,
                format!("{text:?} must start with http://"),
            ))
        }
    }
    let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned()) else {
        return Err(ConfigError::new(key, format!("{text:?} has no host")));
    };
    if authority.as_str().contains('@') || uri.query().is_some() {
        return Err(ConfigError::new(
            key,
            "must not carry credentials or a query",
        ));
    }
    let base_path = endpoint_path(key, Some(uri.path()), "/")?
        .trim_end_matches('/')
        .to_string();
    Ok(Upstream {
        scheme,
        authority,
        base_path,
    })
}

#[cfg(test)]
mod tests;
