//! `[session] store = "redis"`: where Redis is (a URL, or Sentinels and the master's name), its
//! password, and TLS (a CA file, a client certificate). Errors name `session.KEY`.

use std::path::PathBuf;

use super::raw::RawSession;
use super::validate::millis;
use super::{ConfigError, RedisConfig, RedisTarget, RedisTls, Secret};

/// The port a Sentinel listens on unless an entry names one.
const SENTINEL_PORT: u16 = 26379;

impl RawSession {
    /// The first Redis-only key that is set (`redis_url`, `redis_sentinels`, ...), for the error
    /// of a config that sets one with another store.
    pub(super) fn redis_key_set(&self) -> Option<&'static str> {
        [
            ("redis_url", self.redis_url.is_some()),
            ("redis_password", self.redis_password.is_some()),
            ("redis_tls", self.redis_tls.is_some()),
            ("redis_ca_file", self.redis_ca_file.is_some()),
            (
                "redis_client_cert_file",
                self.redis_client_cert_file.is_some(),
            ),
            (
                "redis_client_key_file",
                self.redis_client_key_file.is_some(),
            ),
            ("redis_sentinels", self.redis_sentinels.is_some()),
            (
                "redis_sentinel_master",
                self.redis_sentinel_master.is_some(),
            ),
            (
                "redis_sentinel_password",
                self.redis_sentinel_password.is_some(),
            ),
        ]
        .into_iter()
        .find_map(|(key, set)| set.then_some(key))
    }

    pub(super) fn redis(&self) -> Result<RedisConfig, ConfigError> {
        let url = self.redis_url.as_deref().filter(|url| !url.is_empty());
        let sentinels = self
            .redis_sentinels
            .as_ref()
            .map(|list| list.entries())
            .filter(|entries| !entries.is_empty());
        let password = secret(&self.redis_password);
        let (target, tls) = match (url, sentinels) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "session.redis_sentinels",
                    "set redis_url or redis_sentinels, not both",
                ))
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "session.redis_url",
                    "is required with store = \"redis\" (or redis_sentinels)",
                ))
            }
            (Some(url), None) => self.url_target(url, password.is_some())?,
            (None, Some(entries)) => self.sentinel_target(&entries)?,
        };
        let tls = match tls {
            true => Some(RedisTls {
                ca_file: self.redis_ca_file.as_deref().map(PathBuf::from),
                client_cert: match (&self.redis_client_cert_file, &self.redis_client_key_file) {
                    (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
                    (None, None) => None,
                    (Some(_), None) => {
                        return Err(ConfigError::new(
                            "session.redis_client_key_file",
                            "is required with redis_client_cert_file",
                        ))
                    }
                    (None, Some(_)) => {
                        return Err(ConfigError::new(
                            "session.redis_client_cert_file",
                            "is required with redis_client_key_file",
                        ))
                    }
                },
            }),
            false => {
                let tls_key = [
                    ("redis_ca_file", self.redis_ca_file.is_some()),
                    (
                        "redis_client_cert_file",
                        self.redis_client_cert_file.is_some(),
                    ),
                    (
                        "redis_client_key_file",
                        self.redis_client_key_file.is_some(),
                    ),
                ]
                .into_iter()
                .find_map(|(key, set)| set.then_some(key));
                if let Some(key) = tls_key {
                    return Err(ConfigError::new(
                        format!("session.{key}"),
                        "is for TLS: a rediss:// URL, or redis_tls = true with redis_sentinels",
                    ));
                }
                None
            }
        };
        Ok(RedisConfig {
            target,
            password,
            tls,
            key_prefix: self
                .redis_key_prefix
                .clone()
                .unwrap_or_else(|| "wxgate:".to_string()),
            timeout: millis("session.redis_timeout_ms", &self.redis_timeout_ms, 1_000)?,
        })
    }

    /// `redis_url`, and whether it asks for TLS (`rediss://`).
    fn url_target(&self, url: &str, password: bool) -> Result<(RedisTarget, bool), ConfigError> {
        let key = "session.redis_url";
        let tls = url.starts_with("rediss://");
        if !tls
            && !url.starts_with("redis://")
            && !url.starts_with("redis+unix://")
            && !url.starts_with("unix://")
        {
            return Err(ConfigError::new(
                key,
                "must be a redis://, rediss:// or unix:// URL",
            ));
        }
        for (set, other) in [
            (self.redis_tls.is_some(), "redis_tls"),
            (
                self.redis_sentinel_master.is_some(),
                "redis_sentinel_master",
            ),
            (
                self.redis_sentinel_password.is_some(),
                "redis_sentinel_password",
            ),
        ] {
            if set {
                return Err(ConfigError::new(
                    format!("session.{other}"),
                    "is for redis_sentinels (with redis_url, rediss:// turns TLS on)",
                ));
            }
        }
        let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(|error| {
            ConfigError::new(
                key,
                format!("is not a usable Redis URL: {}", error.category()),
            )
        })?;
        if password && info.redis_settings().password().is_some() {
            return Err(ConfigError::new(
                "session.redis_password",
                "redis_url carries a password already; keep one of them",
            ));
        }
        Ok((RedisTarget::Url(Secret::new(url)), tls))
    }

    /// `redis_sentinels` (`host[:port]` each) and `redis_sentinel_master`, and whether TLS is
    /// on (`redis_tls`).
    fn sentinel_target(&self, entries: &[&str]) -> Result<(RedisTarget, bool), ConfigError> {
        let key = "session.redis_sentinels";
        let sentinels = entries
            .iter()
            .map(|entry| sentinel_address(entry).ok_or(entry))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|entry| {
                ConfigError::new(key, format!("{entry:?} is not host or host:port"))
            })?;
        let master = match self.redis_sentinel_master.as_deref().map(str::trim) {
            Some(master) if !master.is_empty() => master.to_string(),
            _ => {
                return Err(ConfigError::new(
                    "session.redis_sentinel_master",
                    "is required with redis_sentinels: the name the Sentinels monitor",
                ))
            }
        };
        let tls = super::raw::number("session.redis_tls", &self.redis_tls, false)?;
        let target = RedisTarget::Sentinel {
            sentinels,
            master,
            password: secret(&self.redis_sentinel_password),
        };
        Ok((target, tls))
    }
}

/// A non-empty value as a secret.
fn secret(value: &Option<String>) -> Option<Secret> {
    value
        .as_deref()
        .filter(|value| !value.is_empty())
        .map(Secret::new)
}

/// `host`, `host:port` or `[v6]:port`.
fn sentinel_address(entry: &str) -> Option<(String, u16)> {
    let authority: http::uri::Authority = entry.parse().ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let port = match authority.as_str().len() > authority.host().len() {
        true => authority.port_u16()?,
        false => SENTINEL_PORT,
    };
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    Some((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, StoreKind};

    fn redis(lines: &str) -> Result<RedisConfig, ConfigError> {
        let config =
            crate::config::minimal_with(&format!("[session]\nstore = \"redis\"\n{lines}"))?;
        match config.session.store {
            StoreKind::Redis(redis) => Ok(redis),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_url_a_tls_url_and_sentinels_parse() {
        let plain = redis("redis_url = \"redis://127.0.0.1:6379/2\"").unwrap();
        assert!(plain.tls.is_none());
        let tls = redis(
            "redis_url = \"rediss://redis.example:6380\"\nredis_ca_file = \"/etc/ca.pem\"\n\
             redis_client_cert_file = \"/etc/c.pem\"\nredis_client_key_file = \"/etc/k.pem\"\n\
             redis_password = \"pw\"",
        )
        .unwrap();
        let files = tls.tls.unwrap();
        assert_eq!(files.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert!(files.client_cert.is_some());
        assert_eq!(tls.password, Some(Secret::new("pw")));

        let sentinel = redis(
            "redis_sentinels = [\"10.0.0.1:26380\", \"sentinel-b\"]\nredis_sentinel_master = \"mymaster\"\n\
             redis_tls = true\nredis_sentinel_password = \"sp\"",
        )
        .unwrap();
        let RedisTarget::Sentinel {
            sentinels,
            master,
            password,
        } = sentinel.target
        else {
            panic!("sentinels")
        };
        assert_eq!(
            sentinels,
            [
                ("10.0.0.1".to_string(), 26380),
                ("sentinel-b".to_string(), SENTINEL_PORT)
            ]
        );
        assert_eq!(master, "mymaster");
        assert_eq!(password, Some(Secret::new("sp")));
        assert!(sentinel.tls.is_some());

        let from_env = Config::from_toml(
            "[wechat]\nappid = \"wx1\"\nsecret = \"s\"\n\
             [jwt]\nsecret = \"a-secret-that-is-at-least-32-bytes-long!\"\n\
             [session]\nstore = \"redis\"\nredis_sentinel_master = \"m\"\n",
            [(
                "WXGATE_SESSION__REDIS_SENTINELS".to_string(),
                "a:1,b:2".to_string(),
            )],
        )
        .unwrap();
        assert!(matches!(
            from_env.session.store,
            StoreKind::Redis(RedisConfig {
                target: RedisTarget::Sentinel { .. },
                ..
            })
        ));
    }

    #[test]
    fn redis_passwords_never_show_in_debug_or_check_output() {
        let env = [
            ("WXGATE_SESSION__REDIS_PASSWORD", "redis-server-pw-1234"),
            (
                "WXGATE_SESSION__REDIS_SENTINEL_PASSWORD",
                "sentinel-pw-5678",
            ),
        ];
        let config = Config::from_toml(
            "[wechat]\nappid = \"wx1\"\nsecret = \"s\"\n\
             [jwt]\nsecret = \"a-secret-that-is-at-least-32-bytes-long!\"\n\
             [session]\nstore = \"redis\"\nredis_sentinels = [\"a:1\"]\nredis_sentinel_master = \"m\"\n",
            env.map(|(name, value)| (name.to_string(), value.to_string())),
        )
        .unwrap();
        let rendered = config.to_redacted_toml();
        assert!(
            rendered.contains("redis_sentinels = [\"a:1\"]"),
            "{rendered}"
        );
        for shown in [format!("{config:?}"), rendered] {
            assert!(!shown.contains("redis-server-pw"), "{shown}");
            assert!(!shown.contains("sentinel-pw"), "{shown}");
        }
        Config::from_toml(&config.to_redacted_toml(), std::iter::empty())
            .expect("the printed config loads again");
    }

    #[test]
    fn contradictions_are_refused_by_key() {
        for (lines, key) in [
            ("", "session.redis_url"),
            ("redis_url = \"http://x\"", "session.redis_url"),
            (
                "redis_url = \"redis://a\"\nredis_sentinels = [\"b\"]",
                "session.redis_sentinels",
            ),
            (
                "redis_url = \"redis://:pw@a\"\nredis_password = \"x\"",
                "session.redis_password",
            ),
            (
                "redis_url = \"redis://a\"\nredis_ca_file = \"/ca.pem\"",
                "session.redis_ca_file",
            ),
            (
                "redis_url = \"redis://a\"\nredis_tls = true",
                "session.redis_tls",
            ),
            (
                "redis_url = \"rediss://a\"\nredis_client_cert_file = \"/c.pem\"",
                "session.redis_client_key_file",
            ),
            (
                "redis_sentinels = [\"a:1\"]",
                "session.redis_sentinel_master",
            ),
            (
                "redis_sentinels = [\"a:x\"]\nredis_sentinel_master = \"m\"",
                "session.redis_sentinels",
            ),
        ] {
            let error = redis(lines).expect_err(lines);
            assert_eq!(error.key, key, "{lines}: {error}");
        }
        let embedded = crate::config::minimal_with("[session]\nredis_sentinels = [\"a\"]");
        assert_eq!(embedded.unwrap_err().key, "session.redis_sentinels");
    }
}
