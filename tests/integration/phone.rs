//! `POST /wx/phone` and the access_token behind it: one stable_token fetch for many concurrent
//! callers, one for two replicas sharing Redis, and a stale token fetched again exactly once.

use crate::common::redis::RedisServer;
use crate::common::{request, Harness, Response, Setup};
use wxgate::mock_wechat::MOCK_PHONE;

async fn phone(gateway: &Harness, token: &str, code: &str) -> Response {
    let bearer = format!("Bearer {token}");
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let body = serde_json::json!({ "code": code }).to_string();
    request(gateway.addr, "POST", "/wx/phone", &headers, body.as_bytes()).await
}

fn assert_phone(response: &Response) {
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["phone_info"]["phoneNumber"], MOCK_PHONE);
    assert!(
        !response.text().contains("access-token"),
        "{}",
        response.text()
    );
}

#[tokio::test]
async fn fifty_concurrent_callers_share_one_access_token_fetch() {
    let gateway = Harness::start().await;
    let token = gateway.login("ruby").await;
    let calls = (0..50).map(|index| {
        let (gateway, token) = (&gateway, token.clone());
        async move { phone(gateway, &token, &format!("phone-code-{index}")).await }
    });
    for response in futures_util::future::join_all(calls).await {
        assert_phone(&response);
    }
    assert_eq!(gateway.wechat.stable_token_calls(), 1);
    assert_eq!(gateway.wechat.phone_calls(), 50);
}

#[tokio::test]
async fn a_stale_access_token_is_fetched_again_once_and_the_call_retried() {
    let gateway = Harness::start().await;
    let token = gateway.login("sam").await;
    assert_phone(&phone(&gateway, &token, "first").await);
    assert_eq!(gateway.wechat.stable_token_calls(), 1);

    gateway.wechat.rotate_access_token();
    assert_phone(&phone(&gateway, &token, "second").await);
    assert_eq!(
        gateway.wechat.stable_token_calls(),
        2,
        "exactly one re-fetch"
    );
    assert_eq!(
        gateway.wechat.phone_calls(),
        3,
        "the refused call, then its retry"
    );
}

#[tokio::test]
async fn phone_failures_are_clear() {
    let gateway = Harness::start().await;
    let token = gateway.login("tess").await;
    let invalid = phone(&gateway, &token, "mock-invalid").await;
    assert_eq!(
        (invalid.status, invalid.error_code().as_str()),
        (400, "invalid_phone_code")
    );
    let empty = phone(&gateway, &token, "").await;
    assert_eq!(empty.error_code(), "invalid_request");
    let quota = phone(&gateway, &token, "mock-ratelimit").await;
    assert_eq!(
        (quota.status, quota.error_code().as_str()),
        (429, "rate_limited")
    );
    assert!(quota.header("retry-after").is_some());
    let bearer = format!("Bearer {token}");
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let post = |body: serde_json::Value| {
        let body = body.to_string();
        async move { request(gateway.addr, "POST", "/wx/phone", &headers, body.as_bytes()).await }
    };
    // The button's whole e.detail: the members beside the code are ignored.
    let detail = serde_json::json!({
        "code": "tess-phone", "errMsg": "getPhoneNumber:ok", "encryptedData": "AAAA",
        "iv": "AAAA", "cloudID": "cloud-1",
    });
    assert_phone(&post(detail).await);
    let wrong_type = post(serde_json::json!({ "code": 5 })).await;
    assert_eq!(wrong_type.error_code(), "invalid_request");
    // An answer watermarked for another app is not this app's user's number.
    let foreign = phone(&gateway, &token, "mock-other-app").await;
    assert_eq!(
        (foreign.status, foreign.error_code().as_str()),
        (502, "wechat_bad_answer")
    );
    assert!(!foreign.text().contains(MOCK_PHONE));
    let anonymous = request(gateway.addr, "POST", "/wx/phone", &[], b"{}").await;
    assert_eq!(anonymous.error_code(), "missing_token");
    assert_eq!(
        request(gateway.addr, "GET", "/wx/phone", &[], b"")
            .await
            .status,
        405
    );
}

#[tokio::test]
async fn two_replicas_fetch_the_access_token_once_through_redis() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let session = format!(
        "[session]\nstore = \"redis\"\nredis_url = \"{}\"\n",
        redis.url()
    );
    let a = Harness::start_with(Setup {
        sections: session.clone(),
        ..Setup::default()
    })
    .await;
    // B calls A's WeChat, so one counter sees the whole fleet.
    let b = Harness::start_with(Setup {
        sections: session,
        api_base: Some(format!("http://{}", a.wechat_addr)),
        ..Setup::default()
    })
    .await;
    let token = a.login("uma").await;
    let calls = (0..20).map(|index| {
        let (replica, token) = (if index % 2 == 0 { &a } else { &b }, token.clone());
        async move { phone(replica, &token, &format!("code-{index}")).await }
    });
    for response in futures_util::future::join_all(calls).await {
        assert_phone(&response);
    }
    assert_eq!(
        a.wechat.stable_token_calls(),
        1,
        "one fetch for both replicas"
    );
    assert_eq!(b.wechat.stable_token_calls(), 0);
}

#[tokio::test]
async fn a_phone_code_works_once_and_one_spent_by_a_busy_wechat_is_a_503() {
    let gateway = Harness::start().await;
    let token = gateway.login("vera").await;
    assert_phone(&phone(&gateway, &token, "vera-phone").await);
    let again = phone(&gateway, &token, "vera-phone").await;
    assert_eq!(
        (again.status, again.error_code().as_str()),
        (400, "invalid_phone_code")
    );
    let calls_before = gateway.wechat.phone_calls();
    // WeChat answers -1 while spending the code; the retry finds it used: not the user's fault.
    let spent = phone(&gateway, &token, "mock-busy-spent").await;
    assert_eq!(
        (spent.status, spent.error_code().as_str()),
        (503, "wechat_busy"),
        "{}",
        spent.text()
    );
    assert_eq!(spent.header("retry-after"), Some("1"));
    assert_eq!(gateway.wechat.phone_calls(), calls_before + 2, "one retry");
}

#[tokio::test]
async fn the_access_token_is_refreshed_ahead_of_its_expiry() {
    let gateway = Harness::start().await;
    // stable_token answers the lifetime left: 302 s is kept for 2 s (the 300 s margin).
    gateway
        .wechat
        .set_access_token_lifetime(std::time::Duration::from_secs(302));
    let token = gateway.login("walt").await;
    assert_phone(&phone(&gateway, &token, "walt-1").await);
    assert_phone(&phone(&gateway, &token, "walt-2").await);
    assert_eq!(gateway.wechat.stable_token_calls(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_phone(&phone(&gateway, &token, "walt-3").await);
    assert_eq!(
        gateway.wechat.stable_token_calls(),
        2,
        "fetched again before WeChat's expiry"
    );
}
