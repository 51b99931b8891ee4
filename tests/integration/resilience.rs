//! WeChat resilience: one retry after errcode -1 or a connection error (never after an answer
//! that may have spent the code), a circuit breaker that answers 503 at once while WeChat fails
//! and lets a probe through to recover, and concurrent logins with one code sharing one call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::fake_wechat::{FakeWeChat, Mode};
use crate::common::{Harness, Setup};

async fn gateway_for(fake: &FakeWeChat, wechat: &str) -> Harness {
    Harness::start_with(Setup {
        api_base: Some(format!("http://{}", fake.addr)),
        wechat: wechat.into(),
        ..Setup::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_fail_fast_while_the_breaker_is_open_and_succeed_after_it_recovers() {
    let fake = FakeWeChat::start(Mode::Busy, Duration::from_millis(100)).await;
    let gateway = gateway_for(
        &fake,
        "breaker_threshold = 3\nbreaker_open_ms = 800\nretry_backoff_ms = 10",
    )
    .await;
    for attempt in 1..=3 {
        let failed = gateway.login_response(&format!("busy.{attempt}")).await;
        assert_eq!(failed.status, 502);
        assert_eq!(failed.json()["error"], "wechat_busy");
    }
    assert_eq!(fake.calls(), 6, "each failing login was tried twice");

    // Open: refused at once, WeChat not called, told when to come back.
    let started = Instant::now();
    let refused = gateway.login_response("busy.4").await;
    let took = started.elapsed();
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["error"], "wechat_unavailable");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(
        took < Duration::from_millis(100),
        "no waiting on WeChat: {took:?}"
    );
    assert_eq!(fake.calls(), 6);

    // WeChat is back, but the breaker only finds out with its probe, after the open time.
    fake.set_mode(Mode::Healthy);
    assert_eq!(gateway.login_response("back.1").await.status, 503);
    assert_eq!(fake.calls(), 6);
    tokio::time::sleep(Duration::from_millis(900)).await;
    let probe = gateway.login_response("back.2").await;
    assert_eq!(probe.status, 200, "{}", probe.text());
    assert_eq!(probe.json()["openid"], "oFake_back.2");
    assert_eq!(gateway.login_response("back.3").await.status, 200);
    assert_eq!(fake.calls(), 8);

    let metrics = crate::common::request(gateway.admin_addr, "GET", "/metrics", &[], b"").await;
    let metrics = metrics.text();
    assert!(
        metrics.contains("wxgate_wechat_circuit_open 0"),
        "{metrics}"
    );
    assert!(metrics.contains(r#"wxgate_wechat_circuit_rejections_total{api="code2session"} 2"#));
    assert!(metrics.contains(r#"wxgate_wechat_retries_total{api="code2session"} 3"#));
}

#[tokio::test]
async fn a_failed_probe_keeps_the_breaker_open() {
    let fake = FakeWeChat::start(Mode::Broken, Duration::ZERO).await;
    let gateway = gateway_for(&fake, "breaker_threshold = 1\nbreaker_open_ms = 300").await;
    let broken = gateway.login_response("x.1").await;
    assert_eq!(broken.status, 502);
    assert_eq!(broken.json()["error"], "wechat_bad_answer");
    assert_eq!(
        fake.calls(),
        1,
        "an HTTP 500 may have spent the code: no retry"
    );
    assert_eq!(gateway.login_response("x.2").await.status, 503);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(gateway.login_response("x.3").await.status, 502, "the probe");
    assert_eq!(
        gateway.login_response("x.4").await.status,
        503,
        "open again"
    );
    assert_eq!(fake.calls(), 2);
}

#[tokio::test]
async fn a_busy_wechat_is_retried_once() {
    let fake = FakeWeChat::start(Mode::BusyOnce, Duration::ZERO).await;
    let gateway = gateway_for(&fake, "retry_backoff_ms = 20").await;
    let login = gateway.login_response("retry.1").await;
    assert_eq!(login.status, 200, "{}", login.text());
    assert_eq!(fake.calls(), 2);
}

#[tokio::test]
async fn a_connection_error_is_retried_once() {
    // WeChat's address refuses connections at first and comes up during the backoff.
    let port = crate::common::closed_port().await;
    let gateway = Harness::start_with(Setup {
        api_base: Some(format!("http://{port}")),
        wechat: "retry_backoff_ms = 600".into(),
        ..Setup::default()
    })
    .await;
    let addr = gateway.addr;
    let login = tokio::spawn(async move {
        let body = br#"{"code":"late.1"}"#;
        crate::common::request(
            addr,
            "POST",
            "/login",
            &[("Content-Type", "application/json")],
            body,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let listener = tokio::net::TcpListener::bind(port)
        .await
        .expect("rebind the port");
    let fake = FakeWeChat::serve(listener, Mode::Healthy, Duration::ZERO).await;
    let login = login.await.unwrap();
    assert_eq!(login.status, 200, "{}", login.text());
    assert_eq!(fake.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_logins_with_one_code_make_one_wechat_call_and_get_one_answer() {
    let fake = FakeWeChat::start(Mode::Healthy, Duration::from_millis(300)).await;
    let gateway = Arc::new(gateway_for(&fake, "").await);
    let logins: Vec<_> = (0..20)
        .map(|_| {
            let gateway = gateway.clone();
            tokio::spawn(async move { gateway.login_response("shared-code").await })
        })
        .collect();
    let mut bodies = Vec::new();
    for login in logins {
        let login = login.await.unwrap();
        assert_eq!(login.status, 200, "{}", login.text());
        bodies.push(login.body);
    }
    assert_eq!(fake.calls(), 1, "one code2session for the twenty");
    bodies.dedup();
    assert_eq!(bodies.len(), 1, "twenty identical answers");
    let answer: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap();
    let token = answer["token"].as_str().unwrap();
    let me = gateway.get_with_token("/api/me", token, &[]).await;
    assert_eq!(me.upstream_header("x-openid"), ["oFake_shared-code"]);
    // Once answered, the code is forgotten: a later login is a new call (which WeChat refuses
    // with 40163 for a real code).
    assert_eq!(gateway.login_response("shared-code").await.status, 200);
    assert_eq!(fake.calls(), 2);
}
