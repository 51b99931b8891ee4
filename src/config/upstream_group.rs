//! A route's `upstream` (one URL or a list of them), `balance` and `[routes.health]`, as plain
//! data. The running group (instances, health, the choice of an instance) is
//! `upstream::group`'s.

use std::path::PathBuf;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use serde::Deserialize;

use super::raw::{Flex, StringList};
use super::validate::{endpoint_path, millis, positive};
use super::ConfigError;

/// How a route's requests are spread over its instances (`balance`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    /// Each instance in turn (the default).
    RoundRobin,
    /// The instance with the fewest requests in flight (until their response bodies end).
    LeastRequests,
    /// The same openid to the same instance while it is healthy (requests without one: in turn).
    OpenidHash,
}

impl Balance {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastRequests => "least_requests",
            Balance::OpenidHash => "openid_hash",
        }
    }
}

/// `[routes.health]`: when an instance is taken out of a group and when it comes back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamHealth {
    /// Failures in a row (refused, timed out, connection lost) that take an instance out.
    pub unhealthy_after: u32,
    /// How long an instance taken out by failures stays out before it is tried again.
    pub retry_after: Duration,
    /// The path of the active check (`GET`, healthy on 2xx); `None`: no active checks.
    pub path: Option<String>,
    /// Time between two active checks of an instance.
    pub interval: Duration,
    /// How long an active check may take (connecting and the response head).
    pub timeout: Duration,
}

impl Default for UpstreamHealth {
    fn default() -> Self {
        UpstreamHealth {
            unhealthy_after: 3,
            retry_after: Duration::from_millis(10_000),
            path: None,
            interval: Duration::from_millis(5_000),
            timeout: Duration::from_millis(1_000),
        }
    }
}

/// A route's upstream: its instances (one or more, the same scheme and path), the CA file for
/// https, how requests are spread and the health settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamGroupConfig {
    /// `http` or `https`, the same for every instance.
    pub scheme: Scheme,
    /// Host and port of each instance, in the order configured; never empty, no two alike.
    pub instances: Vec<Authority>,
    /// A path prefix to prepend, without a trailing slash; empty for none.
    pub base_path: String,
    /// Extra CA certificates trusted for this https upstream, besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// How requests are spread over the instances.
    pub balance: Balance,
    /// When instances are taken out and brought back.
    pub health: UpstreamHealth,
}

/// `[routes.health]` as written.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawHealth {
    unhealthy_after: Option<Flex<u32>>,
    retry_after_ms: Option<Flex<u64>>,
    path: Option<String>,
    interval_ms: Option<Flex<u64>>,
    timeout_ms: Option<Flex<u64>>,
}

/// The upstream-related keys of a route as written.
pub(super) struct RawUpstreamKeys<'a> {
    pub(super) upstream: Option<&'a StringList>,
    pub(super) ca_file: Option<&'a str>,
    pub(super) balance: Option<&'a str>,
    pub(super) health: Option<&'a RawHealth>,
}

impl RawUpstreamKeys<'_> {
    /// The route's upstream group, `None` for a route without `upstream`. Errors name
    /// `{route}.KEY`.
    pub(super) fn validate(&self, route: &str) -> Result<Option<UpstreamGroupConfig>, ConfigError> {
        let key = format!("{route}.upstream");
        let Some(list) = self.upstream else {
            for (present, name) in [
                (self.ca_file.is_some(), "ca_file"),
                (self.balance.is_some(), "balance"),
                (self.health.is_some(), "health"),
            ] {
                if present {
                    return Err(ConfigError::new(
                        format!("{route}.{name}"),
                        "is for a route with an upstream",
                    ));
                }
            }
            return Ok(None);
        };
        let urls = list.entries();
        let Some((first, rest)) = urls.split_first() else {
            return Err(ConfigError::new(key, "names no upstream URL"));
        };
        let first = upstream_url(&key, first)?;
        let mut instances = vec![first.authority];
        for text in rest {
            let url = upstream_url(&key, text)?;
            if url.scheme != first.scheme || url.base_path != first.base_path {
                return Err(ConfigError::new(
                    key,
                    format!(
                        "{text:?}: every instance of a route needs the same scheme and path as the first"
                    ),
                ));
            }
            if instances
                .iter()
                .any(|known| known.as_str().eq_ignore_ascii_case(url.authority.as_str()))
            {
                return Err(ConfigError::new(key, format!("{text:?} is listed twice")));
            }
            instances.push(url.authority);
        }
        let ca_file = match self.ca_file {
            Some(_) if first.scheme != Scheme::HTTPS => {
                return Err(ConfigError::new(
                    format!("{route}.ca_file"),
                    "only https upstreams use a CA file",
                ))
            }
            Some(file) => Some(PathBuf::from(file)),
            None => None,
        };
        let balance = match self.balance {
            None | Some("round_robin") => Balance::RoundRobin,
            Some("least_requests") => Balance::LeastRequests,
            Some("openid_hash") => Balance::OpenidHash,
            Some(other) => {
                return Err(ConfigError::new(
                    format!("{route}.balance"),
                    format!(
                    "{other:?} is not one of \"round_robin\", \"least_requests\", \"openid_hash\""
                ),
                ))
            }
        };
        let health = match self.health {
            Some(raw) => raw.validate(&format!("{route}.health"))?,
            None => UpstreamHealth::default(),
        };
        Ok(Some(UpstreamGroupConfig {
            scheme: first.scheme,
            instances,
            base_path: first.base_path,
            ca_file,
            balance,
            health,
        }))
    }
}

impl RawHealth {
    fn validate(&self, key: &str) -> Result<UpstreamHealth, ConfigError> {
        let defaults = UpstreamHealth::default();
        let field = |name: &str| format!("{key}.{name}");
        let ms = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let path = match &self.path {
            Some(path) => Some(endpoint_path(&field("path"), Some(path), "/")?),
            None => None,
        };
        let interval = millis(
            &field("interval_ms"),
            &self.interval_ms,
            ms(defaults.interval),
        )?;
        let timeout = millis(&field("timeout_ms"), &self.timeout_ms, ms(defaults.timeout))?;
        if path.is_some() && timeout > interval {
            return Err(ConfigError::new(
                field("timeout_ms"),
                "must not exceed interval_ms: a check ends before the next one starts",
            ));
        }
        for (present, name) in [
            (self.interval_ms.is_some(), "interval_ms"),
            (self.timeout_ms.is_some(), "timeout_ms"),
        ] {
            if present && path.is_none() {
                return Err(ConfigError::new(
                    field(name),
                    "is for active checks: set path too",
                ));
            }
        }
        Ok(UpstreamHealth {
            unhealthy_after: positive(
                &field("unhealthy_after"),
                &self.unhealthy_after,
                defaults.unhealthy_after,
            )?,
            retry_after: millis(
                &field("retry_after_ms"),
                &self.retry_after_ms,
                ms(defaults.retry_after),
            )?,
            path,
            interval,
            timeout,
        })
    }
}

/// One instance's URL as parsed: `http(s)://host:port[/base/path]`.
struct ParsedUrl {
    scheme: Scheme,
    authority: Authority,
    base_path: String,
}

/// An `upstream` URL: `http://host:port[/base/path]`, no credentials, no query.
fn upstream_url(key: &str, text: &str) -> Result<ParsedUrl, ConfigError> {
    let uri: http::Uri = text
        .parse()
        .map_err(|error| ConfigError::new(key, format!("{text:?} is not a URL: {error}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(ConfigError::new(
            key,
            format!("{text:?} must start with http:// or https://"),
        ));
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
    if http::HeaderValue::from_str(authority.as_str()).is_err() {
        return Err(ConfigError::new(key, format!("{text:?} has no valid host")));
    }
    Ok(ParsedUrl {
        scheme,
        authority,
        base_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn route(lines: &str) -> Result<Config, ConfigError> {
        Config::from_toml(
            &format!(
                "[wechat]\nappid = \"wx1\"\nsecret = \"s\"\n\
                 [jwt]\nsecret = \"a-secret-that-is-at-least-32-bytes-long!\"\n\
                 [[routes]]\nprefix = \"/api\"\nauth = \"none\"\n{lines}"
            ),
            std::iter::empty(),
        )
    }

    fn refused(lines: &str) -> (String, String) {
        let error = route(lines).unwrap_err();
        (error.key.clone(), error.to_string())
    }

    #[test]
    fn one_url_is_a_group_of_one_with_the_defaults() {
        let config = route("upstream = \"http://127.0.0.1:9000/base\"").unwrap();
        let group = config.routes[0].upstream.clone().unwrap();
        assert_eq!(
            group.instances,
            vec![Authority::from_static("127.0.0.1:9000")]
        );
        assert_eq!(group.base_path, "/base");
        assert_eq!(group.balance, Balance::RoundRobin);
        assert_eq!(group.health, UpstreamHealth::default());
    }

    #[test]
    fn a_list_with_balance_and_health_parses_from_the_file_and_the_environment() {
        let config = route(
            "upstream = [\"http://a:1\", \"http://b:2\"]\nbalance = \"openid_hash\"\n\
             [routes.health]\nunhealthy_after = 2\nretry_after_ms = 500\npath = \"/healthz\"\n\
             interval_ms = 200\ntimeout_ms = 100\n",
        )
        .unwrap();
        let group = config.routes[0].upstream.clone().unwrap();
        assert_eq!(group.instances.len(), 2);
        assert_eq!(group.balance, Balance::OpenidHash);
        assert_eq!(group.health.unhealthy_after, 2);
        assert_eq!(group.health.retry_after, Duration::from_millis(500));
        assert_eq!(group.health.path.as_deref(), Some("/healthz"));
        assert_eq!(group.health.interval, Duration::from_millis(200));

        let from_env = Config::from_toml(
            "[wechat]\nappid = \"wx1\"\nsecret = \"s\"\n\
             [jwt]\nsecret = \"a-secret-that-is-at-least-32-bytes-long!\"\n\
             [[routes]]\nprefix = \"/api\"\nauth = \"none\"\nupstream = \"http://a:1\"\n",
            [(
                "WXGATE_ROUTES__0__UPSTREAM".to_string(),
                "http://a:1, http://b:2,http://c:3".to_string(),
            )],
        )
        .unwrap();
        let instances = &from_env.routes[0].upstream.as_ref().unwrap().instances;
        assert_eq!(instances.len(), 3);
    }

    #[test]
    fn mismatched_duplicate_and_misplaced_keys_are_refused_by_key() {
        for (lines, key, says) in [
            ("upstream = []", "routes[0].upstream", "names no upstream"),
            (
                "upstream = [\"http://a:1\", \"https://b:2\"]",
                "routes[0].upstream",
                "same scheme and path",
            ),
            (
                "upstream = [\"http://a:1/x\", \"http://b:2/y\"]",
                "routes[0].upstream",
                "same scheme and path",
            ),
            (
                "upstream = [\"http://a:1\", \"http://A:1\"]",
                "routes[0].upstream",
                "listed twice",
            ),
            (
                "upstream = \"http://a:1\"\nbalance = \"random\"",
                "routes[0].balance",
                "least_requests",
            ),
            ("balance = \"round_robin\"", "routes[0].balance", "with an upstream"),
            (
                "upstream = \"http://a:1\"\n[routes.health]\nunhealthy_after = 0",
                "routes[0].health.unhealthy_after",
                "greater than 0",
            ),
            (
                "upstream = \"http://a:1\"\n[routes.health]\ninterval_ms = 100",
                "routes[0].health.interval_ms",
                "set path too",
            ),
            (
                "upstream = \"http://a:1\"\n[routes.health]\npath = \"/h\"\ninterval_ms = 100\ntimeout_ms = 200",
                "routes[0].health.timeout_ms",
                "must not exceed",
            ),
            (
                "upstream = \"http://a:1\"\n[routes.health]\npath = \"h\"",
                "routes[0].health.path",
                "must start with '/'",
            ),
            (
                "upstream = \"http://a:1\"\n[routes.health]\nbogus = 1",
                "routes[0].health.bogus",
                "unknown field",
            ),
        ] {
            let (refused_key, message) = refused(lines);
            assert_eq!(refused_key, key, "{lines}: {message}");
            assert!(message.contains(says), "{lines}: {message}");
        }
    }
}
