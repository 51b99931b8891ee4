//! `POST /wx/decrypt` end to end: a user of the mock whose session_key is WeChat's documented
//! sample key, and data encrypted for it by an independent AES implementation
//! (`tests/support/make_decrypt_vectors.py`).

use crate::common::tokens::{claims, hs256};
use crate::common::{request, Harness, Response, APPID};
use serde_json::json;
use wxgate::mock_wechat::SAMPLE_SESSION_KEY;

const IV: &str = "AAECAwQFBgcICQoLDA0ODw==";
const USER: &str = "Lnyi8fMh3t2dWwcJFqQSEJ+qNlX1Kb7SO/gO9q9x1fnXavKKFYJ7yva54C4WatiAmEVXXNh/V77ZxfD5q+6M8Z/nySA5kpOoS9lh41MYtwXSGrKzSz4/0ErDrOM42sOn5EyOGYRvxBbAss6msa2A0PtE93n6qMRHe8d3X4b381t7QbBugS1kWlbDRC4eb55G";
const BAD_PADDING: &str = "7LFQ4hyYHboQffP7p3keAw==";
const RAW: &str = r#"{"nickName":"Olivia"}"#;
const SIGNATURE: &str = "85e403ad064f238232ad46a131d2cd603b24d067";

async fn decrypt(gateway: &Harness, token: &str, body: &serde_json::Value) -> Response {
    let bearer = format!("Bearer {token}");
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    request(
        gateway.addr,
        "POST",
        "/wx/decrypt",
        &headers,
        body.to_string().as_bytes(),
    )
    .await
}

#[tokio::test]
async fn decrypts_with_the_callers_session_key() {
    let gateway = Harness::start().await;
    let token = gateway.login("samplekey").await;
    let body = json!({ "encryptedData": USER, "iv": IV, "rawData": RAW, "signature": SIGNATURE });
    let response = decrypt(&gateway, &token, &body).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let data = response.json();
    assert_eq!(data["openId"], "oMock_olivia");
    assert_eq!(data["watermark"]["appid"], APPID);
    assert!(!response.text().contains(SAMPLE_SESSION_KEY));
    assert_eq!(gateway.echo.requests(), 0, "answered by the gateway itself");

    // The API's whole e.detail: errMsg and cloudID are ignored.
    let detail = json!({
        "encryptedData": USER, "iv": IV, "rawData": RAW, "signature": SIGNATURE,
        "errMsg": "getUserProfile:ok", "cloudID": "cloud-1",
    });
    let response = decrypt(&gateway, &token, &detail).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["openId"], "oMock_olivia");
}

#[tokio::test]
async fn every_failure_is_a_clear_4xx() {
    let gateway = Harness::start().await;
    let token = gateway.login("samplekey").await;
    let cases = [
        (
            json!({ "encryptedData": BAD_PADDING, "iv": IV }),
            400,
            "decrypt_failed",
        ),
        (
            json!({ "encryptedData": "%%%", "iv": IV }),
            400,
            "decrypt_failed",
        ),
        (
            json!({ "encryptedData": USER, "iv": "AAAA" }),
            400,
            "decrypt_failed",
        ),
        (
            json!({ "encryptedData": USER, "iv": IV, "rawData": "{}", "signature": SIGNATURE }),
            400,
            "decrypt_failed",
        ),
        (
            json!({ "encryptedData": USER, "iv": IV, "rawData": RAW }),
            400,
            "invalid_request",
        ),
        (json!({ "encryptedData": USER }), 400, "invalid_request"),
        (
            json!({ "encryptedData": USER, "iv": 16 }),
            400,
            "invalid_request",
        ),
        (
            json!({ "encryptedData": USER, "iv": IV, "rawData": 1, "signature": SIGNATURE }),
            400,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let response = decrypt(&gateway, &token, &body).await;
        assert_eq!(
            (response.status, response.error_code().as_str()),
            (status, code),
            "{body}"
        );
        assert!(!response.text().contains(SAMPLE_SESSION_KEY));
    }
    let stale = decrypt(
        &gateway,
        &token,
        &json!({ "encryptedData": BAD_PADDING, "iv": IV }),
    )
    .await;
    assert!(stale.text().contains("log in again"), "{}", stale.text());

    let anonymous = request(gateway.addr, "POST", "/wx/decrypt", &[], b"{}").await;
    assert_eq!(anonymous.error_code(), "missing_token");
    let get = request(gateway.addr, "GET", "/wx/decrypt", &[], b"").await;
    assert_eq!(get.status, 405);
}

#[tokio::test]
async fn no_live_session_means_log_in_again() {
    let gateway = Harness::start().await;
    let body = json!({ "encryptedData": USER, "iv": IV });
    // A valid token with no session behind it (minted elsewhere, or the gateway restarted).
    let mut sessionless = claims("oMock_samplekey");
    sessionless["appid"] = APPID.into();
    let response = decrypt(&gateway, &hs256(&sessionless), &body).await;
    assert_eq!(
        (response.status, response.error_code().as_str()),
        (401, "session_expired")
    );

    let token = gateway.login("samplekey").await;
    assert_eq!(gateway.post_with_token("/logout", &token).await.status, 200);
    let response = decrypt(&gateway, &token, &body).await;
    assert_eq!(
        (response.status, response.error_code().as_str()),
        (401, "invalid_token")
    );
}

/// Posts a login with `body` (JSON).
async fn login_with(gateway: &Harness, body: &serde_json::Value) -> Response {
    let headers = [("Content-Type", "application/json")];
    request(
        gateway.addr,
        "POST",
        "/login",
        &headers,
        body.to_string().as_bytes(),
    )
    .await
}

/// Issue 29, part C: user data posted beside the code is decrypted with the session_key that very
/// login obtained; data that does not decrypt is named in `data_error` and the login stands; a
/// half-given pair is refused before WeChat sees (and spends) the code.
#[tokio::test]
async fn a_login_decrypts_the_user_data_posted_with_its_code() {
    let gateway = Harness::start().await;
    let answer = login_with(
        &gateway,
        &json!({ "code": "samplekey.1", "encryptedData": USER, "iv": IV, "rawData": RAW,
                 "signature": SIGNATURE, "errMsg": "getUserProfile:ok" }),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["data"]["openId"], "oMock_olivia");
    assert_eq!(body["data"]["watermark"]["appid"], APPID);
    assert!(body.get("data_error").is_none());
    assert!(!answer.text().contains(SAMPLE_SESSION_KEY));
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(
        gateway.get_with_token("/api/me", &token, &[]).await.status,
        200
    );

    let undecryptable = login_with(
        &gateway,
        &json!({ "code": "samplekey.2", "encryptedData": BAD_PADDING, "iv": IV }),
    )
    .await;
    assert_eq!(undecryptable.status, 200, "{}", undecryptable.text());
    let body = undecryptable.json();
    assert_eq!(body["data_error"], "decrypt_failed");
    assert!(body.get("data").is_none());
    assert!(body["token"]
        .as_str()
        .is_some_and(|token| !token.is_empty()));

    for half in [
        json!({ "code": "samplekey.3", "encryptedData": USER }),
        json!({ "code": "samplekey.3", "iv": IV }),
        json!({ "code": "samplekey.3", "rawData": RAW, "signature": SIGNATURE }),
        json!({ "code": "samplekey.3", "encryptedData": USER, "iv": 16 }),
    ] {
        let refused = login_with(&gateway, &half).await;
        assert_eq!(refused.error_code(), "invalid_request", "{half}");
    }
    // WeChat never saw samplekey.3: it still logs in.
    assert_eq!(gateway.login_response("samplekey.3").await.status, 200);
}
