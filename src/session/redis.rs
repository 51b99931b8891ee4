//! The Redis session store, shared by every gateway replica: a login on one replica is seen by all,
//! and a logout on one is refused by all from the next request on.
//!
//! Keys, under `session.redis_key_prefix`: `session:<appid>:<openid>` (the session as JSON, expiring
//! `session.ttl_secs` after login), `revoked:<sid:..|jti:..>` (expiring when the revoked token
//! could no longer be used anyway) and `generation` (when this Redis's contents began: a Redis
//! found without it was flushed or restarted empty, and tokens issued before a new one are
//! refused). Redis must not evict (`maxmemory-policy noeviction`, checked at start). The session JSON holds the session_key: protect the Redis
//! server like the gateway's own secrets (network access, `requirepass`/ACL).
//!
//! The connection is made on first use and remade after a failure, so the gateway starts and
//! serves while Redis is down; every call is bounded by `session.redis_timeout_ms`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::{unix_now, Session, SessionStore, StoreError};
use crate::config::{RateLimit, RedisConfig, Secret};
use crate::metrics::Metrics;
use crate::telemetry::ChildSpan;
use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;

mod connector;
mod fleet_limit;
use connector::Connector;

/// Sets `last_seen` of a session in place, keeping its expiry; answers the updated JSON or nil.
const TOUCH: &str = r"
local stored = redis.call('GET', KEYS[1])
if not stored then return false end
local session = cjson.decode(stored)
session['last_seen'] = tonumber(ARGV[1])
local updated = cjson.encode(session)
redis.call('SET', KEYS[1], updated, 'KEEPTTL')
return updated
";

/// Deletes a session only if it still belongs to login ARGV[1].
const END: &str = r"
local stored = redis.call('GET', KEYS[1])
if stored and cjson.decode(stored)['sid'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Deletes KEYS[1] only if it still holds ARGV[1].
const DELETE_IF_EQUAL: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// The session store shared by every replica through one Redis.
pub(crate) struct RedisStore {
    connector: Connector,
    prefix: String,
    session_ttl: Duration,
    timeout: Duration,
    touch: redis::Script,
    end: redis::Script,
    delete_if_equal: redis::Script,
    take_fleet: redis::Script,
    metrics: Arc<Metrics>,
    /// The generation marker last seen in Redis (0 until one has been read).
    generation: AtomicU64,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the client: its connection info would show a password.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("connected", &self.connector.connected())
            .finish()
    }
}

impl RedisStore {
    /// Checks the URL; does not connect yet.
    pub(crate) fn new(
        config: &RedisConfig,
        session_ttl: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        Ok(RedisStore {
            connector: Connector::new(config)?,
            prefix: config.key_prefix.clone(),
            session_ttl,
            timeout: config.timeout,
            touch: redis::Script::new(TOUCH),
            end: redis::Script::new(END),
            delete_if_equal: redis::Script::new(DELETE_IF_EQUAL),
            take_fleet: fleet_limit::script(),
            metrics,
            generation: AtomicU64::new(0),
        })
    }

    fn session_key(&self, appid: &str, openid: &str) -> String {
        format!("{}session:{appid}:{openid}", self.prefix)
    }

    fn access_token_key(&self, appid: &str) -> String {
        format!("{}access_token:{appid}", self.prefix)
    }

    fn lock_key(&self, name: &str) -> String {
        format!("{}lock:{name}", self.prefix)
    }

    fn revoked_key(&self, id: &str) -> String {
        format!("{}revoked:{id}", self.prefix)
    }

    fn generation_key(&self) -> String {
        format!("{}generation", self.prefix)
    }

    /// Notes the generation marker Redis holds; when it has none (a new, flushed or restarted
    /// Redis), records one now (the first replica to do so wins) and notes that.
    async fn note_generation(&self, seen: Option<u64>) -> Result<(), StoreError> {
        let generation = match seen {
            Some(generation) => generation,
            None => {
                let key = self.generation_key();
                let now = super::unix_now();
                let generation: Option<u64> = self
                    .run(|mut redis| async move {
                        redis::pipe()
                            .cmd("SET")
                            .arg(&key)
                            .arg(now)
                            .arg("NX")
                            .ignore()
                            .get(&key)
                            .query_async::<(Option<u64>,)>(&mut redis)
                            .await
                            .map(|(generation,)| generation)
                    })
                    .await?;
                let generation = generation.unwrap_or(now);
                tracing::warn!(
                    generation,
                    "Redis holds no generation marker (new, flushed, or restarted without \
                     persistence): tokens issued before now are refused, everyone logs in again"
                );
                generation
            }
        };
        self.generation.fetch_max(generation, Ordering::Relaxed);
        Ok(())
    }

    /// Warns when Redis keeps nothing across its own restart (no AOF, no RDB snapshots): a
    /// restart then empties it, and everyone must log in again.
    async fn warn_without_persistence(&self) {
        let settings = self
            .run(|mut redis| async move {
                redis::pipe()
                    .cmd("CONFIG")
                    .arg("GET")
                    .arg("appendonly")
                    .cmd("CONFIG")
                    .arg("GET")
                    .arg("save")
                    .query_async::<(Vec<String>, Vec<String>)>(&mut redis)
                    .await
            })
            .await;
        match settings {
            Ok((appendonly, save)) => {
                let aof = appendonly.get(1).is_some_and(|value| value == "yes");
                let snapshots = save.get(1).is_some_and(|value| !value.trim().is_empty());
                if !aof && !snapshots {
                    tracing::warn!(
                        "Redis runs without persistence (appendonly no, save \"\"): a Redis \
                         restart empties it, and every user must log in again; turn on \
                         appendonly for durable logouts"
                    );
                }
            }
            Err(_) => tracing::warn!(
                "could not read the Redis server's persistence settings (CONFIG GET refused or \
                 Redis unreachable); without persistence a Redis restart logs everyone out"
            ),
        }
    }

    /// Runs one exchange with Redis within the timeout, connecting first if need be.
    async fn run<T, F, Fut>(&self, exchange: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let span = ChildSpan::start("redis", SpanKind::Client);
        span.set(KeyValue::new("db.system.name", "redis"));
        let attempt = async { exchange(self.connector.connection().await?).await };
        let failure = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => {
                self.connector.failed(Some(&error));
                StoreError(describe(&error))
            }
            Err(_) => {
                self.connector.failed(None);
                StoreError("Redis did not answer in time".into())
            }
        };
        span.fail(failure.0.clone());
        self.metrics.session_store_errors.inc();
        Err(failure)
    }
}

/// A Redis error in words that never carry the URL (or its password).
fn describe(error: &redis::RedisError) -> String {
    format!("Redis error ({})", error.category())
}

fn parse(stored: Option<String>) -> Result<Option<Session>, StoreError> {
    stored
        .map(|json| serde_json::from_str(&json))
        .transpose()
        .map_err(|_| StoreError("a stored session is not readable".into()))
}

/// The one `maxmemory-policy` under which Redis never drops a key before its TTL: with any other,
/// a full Redis would evict revocations and bring logged-out tokens back.
const REQUIRED_EVICTION_POLICY: &str = "noeviction";

#[async_trait::async_trait]
impl SessionStore for RedisStore {
    async fn check_at_start(&self) -> Result<(), String> {
        let answer = self
            .run(|mut redis| async move {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("maxmemory-policy")
                    .query_async::<Vec<String>>(&mut redis)
                    .await
            })
            .await;
        let policy = match answer.as_deref() {
            Ok([_, policy]) if policy == REQUIRED_EVICTION_POLICY => Ok(()),
            Ok([_, policy]) => Err(format!(
                "session.redis_url: the Redis server's maxmemory-policy is {policy}; it must be \
                 {REQUIRED_EVICTION_POLICY}, or a full Redis evicts revocations and logged-out \
                 tokens work again (CONFIG SET maxmemory-policy {REQUIRED_EVICTION_POLICY})"
            )),
            Ok(_) | Err(_) => {
                tracing::warn!(
                    "could not read the Redis server's maxmemory-policy (CONFIG GET refused or \
                     Redis unreachable); it must be {REQUIRED_EVICTION_POLICY}, or revocations \
                     may be evicted"
                );
                Ok(())
            }
        };
        policy?;
        self.warn_without_persistence().await;
        let key = self.generation_key();
        let seen = self
            .run(|mut redis| async move { redis.get::<_, Option<u64>>(key).await })
            .await;
        // Unreachable now: the marker is read with the first revocation check instead.
        if let Ok(seen) = seen {
            let _ = self.note_generation(seen).await;
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(
            |mut redis| async move { redis::cmd("PING").query_async::<String>(&mut redis).await },
        )
        .await
        .map(drop)
    }

    async fn save(&self, session: &Session) -> Result<(), StoreError> {
        let key = self.session_key(&session.appid, &session.openid);
        let json = serde_json::to_string(session)
            .map_err(|_| StoreError("the session could not be serialized".into()))?;
        let ttl = self.session_ttl.as_secs().max(1);
        self.run(|mut redis| async move { redis.set_ex::<_, _, ()>(key, json, ttl).await })
            .await
    }

    async fn touch(&self, appid: &str, openid: &str) -> Result<Option<Session>, StoreError> {
        let key = self.session_key(appid, openid);
        let stored: Option<String> = self
            .run(|mut redis| async move {
                self.touch
                    .key(key)
                    .arg(unix_now())
                    .invoke_async(&mut redis)
                    .await
            })
            .await?;
        parse(stored)
    }

    async fn end(&self, appid: &str, openid: &str, sid: &str) -> Result<(), StoreError> {
        let key = self.session_key(appid, openid);
        self.run(|mut redis| async move {
            self.end
                .key(key)
                .arg(sid)
                .invoke_async::<i64>(&mut redis)
                .await
        })
        .await
        .map(drop)
    }

    async fn revoke(&self, ids: &[String], ttl: Duration) -> Result<(), StoreError> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut pipeline = redis::pipe();
        for id in ids {
            pipeline
                .cmd("SET")
                .arg(self.revoked_key(id))
                .arg(1)
                .arg("PX")
                .arg(millis)
                .ignore();
        }
        self.run(|mut redis| async move { pipeline.query_async::<()>(&mut redis).await })
            .await
    }

    async fn any_revoked(&self, ids: &[String]) -> Result<bool, StoreError> {
        if ids.is_empty() {
            return Ok(false);
        }
        let keys: Vec<String> = ids.iter().map(|id| self.revoked_key(id)).collect();
        let generation_key = self.generation_key();
        // The generation marker in the same round trip: a flushed Redis is noticed at once.
        let (found, generation): (u64, Option<u64>) = self
            .run(|mut redis| async move {
                redis::pipe()
                    .exists(keys)
                    .get(generation_key)
                    .query_async(&mut redis)
                    .await
            })
            .await?;
        self.note_generation(generation).await?;
        Ok(found > 0)
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    async fn shared_access_token(
        &self,
        appid: &str,
    ) -> Result<Option<(Secret, Duration)>, StoreError> {
        let key = self.access_token_key(appid);
        let (token, ttl_ms): (Option<String>, i64) = self
            .run(|mut redis| async move {
                redis::pipe()
                    .get(&key)
                    .pttl(&key)
                    .query_async(&mut redis)
                    .await
            })
            .await?;
        Ok(match (token, u64::try_from(ttl_ms)) {
            (Some(token), Ok(ttl_ms)) => Some((Secret::new(token), Duration::from_millis(ttl_ms))),
            _ => None,
        })
    }

    async fn share_access_token(
        &self,
        appid: &str,
        token: &Secret,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = self.access_token_key(appid);
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let token = token.expose().to_string();
        self.run(|mut redis| async move { redis.pset_ex::<_, _, ()>(key, token, millis).await })
            .await
    }

    async fn drop_access_token(&self, appid: &str, stale: &Secret) -> Result<(), StoreError> {
        let key = self.access_token_key(appid);
        self.run(|mut redis| async move {
            self.delete_if_equal
                .key(key)
                .arg(stale.expose())
                .invoke_async::<i64>(&mut redis)
                .await
        })
        .await
        .map(drop)
    }

    async fn try_lock(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let key = self.lock_key(name);
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let taken: Option<String> = self
            .run(|mut redis| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis)
                    .query_async(&mut redis)
                    .await
            })
            .await?;
        Ok(taken.is_some())
    }

    async fn take_fleet_request(
        &self,
        key: &str,
        limit: RateLimit,
    ) -> Result<Result<(), Duration>, StoreError> {
        self.take_from_fleet_bucket(key, limit).await
    }

    async fn unlock(&self, name: &str) -> Result<(), StoreError> {
        let key = self.lock_key(name);
        self.run(|mut redis| async move { redis.del::<_, ()>(key).await })
            .await
    }
}
