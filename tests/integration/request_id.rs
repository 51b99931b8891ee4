//! The request id round trip: a sane client X-Request-Id is kept, anything else replaced by a
//! fresh one; the same id reaches the upstream (once, whatever spellings the client sent) and
//! comes back on the response, errors included.

use crate::common::Harness;

#[tokio::test]
async fn a_sane_client_id_goes_upstream_and_comes_back() {
    let gateway = Harness::start().await;
    let token = gateway.login("rid.1").await;
    let response = gateway
        .get_with_token(
            "/api/orders",
            &token,
            &[
                ("X-Request-Id", "client-req-0001"),
                ("X_Request_Id", "smuggled"),
            ],
        )
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-request-id"), Some("client-req-0001"));
    assert_eq!(
        response.upstream_header("x-request-id"),
        ["client-req-0001"]
    );
    assert!(response.upstream_header("x_request_id").is_empty());
}

#[tokio::test]
async fn a_missing_or_unfit_id_is_replaced_by_a_fresh_one() {
    let gateway = Harness::start().await;
    let long = "x".repeat(200);
    let mut seen = Vec::new();
    for sent in [
        vec![],
        vec![("X-Request-Id", "has spaces in it")],
        vec![("X-Request-Id", long.as_str())],
        vec![("X-Request-Id", "one"), ("X-Request-Id", "two")],
    ] {
        let response = gateway.get("/public/x", &sent).await;
        assert_eq!(response.status, 200);
        let id = response.header("x-request-id").expect("an id").to_string();
        assert_eq!(id.len(), 32, "{sent:?}");
        assert!(id.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_eq!(
            response.upstream_header("x-request-id"),
            std::slice::from_ref(&id)
        );
        seen.push(id);
    }
    seen.dedup();
    assert_eq!(seen.len(), 4, "every request gets its own id");
}

#[tokio::test]
async fn error_answers_carry_the_id_too() {
    let gateway = Harness::start().await;
    let id = [("X-Request-Id", "err-77")];
    for path in ["/api/needs-token", "/nowhere", "/unreachable/x"] {
        let response = gateway.get(path, &id).await;
        assert!(response.status >= 400, "{path}");
        assert_eq!(response.header("x-request-id"), Some("err-77"), "{path}");
    }
    let login = gateway.login_response("mock-invalid").await;
    assert_eq!(login.status, 401);
    assert_eq!(login.header("x-request-id").map(str::len), Some(32));
}
