//! The forward-auth endpoint in each ingress's request shape (ingress-nginx, Traefik/APISIX,
//! Envoy ext_authz), and its trust rules: original-request headers count only from
//! `server.trusted_proxies`, and sources that disagree are judged as a protected path.

use crate::common::{request, Harness, Response, Setup};

/// A gateway that trusts the test client (127.0.0.1) as its proxy, with an extra forward-auth-only
/// rule (`/docs`, no upstream).
async fn behind_trusted_proxy() -> Harness {
    Harness::start_with(Setup {
        server: "trusted_proxies = [\"127.0.0.1/32\"]".into(),
        extra_routes: "[[routes]]\nprefix = \"/docs\"\nauth = \"none\"\n".into(),
        ..Setup::default()
    })
    .await
}

async fn check(
    gateway: &Harness,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Response {
    request(gateway.addr, method, target, headers, b"").await
}

fn identity_headers(response: &Response) -> Vec<(String, String)> {
    response
        .headers
        .iter()
        .filter(|(name, _)| {
            let name = name.to_ascii_lowercase().replace('_', "-");
            name == "x-openid" || name == "x-unionid"
        })
        .cloned()
        .collect()
}

fn assert_denied(response: &Response, code: &str) {
    assert_eq!(response.status, 401, "{}", response.text());
    assert!(response
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(response.error_code(), code);
    assert!(identity_headers(response).is_empty());
}

fn assert_allowed_as(response: &Response, openid: Option<&str>) {
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("cache-control"), Some("no-store"));
    match openid {
        Some(openid) => {
            assert_eq!(
                identity_headers(response)[0],
                ("x-openid".into(), openid.into())
            );
            assert_eq!(response.json()["authenticated"], true);
        }
        None => {
            assert!(
                identity_headers(response).is_empty(),
                "{:?}",
                response.headers
            );
            assert_eq!(response.json()["authenticated"], false);
        }
    }
}

#[tokio::test]
async fn traefik_and_apisix_shape_is_judged_by_x_forwarded_uri() {
    let gateway = behind_trusted_proxy().await;
    let token = gateway.login("alice").await;
    let bearer = format!("Bearer {token}");
    let shape = |uri: &'static str, method: &'static str| {
        vec![
            ("X-Forwarded-Method", method),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "shop.example"),
            ("X-Forwarded-Uri", uri),
            ("X-Forwarded-For", "203.0.113.7"),
        ]
    };

    let public = check(
        &gateway,
        "GET",
        "/auth",
        &shape("/public/list?page=2", "GET"),
    )
    .await;
    assert_allowed_as(&public, None);
    assert_eq!(public.json()["path"], "/public/list");

    let anonymous = check(&gateway, "GET", "/auth", &shape("/api/orders", "POST")).await;
    assert_denied(&anonymous, "missing_token");

    let mut headers = shape("/api/orders", "POST");
    headers.push(("Authorization", &bearer));
    // APISIX may call the auth service with POST; the decision is the same.
    for method in ["GET", "POST"] {
        let allowed = check(&gateway, method, "/auth", &headers).await;
        assert_allowed_as(&allowed, Some("oMock_alice"));
        assert_eq!(allowed.header("x-unionid"), Some("uMock_alice"));
        assert_eq!(allowed.json()["method"], "POST");
    }

    let mut forged = shape("/api/orders", "GET");
    forged.push(("Authorization", "Bearer not.a.token"));
    assert_denied(
        &check(&gateway, "GET", "/auth", &forged).await,
        "invalid_token",
    );
    assert_eq!(gateway.echo.requests(), 0, "forward-auth never proxies");
}

#[tokio::test]
async fn ingress_nginx_shape_is_judged_by_x_original_url() {
    let gateway = behind_trusted_proxy().await;
    let token = gateway.login("bob").await;
    let bearer = format!("Bearer {token}");
    let public = [
        (
            "X-Original-URL",
            "https://shop.example/public/../public/x?y=1",
        ),
        ("X-Original-Method", "GET"),
    ];
    assert_allowed_as(&check(&gateway, "GET", "/auth", &public).await, None);

    let protected = [
        ("X-Original-URL", "https://shop.example/api/me"),
        ("X-Original-Method", "GET"),
    ];
    assert_denied(
        &check(&gateway, "GET", "/auth", &protected).await,
        "missing_token",
    );
    let mut with_token = protected.to_vec();
    with_token.push(("Authorization", &bearer));
    assert_allowed_as(
        &check(&gateway, "GET", "/auth", &with_token).await,
        Some("oMock_bob"),
    );

    // ingress-nginx builds X-Original-URL from the client's Host: a Host ending in `?` must not
    // turn /api/me into the root path.
    let swallowed = [("X-Original-URL", "https://evil?/api/me")];
    assert_denied(
        &check(&gateway, "GET", "/auth", &swallowed).await,
        "missing_token",
    );

    // A rule without an upstream decides forward-auth checks; the proxy itself has nothing there.
    let docs = [("X-Original-URI", "/docs/intro")];
    assert_allowed_as(&check(&gateway, "GET", "/auth", &docs).await, None);
    assert_eq!(gateway.get("/docs/intro", &[]).await.status, 404);
}

#[tokio::test]
async fn envoy_shape_is_judged_by_the_path_under_the_endpoint() {
    let gateway = behind_trusted_proxy().await;
    let token = gateway.login("carol").await;
    let bearer = format!("Bearer {token}");

    let public = check(&gateway, "POST", "/auth/public/upload?x=1", &[]).await;
    assert_allowed_as(&public, None);
    assert_eq!(public.json()["method"], "POST");
    assert_denied(
        &check(&gateway, "DELETE", "/auth/api/orders/7", &[]).await,
        "missing_token",
    );
    let allowed = check(
        &gateway,
        "DELETE",
        "/auth/api/orders/7",
        &[("Authorization", &bearer)],
    )
    .await;
    assert_allowed_as(&allowed, Some("oMock_carol"));
    assert_eq!(allowed.json()["path"], "/api/orders/7");

    // A path no rule covers is protected; an optional rule with a bad token is refused.
    assert_denied(
        &check(&gateway, "GET", "/auth/elsewhere", &[]).await,
        "missing_token",
    );
    let bad = [("Authorization", "Bearer x.y.z")];
    assert_denied(
        &check(&gateway, "GET", "/auth/opt/x", &bad).await,
        "invalid_token",
    );
    assert_allowed_as(&check(&gateway, "GET", "/auth/opt/x", &[]).await, None);
}

/// Catches a gateway that picks one source by precedence: a client adds `X-Original-URI: /public`
/// behind a proxy that only sets (and only overwrites) `X-Forwarded-Uri`.
#[tokio::test]
async fn disagreeing_original_uri_sources_are_judged_protected() {
    let gateway = behind_trusted_proxy().await;
    let smuggled = [
        ("X-Forwarded-Uri", "/api/secret"),
        ("X-Original-URI", "/public"),
    ];
    assert_denied(
        &check(&gateway, "GET", "/auth", &smuggled).await,
        "missing_token",
    );
    let twice = [("X-Forwarded-Uri", "/public"), ("X-Forwarded-Uri", "/api")];
    assert_denied(
        &check(&gateway, "GET", "/auth", &twice).await,
        "missing_token",
    );
    let unsafe_path = [("X-Forwarded-Uri", "/public/..%2fapi/secret")];
    assert_denied(
        &check(&gateway, "GET", "/auth", &unsafe_path).await,
        "missing_token",
    );
    let none_given = check(&gateway, "GET", "/auth", &[]).await;
    assert_denied(&none_given, "missing_token");
}

/// Catches a forward-auth answer that copies a client's identity headers.
#[tokio::test]
async fn client_identity_headers_never_come_back_from_forward_auth() {
    let gateway = behind_trusted_proxy().await;
    let token = gateway.login("dave").await;
    let bearer = format!("Bearer {token}");
    let spoofed = [
        ("X-Forwarded-Uri", "/public/x"),
        ("X-OpenId", "oEvil"),
        ("X_OpenId", "oEvil2"),
        ("x-unionid", "uEvil"),
    ];
    assert_allowed_as(&check(&gateway, "GET", "/auth", &spoofed).await, None);
    let mut protected = spoofed.to_vec();
    protected[0] = ("X-Forwarded-Uri", "/api/x");
    protected.push(("Authorization", &bearer));
    let allowed = check(&gateway, "GET", "/auth", &protected).await;
    assert_allowed_as(&allowed, Some("oMock_dave"));
    assert_eq!(
        identity_headers(&allowed).len(),
        2,
        "one X-OpenId, one X-UnionId"
    );
}

#[tokio::test]
async fn forward_auth_can_be_moved_or_turned_off() {
    let moved = Harness::start_with(Setup {
        server: "trusted_proxies = \"127.0.0.1\"".into(),
        sections: "[forward_auth]\npath = \"/_wxgate/check\"\n".into(),
        ..Setup::default()
    })
    .await;
    let public = [("X-Forwarded-Uri", "/public")];
    assert_allowed_as(&check(&moved, "GET", "/_wxgate/check", &public).await, None);
    assert_eq!(check(&moved, "GET", "/auth", &public).await.status, 404);

    let off = Harness::start_with(Setup {
        sections: "[forward_auth]\nenabled = false\n".into(),
        ..Setup::default()
    })
    .await;
    assert_eq!(check(&off, "GET", "/auth", &public).await.status, 404);
}

/// Catches a build whose forward-auth check decides less than the proxy (issue 28: one
/// authorization step): a route serving one app with a per-user rate limit refuses another app's
/// token with 403, and counts a user's requests, alike whether the request is proxied or checked.
#[tokio::test]
async fn a_routes_apps_and_rate_limit_are_enforced_alike_by_proxy_and_forward_auth() {
    const SHOP_APPID: &str = "wxshop0000000001";
    let gateway = Harness::start_with(Setup {
        server: "trusted_proxies = [\"127.0.0.1/32\"]".into(),
        apps: vec![("shop", SHOP_APPID, "shop-appsecret-0a1b2c3d4e5f")],
        extra_routes: "[[routes]]\nprefix = \"/shop\"\nupstream = \"http://{echo}\"\n\
                       auth = \"required\"\napps = [\"shop\"]\n\
                       rate_limit = { per_minute = 60, burst = 2 }\n"
            .into(),
        ..Setup::default()
    })
    .await;
    let token_of = |openid: &str, appid: Option<&str>| {
        let mut claims = crate::common::tokens::claims(openid);
        if let Some(appid) = appid {
            claims["appid"] = appid.into();
        }
        format!("Bearer {}", crate::common::tokens::hs256(&claims))
    };
    let proxied = |authorization: String| {
        let addr = gateway.addr;
        async move {
            let response = request(
                addr,
                "GET",
                "/shop/cart",
                &[("Authorization", &authorization)],
                b"",
            )
            .await;
            (
                response.status,
                (response.status != 200).then(|| response.error_code()),
            )
        }
    };
    let checked = |authorization: String| {
        let addr = gateway.addr;
        async move {
            let headers = [
                ("Authorization", authorization.as_str()),
                ("X-Original-URI", "/shop/cart"),
            ];
            let response = request(addr, "GET", "/auth", &headers, b"").await;
            (
                response.status,
                (response.status != 200).then(|| response.error_code()),
            )
        }
    };
    let other_app = token_of("o-default-user", None);
    let expected_refusal = (403, Some("app_not_allowed".to_string()));
    assert_eq!(proxied(other_app.clone()).await, expected_refusal);
    assert_eq!(checked(other_app).await, expected_refusal);

    let limited = (429, Some("rate_limited".to_string()));
    let (via_proxy, via_check) = (
        token_of("o-one", Some(SHOP_APPID)),
        token_of("o-two", Some(SHOP_APPID)),
    );
    let mut proxied_statuses = Vec::new();
    let mut checked_statuses = Vec::new();
    for _ in 0..3 {
        proxied_statuses.push(proxied(via_proxy.clone()).await);
        checked_statuses.push(checked(via_check.clone()).await);
    }
    let expected = vec![(200, None), (200, None), limited];
    assert_eq!(proxied_statuses, expected, "proxied");
    assert_eq!(checked_statuses, expected, "forward-auth");
    assert_eq!(
        gateway.echo.requests(),
        2,
        "the proxy forwarded only what it allowed"
    );
}
