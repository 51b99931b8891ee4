//! `[session]` validation: the store (embedded file, memory or Redis), its file or Redis
//! connection, and the policy when it is down.

use super::raw::RawSession;
use super::validate::{positive, secs};
use std::path::PathBuf;

use super::{ConfigError, SessionConfig, StoreErrorPolicy, StoreKind};

impl RawSession {
    pub(super) fn validate(&self) -> Result<SessionConfig, ConfigError> {
        let defaults = SessionConfig::default();
        let store = match self.store.as_deref().unwrap_or("embedded") {
            "redis" => StoreKind::Redis(self.redis()?),
            local @ ("memory" | "embedded") => {
                if let Some(key) = self.redis_key_set() {
                    return Err(ConfigError::new(
                        format!("session.{key}"),
                        "is only used with store = \"redis\"",
                    ));
                }
                if local == "memory" {
                    StoreKind::Memory
                } else {
                    StoreKind::Embedded { path: self.path()? }
                }
            }
            other => {
                return Err(ConfigError::new(
                    "session.store",
                    format!("{other:?} is not one of \"embedded\", \"memory\", \"redis\""),
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
            store,
            on_store_error,
        })
    }

    /// `session.path`: the embedded database file (relative paths from the working directory).
    /// Also read, and ignored, with the other stores.
    fn path(&self) -> Result<PathBuf, ConfigError> {
        match self.path.as_deref() {
            None => Ok(PathBuf::from(super::DEFAULT_SESSION_PATH)),
            Some("") => Err(ConfigError::new("session.path", "must not be empty")),
            Some(path) if path.ends_with('/') => Err(ConfigError::new(
                "session.path",
                "names a directory; give the database file (e.g. data/wxgate.db)",
            )),
            Some(path) => Ok(PathBuf::from(path)),
        }
    }
}
