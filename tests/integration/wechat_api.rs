//! The `[wechat_api]` listener: backends call WeChat's server APIs through the gateway, which adds
//! its access_token. Checked against the mock, which records what it received: bodies and answers
//! byte for byte, one token fetch for a fleet sharing a real Redis, one re-fetch after a rotation,
//! callers outside loopback and `allow` refused, token-handing APIs refused.

use std::net::{IpAddr, SocketAddr};

use crate::common::metrics::Scrape;
use crate::common::redis::RedisServer;
use crate::common::{request, Harness, Response, Setup};
use wxgate::mock_wechat::MockWeChat;

const ON_LOOPBACK: &str = "[wechat_api]\nlisten = \"127.0.0.1:0\"\n";

fn api_addr(gateway: &Harness) -> SocketAddr {
    let bound = gateway
        .wechat_api_addr
        .expect("the wechat_api listener runs");
    SocketAddr::from(([127, 0, 0, 1], bound.port()))
}

async fn call(gateway: &Harness, method: &str, target: &str, body: &[u8]) -> Response {
    let headers = [("Content-Type", "application/json")];
    request(api_addr(gateway), method, target, &headers, body).await
}

fn subscribe_body(index: usize) -> Vec<u8> {
    serde_json::json!({
        "touser": format!("oMock_user{index}"),
        "template_id": "TEMPLATE",
        "data": { "thing1": { "value": "订单已发货" } },
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn calls_reach_wechat_unchanged_with_the_gateways_token() {
    let gateway = Harness::start_with(Setup {
        sections: ON_LOOPBACK.into(),
        ..Setup::default()
    })
    .await;
    let body = subscribe_body(1);
    let sent = call(
        &gateway,
        "POST",
        "/default/cgi-bin/message/subscribe/send?access_token=mine&lang=zh_CN",
        &body,
    )
    .await;
    assert_eq!(sent.status, 200, "{}", sent.text());
    assert_eq!(sent.json()["errcode"], 0);
    let received = gateway.wechat.api_calls();
    let last = received.last().unwrap();
    assert_eq!(last.path, "/cgi-bin/message/subscribe/send");
    assert_eq!(last.body, body, "the body byte for byte");
    assert_eq!(last.content_type.as_deref(), Some("application/json"));
    // The caller's own access_token is replaced by the gateway's; the rest of the query kept.
    assert!(
        last.query
            .starts_with("lang=zh_CN&access_token=mock-access-token-"),
        "{}",
        last.query
    );
    assert!(!last.query.contains("mine"));

    let checked = call(
        &gateway,
        "POST",
        "/default/wxa/msg_sec_check",
        br#"{"content":"mock-risky words","version":2,"scene":2,"openid":"oMock_a"}"#,
    )
    .await;
    assert_eq!(checked.json()["result"]["suggest"], "risky");

    let scene = "id=42";
    let image = call(
        &gateway,
        "POST",
        "/default/wxa/getwxacodeunlimit",
        format!(r#"{{"scene":"{scene}"}}"#).as_bytes(),
    )
    .await;
    assert_eq!(image.status, 200);
    assert_eq!(image.header("content-type"), Some("image/png"));
    assert_eq!(
        image.body,
        MockWeChat::mock_wxacode(scene),
        "the image byte for byte"
    );
    let refused = call(&gateway, "POST", "/default/wxa/getwxacodeunlimit", b"{}").await;
    assert_eq!(
        refused.json()["errcode"],
        40169,
        "WeChat's JSON error passes through"
    );

    let leaked = call(
        &gateway,
        "POST",
        "/default/wxa/msg_sec_check",
        br#"{"content":"mock-leak-token","version":2,"scene":2,"openid":"oMock_a"}"#,
    )
    .await;
    assert_eq!(
        (leaked.status, leaked.error_code().as_str()),
        (502, "wechat_bad_answer"),
        "an answer carrying the token is never passed on"
    );

    let get = call(&gateway, "GET", "/default/cgi-bin/get_api_domain_ip", b"").await;
    assert!(get.json()["ip_list"].is_array(), "{}", get.text());
    for answer in [&sent, &checked, &refused, &get, &leaked] {
        assert!(!answer.text().contains("mock-access-token"));
    }
    assert_eq!(gateway.wechat.stable_token_calls(), 1);
}

#[tokio::test]
async fn token_apis_unknown_apps_and_other_methods_are_refused() {
    let gateway = Harness::start_with(Setup {
        sections: ON_LOOPBACK.into(),
        ..Setup::default()
    })
    .await;
    for target in [
        "/default/cgi-bin/token?grant_type=client_credential",
        "/default/cgi-bin/stable_token",
        "/default/cgi-bin/component/api_component_token",
    ] {
        let refused = call(&gateway, "POST", target, b"{}").await;
        assert_eq!(
            (refused.status, refused.error_code().as_str()),
            (403, "forbidden"),
            "{target}"
        );
    }
    let unknown = call(&gateway, "POST", "/shop/wxa/msg_sec_check", b"{}").await;
    assert_eq!(
        (unknown.status, unknown.error_code().as_str()),
        (404, "unknown_app")
    );
    let put = call(&gateway, "PUT", "/default/wxa/msg_sec_check", b"{}").await;
    assert_eq!(put.status, 405);
    let sneaky = call(&gateway, "POST", "/default/wxa/../cgi-bin/token", b"{}").await;
    assert_eq!(sneaky.status, 403, "judged on the normalized path");
    assert_eq!(
        gateway.wechat.stable_token_calls(),
        0,
        "nothing reached WeChat"
    );
    assert!(gateway.wechat.api_calls().is_empty());
}

/// This machine's address on its network, so a connection can come from outside loopback.
fn non_loopback_ip() -> IpAddr {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    probe
        .connect("192.0.2.1:9")
        .expect("a route off loopback (no packet is sent)");
    let ip = probe.local_addr().unwrap().ip();
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
    ip
}

#[tokio::test]
async fn only_loopback_and_allowed_networks_may_call() {
    let ip = non_loopback_ip();
    let on_all = "[wechat_api]\nlisten = \"0.0.0.0:0\"\n";
    let closed = Harness::start_with(Setup {
        sections: on_all.into(),
        ..Setup::default()
    })
    .await;
    let outside = SocketAddr::new(ip, closed.wechat_api_addr.unwrap().port());
    let refused = request(outside, "POST", "/default/wxa/msg_sec_check", &[], b"{}").await;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (403, "forbidden")
    );
    assert!(closed.wechat.api_calls().is_empty());
    let loopback = call(&closed, "GET", "/default/cgi-bin/get_api_domain_ip", b"").await;
    assert_eq!(loopback.status, 200);

    let open = Harness::start_with(Setup {
        sections: format!("{on_all}allow = [\"{ip}/32\"]\n"),
        ..Setup::default()
    })
    .await;
    let allowed = SocketAddr::new(ip, open.wechat_api_addr.unwrap().port());
    let answer = request(
        allowed,
        "GET",
        "/default/cgi-bin/get_api_domain_ip",
        &[],
        b"",
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
}

#[tokio::test]
async fn a_fleet_fetches_the_token_once_and_once_again_after_a_rotation() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let sections = format!(
        "{ON_LOOPBACK}[session]\nstore = \"redis\"\nredis_url = \"{}\"\n",
        redis.url()
    );
    let a = Harness::start_with(Setup {
        sections: sections.clone(),
        ..Setup::default()
    })
    .await;
    // B calls A's WeChat, so one mock sees the whole fleet.
    let b = Harness::start_with(Setup {
        sections,
        api_base: Some(format!("http://{}", a.wechat_addr)),
        ..Setup::default()
    })
    .await;
    let (a, b) = (&a, &b);
    let round = |offset: usize| {
        let calls = (0..100).map(move |index| {
            let replica = if index % 2 == 0 { a } else { b };
            async move {
                let target = "/default/cgi-bin/message/subscribe/send";
                call(replica, "POST", target, &subscribe_body(offset + index)).await
            }
        });
        futures_util::future::join_all(calls)
    };
    for answer in round(0).await {
        assert_eq!(answer.json()["errcode"], 0, "{}", answer.text());
    }
    assert_eq!(
        a.wechat.stable_token_calls(),
        1,
        "one fetch for 100 calls on two replicas"
    );

    a.wechat.rotate_access_token();
    for answer in round(100).await {
        assert_eq!(answer.json()["errcode"], 0, "{}", answer.text());
    }
    assert_eq!(
        a.wechat.stable_token_calls(),
        2,
        "exactly one re-fetch after the rotation"
    );
    let path = "cgi-bin/message/subscribe/send";
    let (mut calls, mut retries) = (0.0, 0.0);
    for replica in [a, b] {
        let scrape = Scrape::of(replica.admin_addr).await;
        let labels = [("app", "default"), ("path", path), ("errcode", "0")];
        calls += scrape.value("wxgate_wechat_api_calls_total", &labels);
        retries += scrape.value("wxgate_wechat_api_retries_total", &labels[..2]);
    }
    assert_eq!(calls, 200.0);
    assert!((1.0..=100.0).contains(&retries), "{retries}");
    assert_eq!(b.wechat.stable_token_calls(), 0);
    let delivered = a
        .wechat
        .api_calls()
        .iter()
        .filter(|received| received.query.ends_with("mock-access-token-1"))
        .count();
    assert_eq!(
        delivered, 100,
        "every call of the second round delivered with the new token"
    );
}

#[tokio::test]
async fn a_body_over_the_retry_limit_streams_and_is_not_sent_twice() {
    let gateway = Harness::start_with(Setup {
        sections: format!("{ON_LOOPBACK}max_retry_body_bytes = 128\nmax_body_bytes = 1000\n"),
        ..Setup::default()
    })
    .await;
    let target = "/default/cgi-bin/message/subscribe/send";
    let small = subscribe_body(1);
    assert!(small.len() <= 128);
    assert_eq!(call(&gateway, "POST", target, &small).await.status, 200);
    gateway.wechat.rotate_access_token();
    let large = serde_json::json!({
        "touser": "oMock_big", "template_id": "T", "page": "x".repeat(300),
    })
    .to_string()
    .into_bytes();
    let stale = call(&gateway, "POST", target, &large).await;
    assert_eq!(
        stale.json()["errcode"],
        40001,
        "passed on as WeChat said it, not sent again"
    );
    // A kept body is sent again with a fresh token.
    let retried = call(&gateway, "POST", target, &small).await;
    assert_eq!(retried.json()["errcode"], 0, "{}", retried.text());
    assert_eq!(gateway.wechat.stable_token_calls(), 2);
    // With a current token, a streamed body arrives whole.
    let streamed = call(&gateway, "POST", target, &large).await;
    assert_eq!(streamed.json()["errcode"], 0);
    let received = gateway.wechat.api_calls();
    assert_eq!(received.last().unwrap().body, large);
    let too_large = "x".repeat(2000);
    let refused = call(&gateway, "POST", target, too_large.as_bytes()).await;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (413, "payload_too_large")
    );
}
