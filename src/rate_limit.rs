//! Token-bucket rate limits: logins per client IP, refreshes per user, and per openid on routes
//! that set one.
//!
//! With `scope = "local"` (the default) buckets live in this gateway's memory: each replica limits
//! on its own. A bucket left alone until it would be full again is forgotten, which changes
//! nothing, so the table stays small; it is also bounded, the least recently used buckets going
//! first. With `scope = "fleet"` every replica counts in the session store's Redis (one script
//! call per request, GCRA: the same limit as the bucket), and `on_store_error` says whether the
//! local bucket counts while Redis cannot.

use std::collections::HashMap;
use std::future::Ready;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, FleetFallback, LimitScope, RouteConfig};
use crate::http::error::GatewayError;
use crate::maybe_boxed::MaybeBoxed;
use crate::metrics::Metrics;
use crate::session::SessionStore;

/// Most buckets one limit keeps.
const MAX_BUCKETS: u64 = 100_000;

pub use crate::config::RateLimit;

impl RateLimit {
    pub(crate) fn per_second(self) -> f64 {
        f64::from(self.per_minute) / 60.0
    }

    /// How long an empty bucket takes to fill up again.
    pub(crate) fn refill_time(self) -> Duration {
        Duration::from_secs_f64(f64::from(self.burst) / self.per_second())
    }
}

/// One bucket's level at a moment.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The buckets of one limit, one per key (client IP, openid).
pub(crate) struct RateLimiter<K> {
    limit: RateLimit,
    buckets: moka::sync::Cache<K, Arc<Mutex<Bucket>>>,
}

impl<K> std::fmt::Debug for RateLimiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Send + Sync + 'static> RateLimiter<K> {
    /// Empty buckets for `limit`.
    pub(crate) fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            buckets: moka::sync::Cache::builder()
                .max_capacity(MAX_BUCKETS)
                .time_to_idle(limit.refill_time())
                .build(),
        }
    }

    /// The limit these buckets enforce.
    pub(crate) fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes one request from `key`'s bucket, in this replica or across the fleet (`fleet_key`
    /// names the bucket in Redis); a 429 (counted under `label`) when it is empty, 503
    /// `session_store_unavailable` when Redis cannot count and `on_store_error = "refuse"`.
    /// A local limit answers at once; a fleet-wide one after Redis, in a boxed future: callers
    /// await this inside the proxied request's future, boxed per request and kept small (see
    /// `dispatch::handle`), which then holds a pointer, not the Redis call.
    pub(crate) fn take<'a>(
        &'a self,
        key: K,
        fleet_key: impl FnOnce() -> String,
        store: &'a dyn SessionStore,
        label: &'a str,
        metrics: &'a Metrics,
    ) -> Taking<'a> {
        let LimitScope::Fleet(fallback) = self.limit.scope else {
            let answer = refuse_when_empty(self.check(key), label, metrics);
            return MaybeBoxed::Inline {
                future: std::future::ready(answer),
            };
        };
        let fleet_key = fleet_key();
        MaybeBoxed::Boxed {
            future: Box::pin(async move {
                let checked = match store.take_fleet_request(&fleet_key, self.limit).await {
                    Ok(checked) => checked,
                    Err(error) if fallback == FleetFallback::Local => {
                        tracing::debug!(%error, limit = label, "fleet rate limit counted locally");
                        self.check(key)
                    }
                    Err(error) => {
                        tracing::warn!(%error, limit = label, "fleet rate limit cannot count: refused");
                        return Err(GatewayError::SessionStoreUnavailable);
                    }
                };
                refuse_when_empty(checked, label, metrics)
            }),
        }
    }

    /// Takes one token from `key`'s bucket; when it is empty, says how long until one is back.
    fn check(&self, key: K) -> Result<(), Duration> {
        let burst = f64::from(self.limit.burst);
        let bucket = self.buckets.get_with(key, || {
            Arc::new(Mutex::new(Bucket {
                tokens: burst,
                updated: Instant::now(),
            }))
        });
        let mut bucket = bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        take(&mut bucket, self.limit, Instant::now())
    }
}

/// Refills the bucket for the time passed, then takes one token or says when one will be there.
fn take(bucket: &mut Bucket, limit: RateLimit, now: Instant) -> Result<(), Duration> {
    let rate = limit.per_second();
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * rate).min(f64::from(limit.burst));
    bucket.updated = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        Ok(())
    } else {
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
    }
}

/// A rate limit's answer: at once for a local limit, after Redis (boxed) for a fleet-wide one.
pub(crate) type Taking<'a> = MaybeBoxed<'a, Ready<Result<(), GatewayError>>>;

/// Every limit the config sets, with their buckets.
#[derive(Debug, Default)]
pub(crate) struct Limits {
    login: Option<Arc<RateLimiter<IpAddr>>>,
    /// Refreshes per user: buckets per (appid, openid).
    refresh: Option<Arc<RateLimiter<(String, String)>>>,
    /// Per route prefix: buckets per openid.
    routes: HashMap<String, Arc<RateLimiter<String>>>,
}

impl Limits {
    /// The limits of `config`; buckets of a limit that `previous` already had, unchanged, are
    /// kept (a reload does not hand everyone a full bucket).
    pub(crate) fn new(config: &Config, previous: Option<&Limits>) -> Limits {
        let login = config
            .login
            .rate_limit
            .map(|limit| kept(previous.and_then(|previous| previous.login.as_ref()), limit));
        let refresh = config.login.refresh_rate_limit.map(|limit| {
            kept(
                previous.and_then(|previous| previous.refresh.as_ref()),
                limit,
            )
        });
        let routes = config
            .routes
            .iter()
            .filter_map(|route| {
                let old = previous.and_then(|previous| previous.routes.get(&route.prefix));
                Some((route.prefix.clone(), kept(old, route.rate_limit?)))
            })
            .collect();
        Limits {
            login,
            refresh,
            routes,
        }
    }

    /// Logins per client IP (`[login.rate_limit]`), when limited.
    pub(crate) fn login(&self) -> Option<&RateLimiter<IpAddr>> {
        self.login.as_deref()
    }

    /// Refreshes per user (`[login.refresh_rate_limit]`), when limited.
    pub(crate) fn refresh(&self) -> Option<&RateLimiter<(String, String)>> {
        self.refresh.as_deref()
    }

    /// Requests per openid on `route` (its `rate_limit`), when limited.
    pub(crate) fn route(&self, route: &RouteConfig) -> Option<&RateLimiter<String>> {
        self.routes.get(&route.prefix).map(Arc::as_ref)
    }
}

/// The old buckets when they enforce the same limit, else new ones.
fn kept<K>(old: Option<&Arc<RateLimiter<K>>>, limit: RateLimit) -> Arc<RateLimiter<K>>
where
    K: Hash + Eq + Send + Sync + 'static,
{
    match old {
        Some(old) if old.limit() == limit => old.clone(),
        _ => Arc::new(RateLimiter::new(limit)),
    }
}

/// A 429 (counted) when the bucket was empty.
fn refuse_when_empty(
    checked: Result<(), Duration>,
    limit: &str,
    metrics: &Metrics,
) -> Result<(), GatewayError> {
    checked.map_err(|wait| {
        metrics.count_rate_limited(limit);
        GatewayError::RateLimited {
            retry_after_secs: retry_after_secs(wait),
        }
    })
}

/// The whole seconds a client is told to wait (Retry-After), at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        per_minute: 60,
        burst: 3,
        scope: LimitScope::Local,
    };

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_the_rate() {
        let start = Instant::now();
        let mut bucket = Bucket {
            tokens: 3.0,
            updated: start,
        };
        for _ in 0..3 {
            assert_eq!(take(&mut bucket, LIMIT, start), Ok(()));
        }
        let wait = take(&mut bucket, LIMIT, start).unwrap_err();
        assert_eq!(retry_after_secs(wait), 1);
        // One token a second: half a second is not enough, a whole one is.
        assert!(take(&mut bucket, LIMIT, start + Duration::from_millis(500)).is_err());
        assert_eq!(
            take(&mut bucket, LIMIT, start + Duration::from_secs(1)),
            Ok(())
        );
        // Never more than the burst, however long it rested.
        let later = start + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(take(&mut bucket, LIMIT, later), Ok(()));
        }
        assert!(take(&mut bucket, LIMIT, later).is_err());
    }

    #[test]
    fn keys_have_buckets_of_their_own() {
        let limiter = RateLimiter::new(RateLimit {
            per_minute: 1,
            burst: 1,
            scope: LimitScope::Local,
        });
        assert!(limiter.check("a").is_ok());
        let wait = limiter.check("a").unwrap_err();
        assert!(retry_after_secs(wait) > 50, "{wait:?}");
        assert!(limiter.check("b").is_ok());
    }
}
