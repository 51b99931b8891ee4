//! Fleet-wide rate limits (`scope = "fleet"`) counted in Redis: one script call per request, so
//! every replica takes from the same bucket and the check and the update are one atomic step.
//!
//! The script is GCRA (the generic cell rate algorithm): per key, Redis keeps the theoretical
//! arrival time of the next request at the sustained rate; a request is allowed while that time is
//! less than `burst` intervals ahead of now. That is the token bucket the local limits use
//! (`burst` at once, refilled at `per_minute`), in one number with an expiry. The clock is
//! Redis's own (`TIME`), so replicas whose clocks differ still agree.

use std::time::Duration;

use super::RedisStore;
use crate::config::RateLimit;
use crate::session::StoreError;

/// KEYS[1]: the limit's key. ARGV[1]: microseconds between requests at the sustained rate;
/// ARGV[2]: the burst. Answers 0 when the request is allowed, else the microseconds to wait.
const TAKE: &str = r"
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1])) or now_us
if tat < now_us then tat = now_us end
local next_tat = tat + interval
local wait = next_tat - interval * tonumber(ARGV[2]) - now_us
if wait > 0 then return math.ceil(wait) end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now_us) / 1000))
return 0
";

/// The script, hashed once (sent by its SHA-1, the text only when Redis does not know it yet).
pub(super) fn script() -> redis::Script {
    redis::Script::new(TAKE)
}

impl RedisStore {
    fn rate_limit_key(&self, key: &str) -> String {
        format!("{}ratelimit:{key}", self.prefix)
    }

    /// Takes one request from the fleet's bucket `key` for `limit`.
    pub(super) async fn take_from_fleet_bucket(
        &self,
        key: &str,
        limit: RateLimit,
    ) -> Result<Result<(), Duration>, StoreError> {
        let key = self.rate_limit_key(key);
        let interval_us = (60_000_000 / u64::from(limit.per_minute.max(1))).max(1);
        let wait_us: u64 = self
            .run(|mut redis| async move {
                self.take_fleet
                    .key(key)
                    .arg(interval_us)
                    .arg(limit.burst)
                    .invoke_async(&mut redis)
                    .await
            })
            .await?;
        Ok(match wait_us {
            0 => Ok(()),
            wait => Err(Duration::from_micros(wait)),
        })
    }
}
