//! The admin listener: /metrics read by the Prometheus project's own parser with the counters
//! moving as requests are made, /healthz and /readyz, and none of it on the public listener.

use std::time::Duration;

use crate::common::metrics::{parser_available, Scrape};
use crate::common::{Harness, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_count_what_happened() {
    if !parser_available() {
        return;
    }
    let gateway = Harness::start().await;
    let before = Scrape::of(gateway.admin_addr).await;
    // Labelled families appear with their first sample; plain ones from the start.
    assert_eq!(before.families["wxgate_open_connections"], "gauge");
    fn requests<'a>(route: &'a str, status: &'a str) -> [(&'static str, &'a str); 2] {
        [("route", route), ("status", status)]
    }
    assert_eq!(
        before.value("wxgate_http_requests_total", &requests("/api", "200")),
        0.0
    );

    let token = gateway.login("alice.1").await;
    assert_eq!(gateway.login_response("mock-invalid").await.status, 401);
    assert_eq!(
        gateway.get_with_token("/api/a", &token, &[]).await.status,
        200
    );
    assert_eq!(
        gateway.get_with_token("/api/b", &token, &[]).await.status,
        200
    );
    assert_eq!(gateway.get("/api/c", &[]).await.status, 401);
    let forged = format!("{token}x");
    assert_eq!(
        gateway.get_with_token("/api/d", &forged, &[]).await.status,
        401
    );
    assert_eq!(gateway.get("/nowhere", &[]).await.status, 404);
    // The admin endpoints are not on the public listener.
    assert_eq!(gateway.get("/metrics", &[]).await.status, 404);

    let after = Scrape::of(gateway.admin_addr).await;
    let count = |name: &str, labels: &[(&str, &str)]| after.value(name, labels);
    for (family, kind) in [
        ("wxgate_http_requests", "counter"),
        ("wxgate_http_request_duration_seconds", "histogram"),
        ("wxgate_upstream_duration_seconds", "histogram"),
        ("wxgate_logins", "counter"),
        ("wxgate_wechat_request_duration_seconds", "histogram"),
        ("wxgate_token_rejections", "counter"),
        ("wxgate_open_connections", "gauge"),
        ("wxgate_session_store_errors", "counter"),
        ("wxgate_wechat_circuit_open", "gauge"),
    ] {
        assert_eq!(after.families[family], kind, "{family}");
    }
    assert_eq!(
        count("wxgate_http_requests_total", &requests("/api", "200")),
        2.0
    );
    assert_eq!(
        count("wxgate_http_requests_total", &requests("/api", "401")),
        2.0
    );
    assert_eq!(
        count("wxgate_http_requests_total", &requests("login", "200")),
        1.0
    );
    assert_eq!(
        count("wxgate_http_requests_total", &requests("login", "401")),
        1.0
    );
    assert_eq!(
        count("wxgate_http_requests_total", &requests("none", "404")),
        2.0
    );
    assert_eq!(
        count(
            "wxgate_http_request_duration_seconds_count",
            &[("route", "/api")]
        ),
        4.0
    );
    assert_eq!(
        count(
            "wxgate_upstream_duration_seconds_count",
            &[("route", "/api")]
        ),
        2.0
    );
    fn login<'a>(outcome: &'a str, errcode: &'a str) -> [(&'static str, &'a str); 2] {
        [("outcome", outcome), ("errcode", errcode)]
    }
    assert_eq!(count("wxgate_logins_total", &login("success", "0")), 1.0);
    assert_eq!(
        count("wxgate_logins_total", &login("invalid_code", "40029")),
        1.0
    );
    assert_eq!(
        count(
            "wxgate_wechat_request_duration_seconds_count",
            &[("api", "code2session")]
        ),
        2.0
    );
    assert_eq!(
        count(
            "wxgate_token_rejections_total",
            &[("reason", "missing_token")]
        ),
        1.0
    );
    assert!(count("wxgate_connections_total", &[]) >= 8.0);
    assert_eq!(count("wxgate_session_store_errors_total", &[]), 0.0);
    assert_eq!(count("wxgate_wechat_circuit_open", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_store_errors_are_counted_and_make_the_gateway_unready() {
    if !parser_available() {
        return;
    }
    let closed = crate::common::closed_port().await;
    let gateway = Harness::start_with(Setup {
        sections: format!(
            "[session]\nstore = \"redis\"\nredis_url = \"redis://{closed}\"\nredis_timeout_ms = 300\n"
        ),
        ..Setup::default()
    })
    .await;
    assert_eq!(gateway.login_response("bob.1").await.status, 503);
    let ready = crate::common::request(gateway.admin_addr, "GET", "/readyz", &[], b"").await;
    assert_eq!(ready.status, 503);
    let checks = &ready.json()["checks"];
    assert_eq!(checks["config"], "ok");
    assert_eq!(checks["listener"], "ok");
    assert_ne!(checks["session_store"], "ok");
    let healthy = crate::common::request(gateway.admin_addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(healthy.status, 200, "alive, if not ready");
    let scrape = Scrape::of(gateway.admin_addr).await;
    assert!(scrape.value("wxgate_session_store_errors_total", &[]) >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_until_shutdown_begins_then_unready_while_draining() {
    let (slow, _) = crate::common::slow_upstream(Duration::from_secs(2)).await;
    let mut gateway = Harness::start_with(Setup {
        extra_routes: format!(
            "[[routes]]\nprefix = \"/drain\"\nupstream = \"http://{slow}\"\nauth = \"none\"\ntimeout_ms = 5000\n"
        ),
        ..Setup::default()
    })
    .await;
    let admin = gateway.admin_addr;
    let ready = crate::common::request(admin, "GET", "/readyz", &[], b"").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["status"], "ready");
    assert_eq!(
        crate::common::request(admin, "POST", "/readyz", &[], b"")
            .await
            .status,
        405
    );

    let addr = gateway.addr;
    let in_flight =
        tokio::spawn(
            async move { crate::common::request(addr, "GET", "/drain/x", &[], b"").await },
        );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let server = gateway.begin_shutdown();
    let mut draining = None;
    for _ in 0..40 {
        let answer = crate::common::request(admin, "GET", "/readyz", &[], b"").await;
        if answer.status == 503 {
            draining = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let draining = draining.expect("unready once shutdown began");
    assert_ne!(draining.json()["checks"]["listener"], "ok");
    assert_eq!(
        in_flight.await.unwrap().status,
        200,
        "the in-flight request finished"
    );
    server.await.unwrap().unwrap();
}
