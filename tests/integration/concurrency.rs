//! Hundreds of simultaneous requests from different users: each upstream request carries its own
//! user's openid, never another's.

use crate::common::tokens::{claims, hs256};
use crate::common::{Harness, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_concurrent_request_carries_its_own_users_openid() {
    let gateway = std::sync::Arc::new(Harness::start().await);
    let users: Vec<(String, String)> = (0..50)
        .map(|user| {
            let openid = format!("o-user-{user}");
            let token = hs256(&claims(&openid));
            (openid, token)
        })
        .collect();
    let mut tasks = Vec::new();
    for round in 0..8 {
        for (openid, token) in &users {
            let gateway = gateway.clone();
            let (openid, token) = (openid.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                let path = format!("/api/whoami?round={round}&user={openid}");
                let response = gateway
                    .get_with_token(&path, &token, &[("X-OpenId", "o-spoofed")])
                    .await;
                assert_eq!(response.status, 200);
                assert_eq!(response.upstream_uri(), path);
                assert_eq!(response.upstream_header("x-openid"), [openid]);
            }));
        }
    }
    assert_eq!(tasks.len(), 400);
    for task in tasks {
        task.await.expect("request task");
    }
    assert_eq!(gateway.echo.requests(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_each_get_their_own_token() {
    // 100 users behind one address: more than the default login limit per IP allows at once.
    let gateway = std::sync::Arc::new(
        Harness::start_with(Setup {
            sections: "[login.rate_limit]\nper_minute = 0\n".into(),
            ..Setup::default()
        })
        .await,
    );
    let mut tasks = Vec::new();
    for user in 0..100 {
        let gateway = gateway.clone();
        tasks.push(tokio::spawn(async move {
            let token = gateway.login(&format!("u{user}.1")).await;
            let response = gateway.get_with_token("/api/me", &token, &[]).await;
            assert_eq!(
                response.upstream_header("x-openid"),
                [format!("oMock_u{user}")]
            );
        }));
    }
    for task in tasks {
        task.await.expect("login task");
    }
    assert_eq!(gateway.wechat.calls(), 100);
}
