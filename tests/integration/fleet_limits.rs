//! Fleet-wide rate limits (`scope = "fleet"`): three replicas sharing a real redis-server count
//! in one bucket; with Redis stopped, `on_store_error` decides (the local bucket, or 503).

use crate::common::redis::RedisServer;
use crate::common::{Harness, Setup};

const PER_MINUTE: usize = 6;
const BURST: usize = 4;

/// A replica on the shared Redis, with a fleet login limit and two fleet route limits (one per
/// fallback policy); tokens stay valid on their signature while Redis is down.
async fn replica(redis: &RedisServer) -> Harness {
    let route = |prefix: &str, fallback: &str| {
        format!(
            "[[routes]]\nprefix = \"{prefix}\"\nupstream = \"http://{{echo}}\"\nauth = \"required\"\n\
             rate_limit = {{ per_minute = 60, burst = 3, scope = \"fleet\", on_store_error = \"{fallback}\" }}\n"
        )
    };
    Harness::start_with(Setup {
        sections: format!(
            "[session]\nstore = \"redis\"\nredis_url = \"{}\"\nredis_key_prefix = \"fleet:\"\n\
             redis_timeout_ms = 300\non_store_error = \"signature\"\n\
             [login.rate_limit]\nper_minute = {PER_MINUTE}\nburst = {BURST}\nscope = \"fleet\"\n",
            redis.url()
        ),
        extra_routes: route("/counted", "local") + &route("/strict", "refuse"),
        ..Setup::default()
    })
    .await
}

#[tokio::test]
async fn three_replicas_share_one_login_limit_and_a_redis_outage_follows_on_store_error() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let replicas = [
        replica(&redis).await,
        replica(&redis).await,
        replica(&redis).await,
    ];

    // 30 logins from one address, spread over the replicas: the fleet lets its burst through
    // (and one more per 10 s at 6 a minute), where three local limits would let 3 x 4 through.
    let mut accepted = Vec::new();
    for attempt in 0..30 {
        let gateway = &replicas[attempt % 3];
        let response = gateway.login_response(&format!("user{attempt}")).await;
        match response.status {
            200 => accepted.push(response.json()["token"].as_str().unwrap().to_string()),
            429 => {
                assert_eq!(response.error_code(), "rate_limited");
                let wait: u64 = response.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=10).contains(&wait), "Retry-After {wait}");
            }
            other => panic!("login {attempt}: {other} {}", response.text()),
        }
    }
    assert!(
        (BURST..=PER_MINUTE + BURST).contains(&accepted.len()) && accepted.len() < 2 * BURST,
        "{} logins accepted across the fleet",
        accepted.len()
    );

    // A route's fleet limit: 3 at once for the user, whichever replica they reach.
    let token = &accepted[0];
    let statuses = |path: &'static str| {
        let replicas = &replicas;
        async move {
            let mut statuses = Vec::new();
            for attempt in 0..6 {
                let response = replicas[attempt % 3].get_with_token(path, token, &[]).await;
                statuses.push(response.status);
            }
            statuses
        }
    };
    assert_eq!(statuses("/counted/x").await, [200, 200, 200, 429, 429, 429]);

    // Redis stops: "local" counts in each replica's own bucket meanwhile; "refuse" answers 503.
    redis.stop();
    for gateway in &replicas {
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(
                gateway
                    .get_with_token("/counted/x", token, &[])
                    .await
                    .status,
            );
        }
        assert_eq!(seen, [200, 200, 200, 429], "each replica's own bucket");
        let strict = gateway.get_with_token("/strict/x", token, &[]).await;
        assert_eq!(strict.status, 503, "{}", strict.text());
        assert_eq!(strict.error_code(), "session_store_unavailable");
    }
}
