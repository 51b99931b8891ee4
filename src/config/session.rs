//! `[session]` validation: the store, its Redis connection, and the policy when it is down.

use super::raw::RawSession;
use super::validate::{millis, positive, secs};
use super::{ConfigError, RedisConfig, Secret, SessionConfig, StoreErrorPolicy};

impl RawSession {
    pub(super) fn validate(&self) -> Result<SessionConfig, ConfigError> {
        let defaults = SessionConfig::default();
        let redis = match self.store.as_deref().unwrap_or("memory") {
            "memory" => {
                if self.redis_url.is_some() {
                    return Err(ConfigError::new(
                        "session.redis_url",
                        "is only used with store = \"redis\"",
                    ));
                }
                None
            }
            "redis" => Some(self.redis()?),
            other => {
                return Err(ConfigError::new(
                    "session.store",
                    format!("{other:?} is not one of \"memory\", \"redis\""),
                ))
            }
        };
        let on_store_error = match self.on_store_error.as_deref().unwrap_or("refuse") {
            "refuse" => StoreErrorPolicy::Refuse,
            "signature" => StoreErrorPolicy::Signature,
            other => {
                return Err(ConfigError::new(
                    "session.on_store_error",
                    format!("{other:?} is not one of \"refuse\", \"signature\""),
                ))
            }
        };
        Ok(SessionConfig {
            ttl: secs("session.ttl_secs", &self.ttl_secs, defaults.ttl.as_secs())?,
            max_entries: positive(
                "session.max_entries",
                &self.max_entries,
                defaults.max_entries,
            )?,
            redis,
            on_store_error,
        })
    }

    fn redis(&self) -> Result<RedisConfig, ConfigError> {
        let key = "session.redis_url";
        let url = match self.redis_url.as_deref() {
            Some(url) if !url.is_empty() => url,
            _ => return Err(ConfigError::new(key, "is required with store = \"redis\"")),
        };
        if !url.starts_with("redis://")
            && !url.starts_with("redis+unix://")
            && !url.starts_with("unix://")
        {
            return Err(ConfigError::new(key, "must be a redis:// or unix:// URL"));
        }
        let config = RedisConfig {
            url: Secret::new(url),
            key_prefix: self
                .redis_key_prefix
                .clone()
                .unwrap_or_else(|| "wxgate:".to_string()),
            timeout: millis("session.redis_timeout_ms", &self.redis_timeout_ms, 1_000)?,
        };
        redis::Client::open(config.url.expose())
            .map(drop)
            .map_err(|error| format!("is not a usable Redis URL: {}", error.category()))
            .map_err(|message| ConfigError::new(key, message))?;
        Ok(config)
    }
}
