//! `POST /wx/session/check`: WeChat's checksession asked with the stored session_key (signed, never
//! sent), `{"valid": false}` once WeChat replaced the key, and `/wx/decrypt` then refused at once
//! with 401 `session_key_stale`, on every store.

use crate::common::{request, Harness, Response, Setup, APPID, APP_SECRET};

async fn check(gateway: &Harness, token: &str) -> Response {
    let bearer = format!("Bearer {token}");
    request(
        gateway.addr,
        "POST",
        "/wx/session/check",
        &[("Authorization", bearer.as_str())],
        b"",
    )
    .await
}

async fn decrypt(gateway: &Harness, token: &str) -> Response {
    let bearer = format!("Bearer {token}");
    let body = serde_json::json!({ "encryptedData": "AAAAAAAAAAAAAAAAAAAAAA==", "iv": "AAAAAAAAAAAAAAAAAAAAAA==" });
    request(
        gateway.addr,
        "POST",
        "/wx/decrypt",
        &[
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
    .await
}

#[tokio::test]
async fn a_replaced_session_key_is_found_stale_and_decryption_refused() {
    for store in ["embedded", "memory"] {
        let gateway = Harness::start_with(Setup {
            sections: format!("[session]\nstore = \"{store}\"\n"),
            ..Setup::default()
        })
        .await;
        let token = gateway.login("xena").await;
        let fresh = check(&gateway, &token).await;
        assert_eq!(fresh.status, 200, "{store}: {}", fresh.text());
        assert_eq!(
            fresh.json(),
            serde_json::json!({ "valid": true }),
            "{store}"
        );
        // The key is still current: decryption is tried (and this garbage fails as such).
        assert_eq!(
            decrypt(&gateway, &token).await.error_code(),
            "decrypt_failed"
        );

        gateway.wechat.replace_session_key("oMock_xena");
        let stale = check(&gateway, &token).await;
        assert_eq!(
            stale.json(),
            serde_json::json!({ "valid": false }),
            "{store}"
        );
        let refused = decrypt(&gateway, &token).await;
        assert_eq!(
            (refused.status, refused.error_code().as_str()),
            (401, "session_key_stale"),
            "{store}: {}",
            refused.text()
        );
        // Known stale: answered without asking WeChat again.
        let api_calls = gateway.wechat.stable_token_calls();
        assert_eq!(check(&gateway, &token).await.json()["valid"], false);
        assert_eq!(gateway.wechat.stable_token_calls(), api_calls);

        // A new login brings a new key: valid again.
        let again = gateway.login("xena.2").await;
        assert_eq!(
            check(&gateway, &again).await.json()["valid"],
            true,
            "{store}"
        );
        for key in gateway.wechat.issued_session_keys() {
            assert!(!stale.text().contains(&key) && !fresh.text().contains(&key));
        }
    }
}

#[tokio::test]
async fn a_stale_access_token_is_fetched_again_for_the_check() {
    let gateway = Harness::start().await;
    let token = gateway.login("yves").await;
    assert_eq!(check(&gateway, &token).await.json()["valid"], true);
    gateway.wechat.rotate_access_token();
    let checked = check(&gateway, &token).await;
    assert_eq!(checked.json()["valid"], true, "{}", checked.text());
    assert_eq!(gateway.wechat.stable_token_calls(), 2);
}

#[tokio::test]
async fn the_check_needs_a_token_and_post() {
    let gateway = Harness::start().await;
    let anonymous = request(gateway.addr, "POST", "/wx/session/check", &[], b"").await;
    assert_eq!(
        (anonymous.status, anonymous.error_code().as_str()),
        (401, "missing_token")
    );
    let get = request(gateway.addr, "GET", "/wx/session/check", &[], b"").await;
    assert_eq!(get.status, 405);
}

/// The mock answers the way WeChat does where a gateway (or a backend behind the `[wechat_api]`
/// listener) could tell.
#[tokio::test]
async fn the_mock_answers_wrong_methods_and_missing_tokens_as_wechat_does() {
    let gateway = Harness::start().await;
    let wechat = gateway.wechat_addr;
    let wrong_method = request(wechat, "GET", "/wxa/business/getuserphonenumber", &[], b"").await;
    assert_eq!(wrong_method.json()["errcode"], 43002);
    let no_token = request(wechat, "POST", "/wxa/msg_sec_check", &[], b"{}").await;
    assert_eq!(no_token.json()["errcode"], 41001);
    let old_token = request(
        wechat,
        "POST",
        "/wxa/msg_sec_check?access_token=mock-access-token-999",
        &[],
        b"{}",
    )
    .await;
    assert_eq!(old_token.json()["errcode"], 40001);
    let blocked = gateway.login_response("mock-blocked").await;
    assert_eq!(blocked.error_code(), "user_blocked");
    let query = format!(
        "appid={APPID}&secret={APP_SECRET}&js_code=mock-blocked&grant_type=authorization_code"
    );
    let direct = request(
        wechat,
        "GET",
        &format!("/sns/jscode2session?{query}"),
        &[],
        b"",
    )
    .await;
    assert!(
        direct.json()["errmsg"]
            .as_str()
            .unwrap()
            .starts_with("code blocked"),
        "{}",
        direct.text()
    );
}
