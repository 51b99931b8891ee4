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

/// Waits until the gateway answers `path` with something other than 503 (the store reconnecting
/// after a Redis restart), and returns that answer.
async fn once_reconnected(gateway: &Harness, token: &str) -> crate::common::Response {
    let started = Instant::now();
    loop {
        let response = gateway.get_with_token("/api/me", token, &[]).await;
        if response.status != 503 || started.elapsed() > Duration::from_secs(5) {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Catches a build that keeps trusting tokens after Redis lost its contents (and with them the
/// logouts): FLUSHALL while the gateway runs, then a Redis restarted empty (no persistence). Each
/// time, every token from before is refused with 401 and a new login works.
#[tokio::test]
async fn a_flushed_or_restarted_empty_redis_refuses_every_earlier_token() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let gateway = replica(&redis, "refuse").await;
    let before = gateway.login("nina.1").await;
    assert_eq!(
        gateway.get_with_token("/api/me", &before, &[]).await.status,
        200
    );
    // The generation is to the second: a token from the same second as a new one would pass.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    redis.flushall().await;
    let refused = gateway.get_with_token("/api/me", &before, &[]).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(refused.error_code(), "invalid_token");
    let after = gateway.login("nina.2").await;
    assert_eq!(
        gateway.get_with_token("/api/me", &after, &[]).await.status,
        200
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    redis.stop();
    redis.spawn().await;
    let refused = once_reconnected(&gateway, &after).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(
        gateway.get_with_token("/api/me", &before, &[]).await.status,
        401
    );
    let fresh = gateway.login("nina.3").await;
    assert_eq!(
        gateway.get_with_token("/api/me", &fresh, &[]).await.status,
        200
    );
}

/// The gateway warns at start when Redis keeps nothing across its own restart, and not when it
/// persists (appendonly).
#[tokio::test]
async fn a_redis_without_persistence_is_warned_about() {
    let Some(volatile) = RedisServer::start().await else {
        return;
    };
    let dir = crate::common::scratch_dir("redis-aof");
    let dir_text = dir.display().to_string();
    let Some(persistent) =
        RedisServer::start_with(&["--appendonly", "yes", "--dir", &dir_text]).await
    else {
        return;
    };
    for (redis, warned) in [(&volatile, true), (&persistent, false)] {
        let log = dir.join(format!("gateway-{}.log", redis.addr.port()));
        let port = crate::common::closed_port().await;
        let gateway = crate::common::process::wxgate(&["run", "--config", "config/wxgate.toml"])
            .env("WXGATE_WECHAT__SECRET", crate::common::APP_SECRET)
            .env("WXGATE_JWT__SECRET", crate::common::JWT_SECRET)
            .env("WXGATE_SERVER__LISTEN", port.to_string())
            .env("WXGATE_SESSION__STORE", "redis")
            .env("WXGATE_SESSION__REDIS_URL", redis.url())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        crate::common::process::wait_listening(port).await;
        crate::common::process::signal(&gateway, "TERM");
        assert!(crate::common::process::wait_exit(gateway).success());
        let logged = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            logged.contains("Redis runs without persistence"),
            warned,
            "{logged}"
        );
    }
}
