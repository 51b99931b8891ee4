//! Two gateway replicas sharing a real redis-server (started by the test on an ephemeral port):
//! a login on one is served by the other, a logout on one is refused by the other at once, and a
//! Redis outage is handled per `session.on_store_error`. Skips (saying why) without redis-server,
//! unless WXGATE_REQUIRE_EXTERNAL=1.

use std::time::{Duration, Instant};

use crate::common::redis::RedisServer;
use crate::common::{Harness, Setup};

async fn replica(redis: &RedisServer, policy: &str) -> Harness {
    Harness::start_with(Setup {
        sections: format!(
            "[session]\nstore = \"redis\"\nredis_url = \"{}\"\nredis_key_prefix = \"test:\"\n\
             redis_timeout_ms = 300\non_store_error = \"{policy}\"\n",
            redis.url()
        ),
        ..Setup::default()
    })
    .await
}

#[tokio::test]
async fn replicas_share_logins_and_logouts_through_redis() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (a, b) = (
        replica(&redis, "refuse").await,
        replica(&redis, "refuse").await,
    );

    let token = a.login("mia").await;
    let on_b = b.get_with_token("/api/me", &token, &[]).await;
    assert_eq!(on_b.status, 200, "{}", on_b.text());
    assert_eq!(on_b.upstream_header("x-openid"), ["oMock_mia"]);
    // Refresh on B needs the session A stored.
    let refreshed = b.post_with_token("/token/refresh", &token).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text());

    assert_eq!(b.post_with_token("/logout", &token).await.status, 200);
    let logged_out = Instant::now();
    loop {
        let on_a = a.get_with_token("/api/me", &token, &[]).await;
        if on_a.status == 401 {
            break;
        }
        assert!(
            logged_out.elapsed() < Duration::from_secs(1),
            "A still accepts the token"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = a.post_with_token("/token/refresh", &token).await;
    assert_eq!(refused.error_code(), "session_expired");
    let refreshed_token = refreshed.json()["token"].as_str().unwrap().to_string();
    assert_eq!(
        a.get_with_token("/api/me", &refreshed_token, &[])
            .await
            .status,
        401
    );
}

/// The documented policy when Redis is down: `refuse` (the default) answers 503 to every token,
/// `signature` keeps accepting tokens on their signature alone; logins and logouts fail with 503
/// either way, since they must reach the store.
#[tokio::test]
async fn a_redis_outage_is_handled_per_on_store_error() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let refuse = replica(&redis, "refuse").await;
    let signature = replica(&redis, "signature").await;
    let token = refuse.login("noah").await;
    assert_eq!(
        signature
            .get_with_token("/api/me", &token, &[])
            .await
            .status,
        200
    );

    redis.stop();
    let refused = refuse.get_with_token("/api/me", &token, &[]).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.error_code(), "session_store_unavailable");
    let served = signature.get_with_token("/api/me", &token, &[]).await;
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(served.upstream_header("x-openid"), ["oMock_noah"]);
    // Public routes need no store at all.
    assert_eq!(refuse.get("/public/x", &[]).await.status, 200);
    for gateway in [&refuse, &signature] {
        assert_eq!(gateway.login_response("noah.2").await.status, 503);
        assert_eq!(gateway.post_with_token("/logout", &token).await.status, 503);
    }
}

/// Catches a build that starts on a Redis allowed to evict keys (issue 27): under memory pressure
/// such a Redis drops revocations before their TTL, so the gateway refuses to start, naming
/// `maxmemory-policy`; with `noeviction` (Redis's default) it starts.
#[tokio::test]
async fn a_redis_that_may_evict_revocations_stops_the_gateway_at_start() {
    let Some(evicting) = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]).await
    else {
        return;
    };
    let config = |url: String| {
        wxgate::config::Config::from_toml(
            &format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n[wechat]\nappid = \"wx1\"\nsecret = \"s\"\n\
                 [jwt]\nsecret = \"a-secret-that-is-at-least-32-bytes-long!\"\n\
                 [session]\nstore = \"redis\"\nredis_url = \"{url}\"\n"
            ),
            std::iter::empty(),
        )
        .unwrap()
    };
    let listener = crate::common::bind().await;
    let started = wxgate::server::run(listener, config(evicting.url()), async {});
    let error = tokio::time::timeout(Duration::from_secs(10), started)
        .await
        .expect("refused at once")
        .expect_err("an evicting Redis is refused");
    let message = error.to_string();
    assert!(
        message.contains("maxmemory-policy is allkeys-lru"),
        "{message}"
    );
    assert!(message.contains("noeviction"), "{message}");

    let Some(keeping) = RedisServer::start().await else {
        return;
    };
    let listener = crate::common::bind().await;
    let served = wxgate::server::run(listener, config(keeping.url()), async {});
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("starts and stops")
        .expect("a noeviction Redis is accepted");
}
