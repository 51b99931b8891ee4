//! Server-side login sessions and token revocation, behind one trait with three stores: an
//! embedded database file (`session/embedded.rs`, the default: one gateway, kept across restarts),
//! in memory (moka and `session/deny_list.rs`: one gateway, lost on restart) and Redis
//! (`session/redis.rs`: shared by every replica).
//!
//! A session is per user and app: a new login replaces it, and with it the `session_key` (WeChat
//! keeps one valid key per user). It records the login's `sid`, which every token of that login
//! carries. Requests are checked against a deny-list of revoked `sid`s and `jti`s (logout), not
//! against the session itself; refresh and decryption need the live session. A store that lost
//! its contents starts a new generation, and revocable tokens issued before it are refused.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moka::ops::compute::Op;
use serde::{Deserialize, Serialize};

use crate::config::{RateLimit, Secret, SessionConfig, StoreKind};

mod claims;
mod deny_list;
mod embedded;
mod redis;
use deny_list::{DenyList, Recorded};
use embedded::EmbeddedStore;
pub(crate) use redis::RedisStore;

pub use crate::config::{DEFAULT_SESSION_PATH as DEFAULT_PATH, DEFAULT_SESSION_TTL as DEFAULT_TTL};

/// One user's login, as the gateway holds it; never sent to a client.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    /// The login's id, carried by its tokens as `sid`.
    pub sid: String,
    /// The user's openid.
    pub openid: String,
    /// The user's unionid, when known.
    pub unionid: Option<String>,
    /// The mini-program the user logged in to.
    pub appid: String,
    /// WeChat's key for this user's encrypted data; never leaves the gateway.
    #[serde(with = "secret_text")]
    pub session_key: Secret,
    /// When the login happened, in Unix seconds.
    pub created_at: u64,
    /// When the session was last used (login, refresh, decryption), in Unix seconds.
    pub last_seen: u64,
}

/// The session store could not be reached or answered nonsense; the request is answered per
/// `session.on_store_error`.
#[derive(Debug, thiserror::Error)]
#[error("session store unavailable: {0}")]
pub struct StoreError(pub String);

/// Where sessions and revocations live.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// Whether the store answers (readiness checks); the in-memory store always does.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Checks made once at start: an error names what would make the store break a promise (a
    /// Redis that may evict revocations) and stops the gateway.
    async fn check_at_start(&self) -> Result<(), String> {
        Ok(())
    }
    /// Records a login, replacing the user's previous session (and its session_key).
    async fn save(&self, session: &Session) -> Result<(), StoreError>;
    /// The user's current session, its `last_seen` set to now; `None` once it has expired or
    /// ended.
    async fn touch(&self, appid: &str, openid: &str) -> Result<Option<Session>, StoreError>;
    /// Ends the user's session if it is still login `sid` (a newer login is left alone).
    async fn end(&self, appid: &str, openid: &str, sid: &str) -> Result<(), StoreError>;
    /// Refuses the given ids (`sid:...`, `jti:...`) for `ttl`. An id revoked already stays so
    /// (no new entry); an error, never a silently dropped revocation, when it cannot be kept.
    async fn revoke(&self, ids: &[String], ttl: Duration) -> Result<(), StoreError>;
    /// Whether any of the given ids is revoked.
    async fn any_revoked(&self, ids: &[String]) -> Result<bool, StoreError>;
    /// Records that WeChat no longer accepts the session_key of login `sid` (checksession said
    /// so), for `ttl`: decryption with it is refused at once. Kept beside the revocations, so it
    /// reaches every replica and survives restarts as they do.
    async fn mark_key_stale(&self, sid: &str, ttl: Duration) -> Result<(), StoreError> {
        self.revoke(&[stale_key_id(sid)], ttl).await
    }
    /// Whether the session_key of login `sid` was found stale.
    async fn key_stale(&self, sid: &str) -> Result<bool, StoreError> {
        self.any_revoked(&[stale_key_id(sid)]).await
    }
    /// How many revocations have been recorded so far, when the store can tell without a round
    /// trip (in memory): a token found not revoked at one count is still not revoked at the same
    /// count, so the check can be skipped (see `token::NotRevokedMemo`). `None`: always ask.
    fn revocation_count(&self) -> Option<u64> {
        None
    }
    /// When the store's current contents began (Unix seconds; 0: the store keeps nothing across
    /// restarts, so there is nothing to lose). A store found empty or replaced (a new or deleted
    /// database file, a Redis flushed or restarted without persistence) starts a new generation,
    /// and every revocable token issued before it is refused: its logout may have been lost.
    fn generation(&self) -> u64 {
        0
    }
    /// The access_token another replica fetched for `appid`, with its remaining lifetime
    /// (always `None` in memory: one gateway has nobody to share with).
    async fn shared_access_token(
        &self,
        appid: &str,
    ) -> Result<Option<(Secret, Duration)>, StoreError>;
    /// Shares a freshly fetched access_token for `ttl`.
    async fn share_access_token(
        &self,
        appid: &str,
        token: &Secret,
        ttl: Duration,
    ) -> Result<(), StoreError>;
    /// Forgets a shared access_token WeChat refused, unless another replica already replaced it.
    async fn drop_access_token(&self, appid: &str, stale: &Secret) -> Result<(), StoreError>;
    /// Takes a fleet-wide lock named `name` (true: taken), which expires by itself after `ttl`.
    async fn try_lock(&self, name: &str, ttl: Duration) -> Result<bool, StoreError>;
    /// Takes one request from the fleet-wide limit `key` (`scope = "fleet"`): `Ok(Ok(()))`
    /// allowed, `Ok(Err(wait))` refused until `wait` has passed. Only a store every replica
    /// shares can count for the fleet; the others answer an error (the config refuses fleet
    /// limits without the Redis store).
    async fn take_fleet_request(
        &self,
        key: &str,
        limit: RateLimit,
    ) -> Result<Result<(), Duration>, StoreError> {
        let _ = (key, limit);
        Err(StoreError(
            "only the Redis store counts across the fleet".into(),
        ))
    }
    /// Releases a lock taken with `try_lock`.
    async fn unlock(&self, name: &str) -> Result<(), StoreError>;
    /// Claims `name` for `ttl` (true: nobody held it), as every gateway sharing the store sees
    /// it: a message push delivered once is not forwarded again.
    async fn claim(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.try_lock(name, ttl).await
    }
    /// Gives up a claim (a delivery that failed, so its retry gets through).
    async fn release_claim(&self, name: &str) -> Result<(), StoreError> {
        self.unlock(name).await
    }
}

/// Revocations recorded by in-memory stores, all of them: a reload that builds a new store never
/// makes an old count mean the same again. An entry only ever leaves a deny-list (by expiring),
/// so while the count stays put, a token found not revoked stays not revoked.
static MEMORY_REVOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Builds the configured store.
pub(crate) fn from_config(
    config: &SessionConfig,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<Arc<dyn SessionStore>, String> {
    Ok(match &config.store {
        StoreKind::Redis(redis) => Arc::new(RedisStore::new(redis, config.ttl, metrics)?),
        StoreKind::Embedded { path } => Arc::new(EmbeddedStore::open(path, config)?),
        StoreKind::Memory => Arc::new(MemoryStore::new(config)),
    })
}

/// The deny-list id that marks the session_key of login `sid` stale: never a token's `sid:` or
/// `jti:` id, so it refuses no token.
fn stale_key_id(sid: &str) -> String {
    format!("stale_key:{sid}")
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The store of a single gateway: sessions bounded by `max_entries` and forgotten `ttl` after
/// login; revocations kept for as long as each was asked for, never evicted (at most
/// 4 x `max_entries` live ones: beyond, logouts and logins are refused with 503). Both are lost on
/// restart.
pub(crate) struct MemoryStore {
    sessions: moka::future::Cache<(String, String), Arc<Session>>,
    revoked: DenyList,
    claims: claims::LocalClaims,
}

impl MemoryStore {
    pub(crate) fn new(config: &SessionConfig) -> Self {
        MemoryStore {
            sessions: moka::future::Cache::builder()
                .max_capacity(config.max_entries)
                .time_to_live(config.ttl)
                .build(),
            revoked: DenyList::new(
                usize::try_from(config.max_entries.saturating_mul(4)).unwrap_or(usize::MAX),
            ),
            claims: claims::LocalClaims::default(),
        }
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.sessions.entry_count())
            .field("revoked", &self.revoked.len())
            .field("claims", &self.claims.len())
            .finish()
    }
}

fn user_key(appid: &str, openid: &str) -> (String, String) {
    (appid.to_string(), openid.to_string())
}

#[async_trait::async_trait]
impl SessionStore for MemoryStore {
    async fn check_at_start(&self) -> Result<(), String> {
        tracing::warn!(
            "session.store = \"memory\": sessions and logouts do not survive a restart (a \
             logged-out token works again until it expires); use \"embedded\" or \"redis\" \
             in production"
        );
        Ok(())
    }

    async fn save(&self, session: &Session) -> Result<(), StoreError> {
        // A login whose logout could not be recorded is not made: fail closed.
        if !self.revoked.has_room() {
            return Err(StoreError(
                "the revocation deny-list is full; no new login until entries expire".into(),
            ));
        }
        let key = user_key(&session.appid, &session.openid);
        self.sessions.insert(key, Arc::new(session.clone())).await;
        Ok(())
    }

    async fn touch(&self, appid: &str, openid: &str) -> Result<Option<Session>, StoreError> {
        let now = unix_now();
        let result = self
            .sessions
            .entry(user_key(appid, openid))
            .and_compute_with(|entry| async move {
                match entry {
                    Some(entry) => {
                        let mut session = Session::clone(&entry.into_value());
                        session.last_seen = now;
                        Op::Put(Arc::new(session))
                    }
                    None => Op::Nop,
                }
            })
            .await;
        Ok(result
            .into_entry()
            .map(|entry| Session::clone(&entry.into_value())))
    }

    async fn end(&self, appid: &str, openid: &str, sid: &str) -> Result<(), StoreError> {
        self.sessions
            .entry(user_key(appid, openid))
            .and_compute_with(|entry| async move {
                match entry {
                    Some(entry) if entry.value().sid == sid => Op::Remove,
                    _ => Op::Nop,
                }
            })
            .await;
        Ok(())
    }

    async fn revoke(&self, ids: &[String], ttl: Duration) -> Result<(), StoreError> {
        if self.revoked.insert(ids, ttl)? == Recorded::New {
            // After the entries: a check that read the previous count looks them up again.
            MEMORY_REVOCATIONS.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    async fn any_revoked(&self, ids: &[String]) -> Result<bool, StoreError> {
        Ok(ids.iter().any(|id| self.revoked.contains(id)))
    }

    fn revocation_count(&self) -> Option<u64> {
        // Acquire: a check reading a count sees every entry recorded before it.
        Some(MEMORY_REVOCATIONS.load(Ordering::Acquire))
    }

    async fn shared_access_token(
        &self,
        _appid: &str,
    ) -> Result<Option<(Secret, Duration)>, StoreError> {
        Ok(None)
    }

    async fn share_access_token(&self, _: &str, _: &Secret, _: Duration) -> Result<(), StoreError> {
        Ok(())
    }

    async fn drop_access_token(&self, _: &str, _: &Secret) -> Result<(), StoreError> {
        Ok(())
    }

    async fn try_lock(&self, _: &str, _: Duration) -> Result<bool, StoreError> {
        // One gateway: its own single flight (in `access_token`) is the only lock needed.
        Ok(true)
    }

    async fn unlock(&self, _: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn claim(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self.claims.claim(name, ttl))
    }

    async fn release_claim(&self, name: &str) -> Result<(), StoreError> {
        self.claims.release(name);
        Ok(())
    }
}

/// `Secret` as a plain string in the stored form (the store is the one place that keeps it).
mod secret_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::config::Secret;

    pub(super) fn serialize<S: Serializer>(secret: &Secret, to: S) -> Result<S::Ok, S::Error> {
        to.serialize_str(secret.expose())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<Secret, D::Error> {
        String::deserialize(from).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::NotRevokedMemo;

    pub(crate) fn session(sid: &str, key: &str) -> Session {
        Session {
            sid: sid.into(),
            openid: "o1".into(),
            unionid: None,
            appid: "wxapp".into(),
            session_key: Secret::new(key),
            created_at: 1,
            last_seen: 1,
        }
    }

    fn store(ttl: Duration) -> MemoryStore {
        MemoryStore::new(&SessionConfig {
            ttl,
            max_entries: 10,
            ..SessionConfig::default()
        })
    }

    #[tokio::test]
    async fn a_new_login_replaces_the_session_key() {
        let store = store(DEFAULT_TTL);
        store.save(&session("s1", "first")).await.unwrap();
        store.save(&session("s2", "second")).await.unwrap();
        let current = store.touch("wxapp", "o1").await.unwrap().unwrap();
        assert_eq!(
            (current.sid.as_str(), current.session_key.expose()),
            ("s2", "second")
        );
        assert!(current.last_seen > 1, "touched");
        assert!(store.touch("wxapp", "o2").await.unwrap().is_none());
        assert!(store.touch("other", "o1").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn ending_an_older_login_leaves_the_newer_one() {
        let store = store(DEFAULT_TTL);
        store.save(&session("s2", "k")).await.unwrap();
        store.end("wxapp", "o1", "s1").await.unwrap();
        assert!(store.touch("wxapp", "o1").await.unwrap().is_some());
        store.end("wxapp", "o1", "s2").await.unwrap();
        assert!(store.touch("wxapp", "o1").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn sessions_and_revocations_expire() {
        let store = store(Duration::from_millis(50));
        store.save(&session("s1", "k")).await.unwrap();
        let ids = ["sid:s1".to_string()];
        store.revoke(&ids, Duration::from_millis(50)).await.unwrap();
        assert!(store.any_revoked(&ids).await.unwrap());
        assert!(!store.any_revoked(&["sid:s2".into()]).await.unwrap());
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(store.touch("wxapp", "o1").await.unwrap().is_none());
        assert!(!store.any_revoked(&ids).await.unwrap());
    }

    #[tokio::test]
    async fn a_not_revoked_memo_holds_until_the_next_revocation() {
        let store = MemoryStore::new(&SessionConfig::default());
        let memo = NotRevokedMemo::default();
        let before = store.revocation_count().unwrap();
        assert!(!memo.holds_at(before), "a new memo holds at no count");
        memo.record(before);
        assert!(memo.holds_at(before));
        assert!(memo.clone().holds_at(before));
        store
            .revoke(&["jti:other".into()], Duration::from_secs(60))
            .await
            .unwrap();
        let after = store.revocation_count().unwrap();
        assert_ne!(after, before, "a revocation moves the count");
        assert!(!memo.holds_at(after));
    }

    #[test]
    fn debug_output_hides_the_session_key() {
        let debug = format!("{:?}", session("s1", "very-secret-key"));
        assert!(!debug.contains("very-secret-key"));
    }
}
