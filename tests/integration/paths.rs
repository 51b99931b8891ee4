//! Path confusion over real sockets: the path that picks the route and its auth mode is the path
//! the upstream receives, and what cannot be normalized safely is a 400 that reaches no upstream.

use crate::common::Harness;

/// Catches a build that routes on the raw path but forwards the normalized one (or the reverse):
/// `..`, `%2e` in either case, and escaped letters out of a public prefix need a token.
#[tokio::test]
async fn traversal_out_of_a_public_prefix_is_judged_as_the_target_path() {
    let gateway = Harness::start().await;
    let token = gateway.login("alice.1").await;
    for path in [
        "/public/../api/x",
        "/public/%2e%2e/api/x",
        "/public/%2E%2E/api/x",
        "/public/.%2e/api/x",
        "/public/./../api/x",
        "//public/..//api/x",
        "/%70ublic/../%61pi/x",
    ] {
        let response = gateway.get(path, &[]).await;
        assert_eq!(response.status, 401, "{path} must need a token");
        let response = gateway.get_with_token(path, &token, &[]).await;
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            response.upstream_uri(),
            "/api/x",
            "{path} is forwarded normalized"
        );
        assert_eq!(response.upstream_header("x-openid"), ["oMock_alice"]);
    }
}

/// Catches a build whose prefix match is fooled by `//` (the upstream would merge them).
#[tokio::test]
async fn repeated_slashes_do_not_escape_a_rule() {
    let gateway = Harness::start().await;
    for path in ["//api/x", "/api//x", "///api///x"] {
        assert_eq!(gateway.get(path, &[]).await.status, 401, "{path}");
    }
    let response = gateway.get("//public//x", &[]).await;
    assert_eq!(response.upstream_uri(), "/public/x");
}

/// Catches a build that forwards what it cannot normalize unambiguously: encoded `/` and `\`,
/// double encoding, NUL, climbing above the root, `..;`, overlong UTF-8 (`%c0%ae`), bad escapes.
#[tokio::test]
async fn unsafe_paths_are_400_and_reach_no_upstream() {
    let gateway = Harness::start().await;
    for path in [
        "/public/%2f../api/x",
        "/public%2F..%2Fapi/x",
        "/public/%252e%252e/api/x",
        "/public/%252f/api",
        "/public/%25%32e%25%32e/api/x",
        "/public/%5c../api/x",
        "/public\\..\\api\\x",
        "/..",
        "/../api/x",
        "/public/../../api/x",
        "/public/%00",
        "/public/..;/api/x",
        "/;/api/x",
        "/public/;x=1/../api/x",
        "/public/%c0%ae%c0%ae/api/x",
        "/public/%zz",
    ] {
        let response = gateway.get(path, &[]).await;
        assert_eq!(response.status, 400, "{path}: {}", response.text());
        assert_eq!(response.error_code(), "invalid_path", "{path}");
    }
    assert_eq!(gateway.echo.requests(), 0);
}

/// Catches a build where `;` parameters hide a segment from the prefix match (Tomcat-style
/// `/api;x=1/` reaching a protected route as if public).
#[tokio::test]
async fn segment_parameters_are_judged_by_their_segment() {
    let gateway = Harness::start().await;
    assert_eq!(gateway.get("/api;jsessionid=1/x", &[]).await.status, 401);
    let response = gateway.get("/public;v=1/x", &[]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.upstream_uri(), "/public;v=1/x");
}

/// Catches a build that compares the gateway's own endpoints with the raw path.
#[tokio::test]
async fn the_login_path_is_matched_after_normalization() {
    let gateway = Harness::start().await;
    let response = crate::common::request(
        gateway.addr,
        "POST",
        "/public/../login",
        &[("Content-Type", "application/json")],
        br#"{"code":"zoe.1"}"#,
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["openid"], "oMock_zoe");
}

/// Catches a build that routes on the whole request target: a query that looks like a public
/// path changes nothing, and is forwarded untouched.
#[tokio::test]
async fn a_query_that_looks_like_a_path_does_not_change_the_route() {
    let gateway = Harness::start().await;
    assert_eq!(gateway.get("/api/x?/public/../", &[]).await.status, 401);
    let response = gateway.get("/public/x?next=/api/../admin", &[]).await;
    assert_eq!(response.upstream_uri(), "/public/x?next=/api/../admin");
}

/// Catches a build that routes on a request target with its `#fragment` (clients never send one,
/// attackers do): the fragment is dropped, and the path before it alone picks the route.
#[tokio::test]
async fn a_fragment_never_changes_the_route_and_is_not_forwarded() {
    let gateway = Harness::start().await;
    assert_eq!(gateway.get("/api/x#/public/x", &[]).await.status, 401);
    let response = gateway.get("/public/x#/../../api/y", &[]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.upstream_uri(), "/public/x");
    assert!(response.upstream_header("x-openid").is_empty());
}

/// Catches a build that sends the client's request target upstream as it came whenever the path
/// was already normal: an absolute-form target (`GET http://host/x`) must still reach the
/// upstream in origin form, and an empty query stays as it was sent.
#[tokio::test]
async fn an_absolute_form_target_is_forwarded_in_origin_form() {
    let gateway = Harness::start().await;
    for (target, forwarded) in [
        ("http://gateway.test/public/x?a=1", "/public/x?a=1"),
        ("http://gateway.test/public/../public/y", "/public/y"),
        ("/public/z?", "/public/z?"),
        ("/public/z?b=%2F..", "/public/z?b=%2F.."),
    ] {
        let response = crate::common::request(gateway.addr, "GET", target, &[], b"").await;
        assert_eq!(response.status, 200, "{target}");
        assert_eq!(response.upstream_uri(), forwarded, "{target}");
    }
}
