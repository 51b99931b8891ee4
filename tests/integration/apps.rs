//! Several mini-programs behind one gateway: `[wechat.apps.NAME]`, the app chosen by the login
//! body or path, tokens carrying their appid, and routes restricted to some apps.

use crate::common::tokens::payload;
use crate::common::{request, Harness, Setup, APPID};

const SHOP_APPID: &str = "wxtest0000000002";

async fn two_apps() -> Harness {
    Harness::start_with(Setup {
        server: "trusted_proxies = [\"127.0.0.1/32\"]".into(),
        apps: vec![("shop", SHOP_APPID, "shop-appsecret-0a1b2c3d4e5f")],
        extra_routes: "[[routes]]\nprefix = \"/shop\"\nupstream = \"http://{echo}\"\nauth = \"required\"\napps = [\"shop\"]\n"
            .into(),
        ..Setup::default()
    })
    .await
}

async fn login_json(gateway: &Harness, path: &str, body: &str) -> crate::common::Response {
    let json = [("Content-Type", "application/json")];
    request(gateway.addr, "POST", path, &json, body.as_bytes()).await
}

fn token(response: &crate::common::Response) -> String {
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn each_app_logs_in_with_its_own_credentials_and_tokens_carry_the_appid() {
    let gateway = two_apps().await;
    let default = gateway.login("pia").await;
    let by_body = token(&login_json(&gateway, "/login", r#"{"code":"pia.2","app":"shop"}"#).await);
    let by_path = token(&login_json(&gateway, "/login/shop", r#"{"code":"pia.3"}"#).await);
    assert_eq!(payload(&default)["appid"], APPID);
    assert_eq!(payload(&by_body)["appid"], SHOP_APPID);
    assert_eq!(payload(&by_path)["appid"], SHOP_APPID);
    assert_eq!(gateway.wechat.calls(), 3);

    let unknown = login_json(&gateway, "/login/nosuchapp", r#"{"code":"pia.4"}"#).await;
    assert_eq!(
        (unknown.status, unknown.error_code().as_str()),
        (404, "unknown_app")
    );
    let conflicting = login_json(
        &gateway,
        "/login/shop",
        r#"{"code":"pia.5","app":"default"}"#,
    )
    .await;
    assert_eq!(conflicting.status, 400);
    assert_eq!(gateway.wechat.calls(), 3, "refused before calling WeChat");
}

/// Catches a route restriction that is not enforced (on the proxy or in forward-auth checks).
#[tokio::test]
async fn a_route_restricted_to_one_app_refuses_the_others_token() {
    let gateway = two_apps().await;
    let default = gateway.login("quinn").await;
    let shop = token(&login_json(&gateway, "/login/shop", r#"{"code":"quinn.2"}"#).await);

    let allowed = gateway.get_with_token("/shop/cart", &shop, &[]).await;
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    assert_eq!(allowed.upstream_header("x-openid"), ["oMock_quinn"]);
    let refused = gateway.get_with_token("/shop/cart", &default, &[]).await;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (403, "app_not_allowed")
    );
    assert_eq!(
        gateway.echo.requests(),
        1,
        "the refused request never reached the upstream"
    );
    // Unrestricted routes serve both apps.
    for token in [&default, &shop] {
        assert_eq!(
            gateway.get_with_token("/api/me", token, &[]).await.status,
            200
        );
    }
    // The same rule in a forward-auth check.
    let bearer = format!("Bearer {default}");
    let check = request(
        gateway.addr,
        "GET",
        "/auth/shop/cart",
        &[("Authorization", &bearer)],
        b"",
    )
    .await;
    assert_eq!(check.status, 403);
}

/// Each app's phone numbers come with its own access_token and carry its own watermark: the mock
/// keeps one token per app, as WeChat does, and the gateway checks the watermark's appid.
#[tokio::test]
async fn each_apps_phone_numbers_use_its_own_access_token() {
    let gateway = two_apps().await;
    let default = gateway.login("pia").await;
    let shop = token(&login_json(&gateway, "/login/shop", r#"{"code":"pia.2"}"#).await);
    for (token, appid) in [(&default, APPID), (&shop, SHOP_APPID)] {
        let bearer = format!("Bearer {token}");
        let headers = [
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ];
        let answer = request(
            gateway.addr,
            "POST",
            "/wx/phone",
            &headers,
            br#"{"code":"c1"}"#,
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.json()["phone_info"]["watermark"]["appid"], appid);
    }
    assert_eq!(gateway.wechat.stable_token_calls(), 2, "one token per app");
}
