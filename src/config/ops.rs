//! Validation of the operations settings: `[admin]`, `[reload]`, `[log]`, the rate limits and
//! the WeChat client's resilience keys.

use std::net::SocketAddr;
use std::time::Duration;

use super::raw::{self, RawAdmin, RawLog, RawRateLimit, RawReload};
use super::validate::{millis, positive};
use super::{
    AdminConfig, ConfigError, LogConfig, LoginConfig, ReloadConfig, RouteConfig, ServerConfig,
    SessionConfig, StoreKind,
};
use super::{FleetFallback, LimitScope, RateLimit};
use tracing_subscriber::EnvFilter;

/// Logins per client IP unless configured: a minute's steady rate, and the burst a shared NAT
/// address may need at once.
const LOGIN_RATE_LIMIT: RateLimit = RateLimit {
    per_minute: 120,
    burst: 60,
    scope: LimitScope::Local,
};

impl RawAdmin {
    /// `[admin]`: on by default, on loopback, never on an address the public side uses.
    pub(super) fn validate(&self, server: &ServerConfig) -> Result<AdminConfig, ConfigError> {
        let admin = AdminConfig {
            enabled: raw::number("admin.enabled", &self.enabled, true)?,
            listen: raw::parse_value("admin.listen", self.listen.as_deref(), "127.0.0.1:9090")?,
        };
        let public = std::iter::once(server.listen).chain(server.redirect_http_listen);
        for taken in public {
            if admin.enabled && overlaps(admin.listen, taken) {
                return Err(ConfigError::new(
                    "admin.listen",
                    format!(
                        "{} overlaps the public listener {taken}; metrics and health checks get \
                         an address of their own",
                        admin.listen
                    ),
                ));
            }
        }
        Ok(admin)
    }
}

/// Whether two listen addresses would collide (same port, and the same or a wildcard IP).
pub(super) fn overlaps(one: SocketAddr, other: SocketAddr) -> bool {
    one.port() == other.port()
        && one.port() != 0
        && (one.ip() == other.ip() || one.ip().is_unspecified() || other.ip().is_unspecified())
}

impl RawReload {
    /// `[reload]`: SIGHUP always; file watching when asked for.
    pub(super) fn validate(&self) -> Result<ReloadConfig, ConfigError> {
        Ok(ReloadConfig {
            watch: raw::number("reload.watch", &self.watch, false)?,
            interval: millis("reload.interval_ms", &self.interval_ms, 2_000)?,
        })
    }
}

impl RawLog {
    /// `[log]`: a valid filter and a known format.
    pub(super) fn validate(&self) -> Result<LogConfig, ConfigError> {
        let level = self.level.clone().unwrap_or_else(|| "info".to_string());
        parse_filter(&level).map_err(|message| ConfigError::new("log.level", message))?;
        let format = match self.format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::new(
                    "log.format",
                    format!("{other:?} is not \"text\" or \"json\""),
                ))
            }
        };
        Ok(LogConfig { level, format })
    }
}

/// `[login.rate_limit]`: the default unless configured; `per_minute = 0` turns it off.
pub(super) fn login_rate_limit(
    raw: &Option<RawRateLimit>,
) -> Result<Option<RateLimit>, ConfigError> {
    match raw {
        None => Ok(Some(LOGIN_RATE_LIMIT)),
        Some(raw) => raw.validate("login.rate_limit"),
    }
}

/// Refreshes per user unless configured: a client renews once per token lifetime, so this only
/// stops one client from minting tokens in a loop.
const REFRESH_RATE_LIMIT: RateLimit = RateLimit {
    per_minute: 10,
    burst: 5,
    scope: LimitScope::Local,
};

/// `[login.refresh_rate_limit]`: the default unless configured; `per_minute = 0` turns it off.
pub(super) fn refresh_rate_limit(
    raw: &Option<RawRateLimit>,
) -> Result<Option<RateLimit>, ConfigError> {
    match raw {
        None => Ok(Some(REFRESH_RATE_LIMIT)),
        Some(raw) => raw.validate("login.refresh_rate_limit"),
    }
}

/// Fleet-wide limits count in the session store's Redis: refused, naming the key, with any other
/// store.
pub(super) fn fleet_limits_need_redis(
    login: &LoginConfig,
    routes: &[RouteConfig],
    session: &SessionConfig,
) -> Result<(), ConfigError> {
    if matches!(session.store, StoreKind::Redis(_)) {
        return Ok(());
    }
    let limits = [
        ("login.rate_limit".to_string(), login.rate_limit),
        (
            "login.refresh_rate_limit".to_string(),
            login.refresh_rate_limit,
        ),
    ]
    .into_iter()
    .chain(
        routes
            .iter()
            .enumerate()
            .map(|(index, route)| (format!("routes[{index}].rate_limit"), route.rate_limit)),
    );
    for (key, limit) in limits {
        if limit.is_some_and(|limit| matches!(limit.scope, LimitScope::Fleet(_))) {
            return Err(ConfigError::new(
                format!("{key}.scope"),
                "\"fleet\" counts in the session store's Redis: it needs [session] store = \"redis\"",
            ));
        }
    }
    Ok(())
}

impl RawRateLimit {
    /// `{ per_minute, burst }`; burst defaults to a minute's worth; `per_minute = 0`: no limit.
    pub(super) fn validate(&self, key: &str) -> Result<Option<RateLimit>, ConfigError> {
        let per_minute_key = format!("{key}.per_minute");
        if self.per_minute.is_none() {
            return Err(ConfigError::new(
                per_minute_key,
                "is required (0 turns the limit off)",
            ));
        }
        let per_minute = raw::number(&per_minute_key, &self.per_minute, 0)?;
        if per_minute == 0 {
            return Ok(None);
        }
        let burst = positive(&format!("{key}.burst"), &self.burst, per_minute)?;
        let fallback = match self.on_store_error.as_deref() {
            None | Some("local") => FleetFallback::Local,
            Some("refuse") => FleetFallback::Refuse,
            Some(other) => {
                return Err(ConfigError::new(
                    format!("{key}.on_store_error"),
                    format!("{other:?} is not one of \"local\", \"refuse\""),
                ))
            }
        };
        let scope = match self.scope.as_deref() {
            None | Some("local") if self.on_store_error.is_some() => {
                return Err(ConfigError::new(
                    format!("{key}.on_store_error"),
                    "is for scope = \"fleet\"",
                ))
            }
            None | Some("local") => LimitScope::Local,
            Some("fleet") => LimitScope::Fleet(fallback),
            Some(other) => {
                return Err(ConfigError::new(
                    format!("{key}.scope"),
                    format!("{other:?} is not one of \"local\", \"fleet\""),
                ))
            }
        };
        Ok(Some(RateLimit {
            per_minute,
            burst,
            scope,
        }))
    }
}

/// The WeChat client's retry backoff, breaker threshold and breaker open time.
pub(super) fn wechat_resilience(
    raw: &raw::RawWeChat,
) -> Result<(Duration, u32, Duration), ConfigError> {
    Ok((
        millis("wechat.retry_backoff_ms", &raw.retry_backoff_ms, 200)?,
        positive("wechat.breaker_threshold", &raw.breaker_threshold, 5)?,
        millis("wechat.breaker_open_ms", &raw.breaker_open_ms, 10_000)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load(extra: &str) -> Result<Config, crate::config::ConfigError> {
        crate::config::minimal_with(extra)
    }

    fn refused_key(extra: &str) -> String {
        load(extra).expect_err(extra).key
    }

    #[test]
    fn fleet_scopes_parse_and_need_the_redis_store() {
        let redis = "[session]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\"\n";
        let config = load(&format!(
            "{redis}[login.rate_limit]\nper_minute = 30\nscope = \"fleet\"\n\
             [[routes]]\nprefix = \"/a\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"none\"\n\
             rate_limit = {{ per_minute = 5, scope = \"fleet\", on_store_error = \"refuse\" }}"
        ))
        .unwrap();
        let login = config.login.rate_limit.unwrap();
        assert_eq!(login.scope, LimitScope::Fleet(FleetFallback::Local));
        let route = config.routes[0].rate_limit.unwrap();
        assert_eq!(route.scope, LimitScope::Fleet(FleetFallback::Refuse));
        assert_eq!(
            config.login.refresh_rate_limit.unwrap().scope,
            LimitScope::Local
        );
        for (extra, key) in [
            (
                "[login.rate_limit]\nper_minute = 30\nscope = \"fleet\"".to_string(),
                "login.rate_limit.scope",
            ),
            (
                "[[routes]]\nprefix = \"/a\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"none\"\n\
                 rate_limit = { per_minute = 5, scope = \"fleet\" }"
                    .to_string(),
                "routes[0].rate_limit.scope",
            ),
            (
                format!("{redis}[login.rate_limit]\nper_minute = 30\nscope = \"global\""),
                "login.rate_limit.scope",
            ),
            (
                format!("{redis}[login.rate_limit]\nper_minute = 30\non_store_error = \"refuse\""),
                "login.rate_limit.on_store_error",
            ),
            (
                format!(
                    "{redis}[login.rate_limit]\nper_minute = 30\nscope = \"fleet\"\n\
                     on_store_error = \"allow\""
                ),
                "login.rate_limit.on_store_error",
            ),
        ] {
            assert_eq!(refused_key(&extra), key, "{extra}");
        }
    }

    #[test]
    fn operations_defaults() {
        let config = load("").unwrap();
        assert!(config.admin.enabled);
        assert_eq!(config.admin.listen.to_string(), "127.0.0.1:9090");
        assert!(!config.reload.watch);
        assert_eq!(config.log.format, LogFormat::Text);
        assert_eq!(config.login.rate_limit, Some(LOGIN_RATE_LIMIT));
        assert_eq!(config.wechat.retry_backoff, Duration::from_millis(200));
        assert_eq!(config.wechat.breaker_threshold, 5);
        assert_eq!(config.wechat.breaker_open, Duration::from_secs(10));
    }

    #[test]
    fn rate_limits_parse_and_zero_turns_them_off() {
        let config = load(
            "[login.rate_limit]\nper_minute = 0\n\
             [[routes]]\nprefix = \"/a\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"required\"\n\
             rate_limit = { per_minute = 30 }\n",
        )
        .unwrap();
        assert_eq!(config.login.rate_limit, None);
        let limit = config.routes[0].rate_limit.unwrap();
        assert_eq!((limit.per_minute, limit.burst), (30, 30));
    }

    #[test]
    fn bad_operations_settings_name_their_key() {
        assert_eq!(
            refused_key("[server]\nlisten = \"0.0.0.0:9090\""),
            "admin.listen"
        );
        assert_eq!(refused_key("[log]\nformat = \"xml\""), "log.format");
        assert_eq!(
            refused_key("[login.rate_limit]\nburst = 5"),
            "login.rate_limit.per_minute"
        );
        assert_eq!(
            refused_key(
                "[[routes]]\nprefix = \"/a\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"none\"\n\
                 rate_limit = { per_minute = 5, burst = 0 }"
            ),
            "routes[0].rate_limit.burst"
        );
        let base = "[wechat]\nappid = \"wx1\"\nsecret = \"s\"\n\
            [jwt]\nsecret = \"a-secret-that-is-at-least-32-bytes-long!\"\n";
        let env = [("WXGATE_WECHAT__BREAKER_THRESHOLD".into(), "0".into())];
        let refused = Config::from_toml(base, env).unwrap_err();
        assert_eq!(refused.key, "wechat.breaker_threshold");
        assert_eq!(
            refused_key("[reload]\ninterval_ms = 0"),
            "reload.interval_ms"
        );
        // A disabled admin listener may share nothing and collides with nothing.
        assert!(load("[server]\nlisten = \"0.0.0.0:9090\"\n[admin]\nenabled = false").is_ok());
    }

    #[test]
    fn listen_addresses_overlap_on_the_same_port_and_a_shared_or_wildcard_ip() {
        let address = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert!(overlaps(address("127.0.0.1:9090"), address("0.0.0.0:9090")));
        assert!(overlaps(address("0.0.0.0:9090"), address("10.0.0.1:9090")));
        assert!(!overlaps(
            address("127.0.0.1:9090"),
            address("127.0.0.2:9090")
        ));
        assert!(!overlaps(
            address("127.0.0.1:9090"),
            address("127.0.0.1:8080")
        ));
        // Ephemeral ports (tests) never collide.
        assert!(!overlaps(address("127.0.0.1:0"), address("127.0.0.1:0")));
    }
}

/// Checks a filter directive such as `info` or `wxgate=debug,hyper=warn`.
pub fn parse_filter(directives: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(directives).map_err(|error| format!("{directives:?}: {error}"))
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line, fields at the top level, for log collectors.
    Json,
}
