//! Server-side sessions: what WeChat gave at login and the client must never see, above all the
//! `session_key` that decrypts the user's data. Kept in memory (moka: bounded, expiring); keyed by
//! openid, because WeChat keeps one valid session_key per user and a new login replaces it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::{Secret, SessionConfig};

/// One user's login state as held by the gateway.
#[derive(Debug)]
pub struct Session {
    /// The user's unionid, when known.
    pub unionid: Option<String>,
    /// The mini-program the user logged in to.
    pub appid: String,
    /// WeChat's key for this user's encrypted data; never leaves the gateway.
    pub session_key: Secret,
    /// When the login happened.
    pub created_at: SystemTime,
}

/// Holds sessions by openid; cheap to clone, shared by every connection.
#[derive(Clone)]
pub struct SessionStore {
    sessions: moka::future::Cache<String, Arc<Session>>,
}

impl SessionStore {
    /// An in-memory store bounded by `max_entries`, forgetting a session `ttl` after its login.
    pub fn in_memory(config: &SessionConfig) -> Self {
        SessionStore {
            sessions: moka::future::Cache::builder()
                .max_capacity(config.max_entries)
                .time_to_live(config.ttl)
                .build(),
        }
    }

    /// Records a login, replacing the user's previous session.
    pub async fn put(&self, openid: &str, session: Session) {
        self.sessions
            .insert(openid.to_string(), Arc::new(session))
            .await;
    }

    /// The user's current session, if it has not expired.
    pub async fn get(&self, openid: &str) -> Option<Arc<Session>> {
        self.sessions.get(openid).await
    }
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("entries", &self.sessions.entry_count())
            .finish()
    }
}

/// The default `session.ttl_secs`: how long a session_key is kept when the config says nothing.
pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    fn session(key: &str) -> Session {
        Session {
            unionid: None,
            appid: "wxapp".into(),
            session_key: Secret::new(key),
            created_at: SystemTime::now(),
        }
    }

    #[tokio::test]
    async fn a_new_login_replaces_the_session_key() {
        let store = SessionStore::in_memory(&SessionConfig {
            ttl: DEFAULT_TTL,
            max_entries: 10,
        });
        store.put("o1", session("first")).await;
        store.put("o1", session("second")).await;
        assert_eq!(
            store.get("o1").await.unwrap().session_key.expose(),
            "second"
        );
        assert!(store.get("o2").await.is_none());
    }

    #[tokio::test]
    async fn sessions_expire_after_their_ttl() {
        let store = SessionStore::in_memory(&SessionConfig {
            ttl: Duration::from_millis(50),
            max_entries: 10,
        });
        store.put("o1", session("k")).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(store.get("o1").await.is_none());
    }
}
