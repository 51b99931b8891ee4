//! Revocations that stay revoked (issue 27, defects 2 and 4): a logout is one entry per login,
//! repeated logouts add nothing, a full deny-list refuses (503) instead of dropping an entry, and a
//! refresh works only for the session's current login, within a per-user limit.

use crate::common::{Harness, Response, Setup};

fn token_of(response: &Response) -> String {
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["token"].as_str().unwrap().to_string()
}

async fn status_on_api(gateway: &Harness, token: &str) -> u16 {
    gateway.get_with_token("/api/me", token, &[]).await.status
}

/// Catches a build whose deny-list evicts (a bounded cache) or takes one entry per token: with
/// `max_entries = 1` the in-memory deny-list holds 4 live logouts. One login refreshed four times
/// and logged out five times takes one entry; three more logins fill it; then the next login and
/// the victim's logout are refused with 503, and every logout answered 200 still holds.
#[tokio::test]
async fn a_flood_of_logouts_cannot_flush_a_revocation() {
    for store in ["embedded", "memory"] {
        flood_of_logouts_on(store).await;
    }
}

async fn flood_of_logouts_on(store: &str) {
    let gateway = Harness::start_with(Setup {
        sections: format!(
            "[session]\nstore = \"{store}\"\nmax_entries = 1\n\
             [login.refresh_rate_limit]\nper_minute = 60\nburst = 10\n"
        ),
        ..Setup::default()
    })
    .await;
    let victim = gateway.login("victim.1").await;
    let first = gateway.login("mallory.1").await;
    let mut logged_out = vec![first.clone()];
    for _ in 0..4 {
        let refreshed = gateway.post_with_token("/token/refresh", &first).await;
        logged_out.push(token_of(&refreshed));
    }
    for token in logged_out.clone() {
        let response = gateway.post_with_token("/logout", &token).await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
    for round in 2..=4 {
        let token = gateway.login(&format!("mallory.{round}")).await;
        let response = gateway.post_with_token("/logout", &token).await;
        assert_eq!(response.status, 200, "logout {round}: {}", response.text());
        logged_out.push(token);
    }
    let refused = gateway.login_response("mallory.5").await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.error_code(), "session_store_unavailable");

    let victim_logout = gateway.post_with_token("/logout", &victim).await;
    assert_eq!(
        victim_logout.status, 503,
        "a logout that cannot be kept is not a 200"
    );
    assert_eq!(
        status_on_api(&gateway, &victim).await,
        200,
        "and nothing pretends it was"
    );
    // a repeated logout of a login already revoked needs no room
    let again = gateway.post_with_token("/logout", &logged_out[0]).await;
    assert_eq!(again.status, 200, "{}", again.text());
    for token in &logged_out {
        assert_eq!(status_on_api(&gateway, token).await, 401);
    }
}

/// Catches a build that refreshes a token of a replaced login: login 1's token is refused once
/// login 2 replaced the session, and still after login 2 logged out and login 3 began.
#[tokio::test]
async fn a_refresh_needs_the_tokens_own_login_to_be_current() {
    let gateway = Harness::start().await;
    let first = gateway.login("ursula.1").await;
    let second = gateway.login("ursula.2").await;
    let stale = gateway.post_with_token("/token/refresh", &first).await;
    assert_eq!(stale.status, 401);
    assert_eq!(stale.error_code(), "session_expired");
    assert_eq!(
        gateway.post_with_token("/logout", &second).await.status,
        200
    );
    let third = gateway.login("ursula.3").await;
    let stale = gateway.post_with_token("/token/refresh", &first).await;
    assert_eq!(stale.error_code(), "session_expired");
    let stale = gateway.post_with_token("/token/refresh", &second).await;
    assert_eq!(stale.error_code(), "session_expired");
    token_of(&gateway.post_with_token("/token/refresh", &third).await);
}

/// Catches a build without the per-user refresh limit: the default burst of 5, then 429 with
/// Retry-After; another user is not affected.
#[tokio::test]
async fn refreshes_are_limited_per_user() {
    let gateway = Harness::start().await;
    let token = gateway.login("victor").await;
    for _ in 0..5 {
        token_of(&gateway.post_with_token("/token/refresh", &token).await);
    }
    let limited = gateway.post_with_token("/token/refresh", &token).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.error_code(), "rate_limited");
    assert!(limited.header("retry-after").is_some());
    let other = gateway.login("wendy").await;
    token_of(&gateway.post_with_token("/token/refresh", &other).await);
}
