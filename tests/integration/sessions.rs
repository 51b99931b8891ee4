//! Token lifecycle with the default in-memory store: refresh of a live session (also shortly after
//! expiry), logout revoking the token and its login, and what is refused afterwards.

use crate::common::tokens::{claims, hs256, now, payload};
use crate::common::{request, Harness, Response, Setup};

fn token_of(response: &Response) -> String {
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn refresh_issues_a_new_token_for_the_same_login() {
    let gateway = Harness::start().await;
    let token = gateway.login("jack").await;
    let refreshed = gateway.post_with_token("/token/refresh", &token).await;
    assert_eq!(refreshed.header("cache-control"), Some("no-store"));
    let answer = refreshed.json();
    assert_eq!(answer["openid"], "oMock_jack");
    assert_eq!(answer["unionid"], "uMock_jack");
    assert_eq!(answer["token_type"], "Bearer");
    let new_token = token_of(&refreshed);
    assert_ne!(new_token, token);
    let (old, new) = (payload(&token), payload(&new_token));
    assert_eq!(old["sid"], new["sid"], "same login");
    assert_ne!(old["jti"], new["jti"]);
    assert!(!answer.to_string().contains("session_key"));
    let response = gateway.get_with_token("/api/me", &new_token, &[]).await;
    assert_eq!(response.upstream_header("x-openid"), ["oMock_jack"]);

    let get = request(gateway.addr, "GET", "/token/refresh", &[], b"").await;
    assert_eq!((get.status, get.header("allow")), (405, Some("POST")));
    let anonymous = request(gateway.addr, "POST", "/token/refresh", &[], b"").await;
    assert_eq!(anonymous.error_code(), "missing_token");
}

#[tokio::test]
async fn a_recently_expired_token_refreshes_and_an_old_one_does_not() {
    let gateway = Harness::start().await;
    let token = gateway.login("kate").await;
    let sid = payload(&token)["sid"].clone();
    let issued = payload(&token)["iat"].clone();
    let expired = |ago: u64| {
        let mut forged = claims("oMock_kate");
        forged["sid"] = sid.clone();
        forged["iat"] = issued.clone();
        forged["exp"] = (now() - ago).into();
        hs256(&forged)
    };
    let recent = expired(600);
    assert_eq!(
        gateway.get_with_token("/api/me", &recent, &[]).await.status,
        401
    );
    token_of(&gateway.post_with_token("/token/refresh", &recent).await);
    let too_old = gateway
        .post_with_token("/token/refresh", &expired(2 * 86_400))
        .await;
    assert_eq!(too_old.status, 401);
    assert!(
        too_old.text().contains("too long ago"),
        "{}",
        too_old.text()
    );
}

/// On each store kind: the memory store keeps its own record of revocations. One worker thread,
/// so that every request meets the same per-thread copy of the verified token, the one that
/// remembers having been found not revoked.
#[tokio::test]
async fn logout_revokes_the_token_and_its_login() {
    for store in ["embedded", "memory"] {
        logout_revokes_on(store).await;
    }
}

async fn logout_revokes_on(store: &str) {
    let gateway = Harness::start_with(Setup {
        server: "workers = 1".into(),
        sections: format!("[session]\nstore = \"{store}\"\n"),
        ..Setup::default()
    })
    .await;
    let token = gateway.login("liam").await;
    let refreshed = token_of(&gateway.post_with_token("/token/refresh", &token).await);
    // Both answered before the logout: the gateway has found them not revoked, and must look again.
    for live in [&token, &refreshed, &token] {
        let response = gateway.get_with_token("/api/me", live, &[]).await;
        assert_eq!(response.status, 200);
    }

    let logout = gateway.post_with_token("/logout", &token).await;
    assert_eq!(logout.status, 200, "{}", logout.text());
    assert_eq!(logout.json()["logged_out"], true);

    for revoked in [&token, &refreshed] {
        let response = gateway.get_with_token("/api/me", revoked, &[]).await;
        assert_eq!(response.status, 401);
        assert!(response.text().contains("revoked"), "{}", response.text());
        let refused = gateway.post_with_token("/token/refresh", revoked).await;
        assert_eq!(refused.error_code(), "session_expired");
    }
    // Logging out twice is harmless; logging in again works.
    assert_eq!(gateway.post_with_token("/logout", &token).await.status, 200);
    let again = gateway.login("liam.2").await;
    assert_eq!(
        gateway.get_with_token("/api/me", &again, &[]).await.status,
        200
    );
    assert_eq!(
        gateway.echo.requests(),
        4,
        "{store}: revoked tokens never reached the upstream"
    );
}

#[tokio::test]
async fn tokens_without_a_session_cannot_refresh() {
    let gateway = Harness::start().await;
    // Minted by the operator's own tooling: valid for requests, but no login behind it.
    let tooling = hs256(&claims("o-tooling"));
    assert_eq!(
        gateway
            .get_with_token("/api/me", &tooling, &[])
            .await
            .status,
        200
    );
    let refused = gateway.post_with_token("/token/refresh", &tooling).await;
    assert_eq!(refused.error_code(), "session_expired");
    assert!(refused.header("www-authenticate").is_some());
}
