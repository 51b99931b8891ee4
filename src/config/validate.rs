//! Validation: every raw value checked, defaults filled in, keys loaded; each error names its key.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::{self, RawConfig, RawTls};
use super::{CertificateFiles, TlsConfig};
use super::{
    Config, ConfigError, ForwardAuthConfig, LoginConfig, Secret, ServerConfig, UpstreamConfig,
    WeChatApp, WeChatConfig, WebSocketConfig,
};
use crate::http::trust::TrustedProxies;

/// hyper's smallest read buffer: request heads up to this size are always accepted.
const MIN_HEADER_BYTES: usize = 8192;

impl RawConfig {
    /// Checks every value and builds the typed configuration.
    pub(crate) fn validate(self) -> Result<Config, ConfigError> {
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
            body_read_timeout: millis(
                "server.body_read_timeout_ms",
                &server.body_read_timeout_ms,
                10_000,
            )?,
            http2_max_concurrent_streams: positive(
                "server.http2_max_concurrent_streams",
                &server.http2_max_concurrent_streams,
                100,
            )?,
            endpoint_max_in_flight: positive(
                "server.endpoint_max_in_flight",
                &server.endpoint_max_in_flight,
                1024,
            )?,
            keepalive_timeout: millis(
                "server.keepalive_timeout_ms",
                &server.keepalive_timeout_ms,
                60_000,
            )?,
            workers: workers(&server.workers)?,
            shutdown_grace: secs(
                "server.shutdown_grace_secs",
                &server.shutdown_grace_secs,
                20,
            )?,
            max_header_bytes: positive(
                "server.max_header_bytes",
                &server.max_header_bytes,
                32 * 1024,
            )?
            .max(MIN_HEADER_BYTES),
            http2: raw::number("server.http2", &server.http2, true)?,
            h2c: raw::number("server.h2c", &server.h2c, false)?,
            redirect_http_listen: match server.redirect_http_listen.as_deref() {
                Some(address) => Some(raw::parse_value(
                    "server.redirect_http_listen",
                    Some(address),
                    "",
                )?),
                None => None,
            },
            trusted_proxies: match &server.trusted_proxies {
                Some(list) => TrustedProxies::parse(list.entries())
                    .map_err(|message| ConfigError::new("server.trusted_proxies", message))?,
                None => TrustedProxies::default(),
            },
            tls: server.tls.as_ref().map(RawTls::validate).transpose()?,
        };
        if server.redirect_http_listen.is_some() && server.tls.is_none() {
            return Err(ConfigError::new(
                "server.redirect_http_listen",
                "redirects to HTTPS need [server.tls]",
            ));
        }
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
            max_in_flight: positive(
                "upstream.max_in_flight",
                &upstream.max_in_flight,
                default_max_in_flight(),
            )?,
        };
        let (retry_backoff, breaker_threshold, breaker_open) =
            super::ops::wechat_resilience(&self.wechat)?;
        let wechat_base = api_base("wechat.api_base", self.wechat.api_base.as_deref())?;
        let mut apps = self.wechat.apps(&wechat_base)?;
        super::apps::add_platform_apps(&mut apps, &self.apps, &wechat_base)?;
        let wechat = WeChatConfig {
            apps,
            api_base: wechat_base,
            timeout: millis("wechat.timeout_ms", &self.wechat.timeout_ms, 5_000)?,
            retry_backoff,
            breaker_threshold,
            breaker_open,
        };
        let jwt = self.jwt.validate()?;
        let login = &self.login;
        let login = LoginConfig {
            path: endpoint_path("login.path", login.path.as_deref(), "/login")?,
            refresh_path: endpoint_path(
                "login.refresh_path",
                login.refresh_path.as_deref(),
                "/token/refresh",
            )?,
            logout_path: endpoint_path(
                "login.logout_path",
                login.logout_path.as_deref(),
                "/logout",
            )?,
            rate_limit: super::ops::login_rate_limit(&login.rate_limit)?,
            refresh_rate_limit: super::ops::refresh_rate_limit(&login.refresh_rate_limit)?,
        };
        let forward_auth = ForwardAuthConfig {
            enabled: raw::number("forward_auth.enabled", &self.forward_auth.enabled, true)?,
            path: endpoint_path(
                "forward_auth.path",
                self.forward_auth.path.as_deref(),
                "/auth",
            )?,
        };
        if forward_auth.path == "/" {
            return Err(ConfigError::new(
                "forward_auth.path",
                "\"/\" would take every path; use a path of its own such as \"/auth\"",
            ));
        }
        let endpoints = [&login.path, &login.refresh_path, &login.logout_path];
        for (index, path) in endpoints.iter().enumerate() {
            if endpoints[..index].contains(path) {
                return Err(ConfigError::new("login", format!("{path} is used twice")));
            }
        }
        for endpoint in [
            login.path.as_str(),
            &login.refresh_path,
            &login.logout_path,
            super::JWKS_PATH,
            super::DECRYPT_PATH,
            super::PHONE_PATH,
            super::SESSION_CHECK_PATH,
        ] {
            if forward_auth.covers(endpoint) {
                return Err(ConfigError::new(
                    "forward_auth.path",
                    format!("{} would hide the {endpoint} endpoint", forward_auth.path),
                ));
            }
        }
        let mut push_paths: Vec<&str> = Vec::new();
        for app in &wechat.apps {
            let Some(push) = &app.push else { continue };
            let key = match app.name.as_str() {
                "default" => "wechat.push.path".to_string(),
                name => format!("wechat.apps.{name}.push.path"),
            };
            let fixed = [
                login.refresh_path.as_str(),
                &login.logout_path,
                super::JWKS_PATH,
                super::DECRYPT_PATH,
                super::PHONE_PATH,
                super::SESSION_CHECK_PATH,
            ];
            if login.covers(&push.path)
                || fixed.contains(&push.path.as_str())
                || forward_auth.covers(&push.path)
                || push_paths.contains(&push.path.as_str())
            {
                return Err(ConfigError::new(
                    key,
                    format!("{} is already another endpoint's path", push.path),
                ));
            }
            push_paths.push(&push.path);
        }
        let session = self.session.validate()?;
        let log = self.log.validate()?;
        let admin = self.admin.validate(&server)?;
        let reload = self.reload.validate()?;
        let wechat_api = self.wechat_api.validate(&server, &admin)?;
        let identity = self.identity.validate()?;
        let tracing = self.tracing.validate()?;
        let mut routes: Vec<super::RouteConfig> = Vec::with_capacity(self.routes.len());
        for (index, route) in self.routes.iter().enumerate() {
            let route = route.validate(&format!("routes[{index}]"), upstream.timeout, &wechat)?;
            if forward_auth.covers(&route.prefix) {
                return Err(ConfigError::new(
                    format!("routes[{index}].prefix"),
                    format!(
                        "{} is under forward_auth.path {}, which answers first",
                        route.prefix, forward_auth.path
                    ),
                ));
            }
            if routes.iter().any(|seen| seen.prefix == route.prefix) {
                return Err(ConfigError::new(
                    format!("routes[{index}].prefix"),
                    format!("{} is used by an earlier route", route.prefix),
                ));
            }
            routes.push(route);
        }
        super::ops::fleet_limits_need_redis(&login, &routes, &session)?;
        let websocket = WebSocketConfig {
            token_query_param: self
                .websocket
                .token_query_param
                .clone()
                .filter(|name| !name.is_empty()),
            idle_timeout: secs(
                "websocket.idle_timeout_secs",
                &self.websocket.idle_timeout_secs,
                300,
            )?,
        };
        Ok(Config {
            server,
            upstream,
            wechat,
            jwt,
            login,
            session,
            log,
            websocket,
            forward_auth,
            admin,
            reload,
            wechat_api,
            identity,
            tracing,
            routes,
            source: None,
        })
    }
}

impl super::raw::RawWeChat {
    /// `[wechat]` as the default app, then every `[wechat.apps.NAME]`.
    fn apps(&self, api_base: &reqwest::Url) -> Result<Vec<WeChatApp>, ConfigError> {
        let mut apps = vec![WeChatApp {
            name: "default".into(),
            appid: required("wechat.appid", &self.appid)?,
            secret: Secret::new(required("wechat.secret", &self.secret)?),
            platform: crate::identity::Platform::WeChat,
            api_base: api_base.clone(),
            alipay: None,
            baidu: None,
            push: self
                .push
                .as_ref()
                .map(|push| push.validate("wechat.push", "default"))
                .transpose()?,
        }];
        for (name, app) in &self.apps {
            let key = format!("wechat.apps.{name}");
            super::apps::check_app_name(&key, name)?;
            let appid = required(&format!("{key}.appid"), &app.appid)?;
            if apps.iter().any(|seen| seen.appid == appid) {
                return Err(ConfigError::new(
                    format!("{key}.appid"),
                    format!("{appid} is configured twice"),
                ));
            }
            apps.push(WeChatApp {
                name: name.clone(),
                appid,
                secret: Secret::new(required(&format!("{key}.secret"), &app.secret)?),
                platform: crate::identity::Platform::WeChat,
                api_base: api_base.clone(),
                alipay: None,
                baidu: None,
                push: app
                    .push
                    .as_ref()
                    .map(|push| push.validate(&format!("{key}.push"), name))
                    .transpose()?,
            });
        }
        Ok(apps)
    }
}

/// A value that must be present and non-empty.
pub(super) fn required(key: &str, value: &Option<String>) -> Result<String, ConfigError> {
    match value.as_deref() {
        Some(value) if !value.is_empty() => Ok(value.to_string()),
        _ => Err(ConfigError::new(key, "is required")),
    }
}

/// A number that must be above zero.
pub(super) fn positive<T>(
    key: &str,
    value: &Option<raw::Flex<T>>,
    default: T,
) -> Result<T, ConfigError>
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
pub(super) fn millis(
    key: &str,
    value: &Option<raw::Flex<u64>>,
    default: u64,
) -> Result<Duration, ConfigError> {
    positive(key, value, default).map(Duration::from_millis)
}

/// A positive duration given in seconds.
pub(super) fn secs(
    key: &str,
    value: &Option<raw::Flex<u64>>,
    default: u64,
) -> Result<Duration, ConfigError> {
    positive(key, value, default).map(Duration::from_secs)
}

/// A gateway endpoint or route prefix: must already be in normalized form.
pub(super) fn endpoint_path(
    key: &str,
    value: Option<&str>,
    default: &str,
) -> Result<String, ConfigError> {
    let path = value.unwrap_or(default);
    match crate::http::path::normalize(path) {
        Ok(normalized) if normalized == path => Ok(normalized.into_owned()),
        Ok(normalized) => Err(ConfigError::new(
            key,
            format!("{path:?} is not a normalized path; write {normalized:?}"),
        )),
        Err(error) => Err(ConfigError::new(key, format!("{path:?}: {error}"))),
    }
}

/// An API base (`wechat.api_base`, `apps.NAME.api_base`): an http(s) URL without query,
/// fragment or trailing slash.
pub(super) fn api_base(key: &str, value: Option<&str>) -> Result<reqwest::Url, ConfigError> {
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

impl RawTls {
    fn validate(&self) -> Result<TlsConfig, ConfigError> {
        let mut certificates = vec![certificate_files(
            "server.tls",
            &self.cert_file,
            &self.key_file,
        )?];
        for (index, extra) in self.certificates.iter().enumerate() {
            let key = format!("server.tls.certificates[{index}]");
            certificates.push(certificate_files(&key, &extra.cert_file, &extra.key_file)?);
        }
        Ok(TlsConfig {
            certificates,
            handshake_timeout: millis(
                "server.tls.handshake_timeout_ms",
                &self.handshake_timeout_ms,
                10_000,
            )?,
            reload_interval: millis(
                "server.tls.reload_interval_ms",
                &self.reload_interval_ms,
                5_000,
            )?,
        })
    }
}

/// A cert_file / key_file pair, both required.
fn certificate_files(
    key: &str,
    cert_file: &Option<String>,
    key_file: &Option<String>,
) -> Result<CertificateFiles, ConfigError> {
    Ok(CertificateFiles {
        cert_file: PathBuf::from(required(&format!("{key}.cert_file"), cert_file)?),
        key_file: PathBuf::from(required(&format!("{key}.key_file"), key_file)?),
    })
}

/// Most worker threads accepted: far beyond any machine's cores, short of a typo's thousands.
const MAX_WORKERS: usize = 1024;

/// `server.workers`: 0 (the default) means one per CPU the process may use.
fn workers(value: &Option<raw::Flex<usize>>) -> Result<usize, ConfigError> {
    match raw::number("server.workers", value, 0)? {
        0 => Ok(std::thread::available_parallelism().map_or(1, usize::from)),
        workers if workers > MAX_WORKERS => Err(ConfigError::new(
            "server.workers",
            format!("{workers} is more than {MAX_WORKERS}"),
        )),
        workers => Ok(workers),
    }
}

/// The default `upstream.max_in_flight`: half the process's open-files limit (each request in
/// flight takes one descriptor upstream; the rest is for client connections, pooled connections
/// and files), at least 64.
fn default_max_in_flight() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is handed, which lives on this stack frame.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let open_files = if read == 0 {
        usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    (open_files / 2).max(64)
}
