//! Access tokens of the platforms that have them, against the mock speaking each: QQ's getToken
//! (every fetch replaces the previous token, so one replica of a fleet owns it) and Baidu's
//! (`openapi_base`), used by the `[wechat_api]` listener and by Baidu logins that fetch the
//! unionid (`fetch_unionid`).

use std::net::SocketAddr;

use crate::common::redis::RedisServer;
use crate::common::{request, Harness, Response, Setup};

const QQ_APPID: &str = "1112223334";
const BAIDU_APP_KEY: &str = "baidu-app-key-0123";
const ON_LOOPBACK: &str = "[wechat_api]\nlisten = \"127.0.0.1:0\"\n";

fn platforms(sections: String) -> Setup {
    Setup {
        sections,
        platform_apps: vec![
            ("qqshop", "qq", QQ_APPID, "qq-app-secret"),
            ("qqnew", "qq", "1112223335", "qq-other-secret"),
            ("bdshop", "baidu", BAIDU_APP_KEY, "baidu-app-secret"),
            ("dyshop", "douyin", "tt0123456789abcdef", "douyin-secret"),
        ],
        platform_app_lines: vec![("bdshop", "fetch_unionid = true")],
        ..Setup::default()
    }
}

async fn call(gateway: &Harness, target: &str, body: &str) -> Response {
    let port = gateway.wechat_api_addr.expect("the listener runs").port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let headers = [("Content-Type", "application/json")];
    request(addr, "POST", target, &headers, body.as_bytes()).await
}

const CHECK: &str = r#"{"content":"hello","version":2,"scene":2,"openid":"oMock_a"}"#;

#[tokio::test]
async fn qq_and_baidu_server_apis_get_their_own_platforms_token() {
    let gateway = Harness::start_with(platforms(ON_LOOPBACK.into())).await;
    for app in ["qqshop", "bdshop"] {
        let answer = call(&gateway, &format!("/{app}/wxa/msg_sec_check"), CHECK).await;
        assert_eq!(answer.status, 200, "{app}: {}", answer.text());
        assert_eq!(answer.json()["errcode"], 0, "{app}: {}", answer.text());
        let received = gateway.wechat.api_calls();
        let query = &received.last().unwrap().query;
        assert!(query.contains("access_token=mock-access-token-"), "{query}");
        assert!(!answer.text().contains("mock-access-token"));
    }
    let again = call(&gateway, "/qqshop/wxa/msg_sec_check", CHECK).await;
    assert_eq!(again.json()["errcode"], 0);
    assert_eq!(gateway.wechat.get_token_calls(), 1, "QQ's token kept");
    assert_eq!(gateway.wechat.baidu_token_calls(), 1);
    assert_eq!(gateway.wechat.stable_token_calls(), 0, "not WeChat's API");

    for target in ["/qqshop/api/getToken", "/bdshop/oauth/2.0/token"] {
        let refused = call(&gateway, target, "{}").await;
        assert_eq!(
            (refused.status, refused.error_code().as_str()),
            (403, "forbidden"),
            "{target}"
        );
    }
    let douyin = call(&gateway, "/dyshop/wxa/msg_sec_check", CHECK).await;
    assert_eq!(
        (douyin.status, douyin.error_code().as_str()),
        (400, "platform_not_supported")
    );
    assert_eq!(gateway.wechat.get_token_calls(), 1);
}

#[tokio::test]
async fn a_qq_token_has_one_owner_in_the_fleet_and_none_without_the_store() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let sections = format!(
        "{ON_LOOPBACK}[session]\nstore = \"redis\"\nredis_url = \"{}\"\n",
        redis.url()
    );
    let a = Harness::start_with(platforms(sections.clone())).await;
    // B calls A's mock, so one mock sees the whole fleet.
    let b = Harness::start_with(Setup {
        api_base: Some(format!("http://{}", a.wechat_addr)),
        ..platforms(sections)
    })
    .await;
    let (a, b) = (&a, &b);
    let calls = (0..40).map(|index| async move {
        let replica = if index % 2 == 0 { a } else { b };
        call(replica, "/qqshop/wxa/msg_sec_check", CHECK).await
    });
    for answer in futures_util::future::join_all(calls).await {
        assert_eq!(answer.json()["errcode"], 0, "{}", answer.text());
    }
    assert_eq!(
        a.wechat.get_token_calls(),
        1,
        "one getToken for 40 calls on two replicas: none replaced another's token"
    );

    redis.stop();
    // An app whose token nobody holds yet: fetching it alone would knock out the token of any
    // replica that fetched it through the store, so the call is refused instead.
    let refused = call(a, "/qqnew/wxa/msg_sec_check", CHECK).await;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (503, "session_store_unavailable"),
        "{}",
        refused.text()
    );
    assert_eq!(
        a.wechat.get_token_calls(),
        1,
        "no getToken without the store"
    );
    // WeChat's stable_token hands every replica the same token: fetched alone.
    let wechat = call(a, "/default/wxa/msg_sec_check", CHECK).await;
    assert_eq!(wechat.json()["errcode"], 0, "{}", wechat.text());
    assert_eq!(a.wechat.stable_token_calls(), 1);
    // Tokens already held keep working.
    let held = call(b, "/qqshop/wxa/msg_sec_check", CHECK).await;
    assert_eq!(held.json()["errcode"], 0, "{}", held.text());
}

#[tokio::test]
async fn baidu_logins_fetch_the_unionid_when_configured() {
    let gateway = Harness::start_with(platforms(String::new())).await;
    let login = |code: &'static str| {
        let gateway = &gateway;
        async move {
            let body = serde_json::json!({ "code": code }).to_string();
            let headers = [("Content-Type", "application/json")];
            request(
                gateway.addr,
                "POST",
                "/login/bdshop",
                &headers,
                body.as_bytes(),
            )
            .await
        }
    };
    let answer = login("bella.1").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["unionid"], "uMock_bella");
    let token = answer.json()["token"].as_str().unwrap().to_string();
    let proxied = gateway.get_with_token("/api/who", &token, &[]).await;
    assert_eq!(proxied.upstream_header("x-unionid"), ["uMock_bella"]);
    assert_eq!(proxied.upstream_header("x-platform"), ["baidu"]);
    assert!(!answer.text().contains("mock-access-token"));

    assert_eq!(login("bruno.1").await.json()["unionid"], "uMock_bruno");
    assert_eq!(
        gateway.wechat.baidu_token_calls(),
        1,
        "one token for every login"
    );

    // Baidu answers errno 1: with fetch_unionid on, the login fails rather than issue a token
    // without the unionid the backends rely on.
    let refused = login("nounion.1").await;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (502, "wechat_error"),
        "{}",
        refused.text()
    );
    assert!(refused.json().get("token").is_none());
}
