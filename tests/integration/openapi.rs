//! `openapi.yaml` against a running gateway: every documented operation is called, successes and
//! the errors a client meets, and every answer must be documented (status, required headers, JSON
//! body valid against its schema). A new error body, status or member that the spec does not name
//! fails here, and so does a spec operation no test exercises.

use crate::common::openapi::Spec;
use crate::common::{request, Harness, Response, Setup};

const SAMPLE: &str = r#"{"encryptedData":"Lnyi8fMh3t2dWwcJFqQSEJ+qNlX1Kb7SO/gO9q9x1fnXavKKFYJ7yva54C4WatiAmEVXXNh/V77ZxfD5q+6M8Z/nySA5kpOoS9lh41MYtwXSGrKzSz4/0ErDrOM42sOn5EyOGYRvxBbAss6msa2A0PtE93n6qMRHe8d3X4b381t7QbBugS1kWlbDRC4eb55G","iv":"AAECAwQFBgcICQoLDA0ODw=="}"#;
const BAD_PADDING: &str =
    r#"{"encryptedData":"7LFQ4hyYHboQffP7p3keAw==","iv":"AAECAwQFBgcICQoLDA0ODw=="}"#;

/// What was asked (method and the spec's path template) and answered.
struct Exchanges(Vec<(&'static str, &'static str, Response)>);

impl Exchanges {
    async fn call(
        &mut self,
        gateway: &Harness,
        (method, template, path): (&'static str, &'static str, &str),
        token: Option<&str>,
        body: &str,
    ) -> &Response {
        let bearer = token.map(|token| format!("Bearer {token}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(bearer) = &bearer {
            headers.push(("Authorization", bearer));
        }
        let addr = match template {
            "/healthz" | "/readyz" | "/metrics" => gateway.admin_addr,
            "/{app}/{wechatPath}" => gateway.wechat_api_addr.expect("the WeChat API listener"),
            _ => gateway.addr,
        };
        let response = request(addr, method, path, &headers, body.as_bytes()).await;
        self.0.push((method, template, response));
        &self.0.last().unwrap().2
    }
}

/// Catches an answer the spec does not describe (a renamed member, a new status or error code, a
/// missing Retry-After or WWW-Authenticate) and a spec operation nothing exercises.
#[tokio::test]
async fn every_answer_of_the_running_gateway_is_documented_in_openapi_yaml() {
    let spec = Spec::load();
    let gateway = Harness::start_with(Setup {
        server: "trusted_proxies = [\"127.0.0.1\"]".into(),
        sections: "[wechat_api]\nlisten = \"127.0.0.1:0\"\n".into(),
        wechat: "timeout_ms = 500\n[wechat.push]\ntoken = \"push-token\"\nmode = \"plain\"\n\
                 upstream = \"http://127.0.0.1:9/push\"\n"
            .into(),
        apps: vec![("shop", "wxshop000000000001", "shop-app-secret")],
        ..Setup::default()
    })
    .await;
    let mut seen = Exchanges(Vec::new());
    let login = ("POST", "/login", "/login");

    let ok = seen
        .call(&gateway, login, None, r#"{"code":"samplekey"}"#)
        .await;
    let token = ok.json()["token"].as_str().unwrap().to_string();
    for body in [
        r#"{"code":"samplekey"}"#,
        r#"{"code":"mock-invalid"}"#,
        r#"{"code":""}"#,
        r#"["not an object"]"#,
        r#"{"code":"mock-blocked"}"#,
    ] {
        seen.call(&gateway, login, None, body).await;
    }
    seen.call(&gateway, login, None, &"x".repeat(70_000)).await;
    seen.call(&gateway, ("GET", "/login", "/login"), None, "")
        .await;
    seen.call(
        &gateway,
        ("POST", "/login/{app}", "/login/shop"),
        None,
        r#"{"code":"kai.1"}"#,
    )
    .await;
    seen.call(
        &gateway,
        ("POST", "/login/{app}", "/login/nope"),
        None,
        r#"{"code":"kai.2"}"#,
    )
    .await;

    let decrypt = ("POST", "/wx/decrypt", "/wx/decrypt");
    seen.call(&gateway, decrypt, Some(&token), SAMPLE).await;
    seen.call(&gateway, decrypt, Some(&token), BAD_PADDING)
        .await;
    seen.call(&gateway, decrypt, None, SAMPLE).await;
    seen.call(
        &gateway,
        ("GET", "/wx/decrypt", "/wx/decrypt"),
        Some(&token),
        "",
    )
    .await;
    let phone = ("POST", "/wx/phone", "/wx/phone");
    seen.call(&gateway, phone, Some(&token), r#"{"code":"button-1"}"#)
        .await;
    seen.call(&gateway, phone, Some(&token), r#"{"code":"mock-invalid"}"#)
        .await;
    seen.call(
        &gateway,
        phone,
        Some("forged.token.here"),
        r#"{"code":"x"}"#,
    )
    .await;
    seen.call(
        &gateway,
        phone,
        Some(&token),
        r#"{"code":"mock-busy-spent"}"#,
    )
    .await;
    // WeChat's URL check of the push endpoint, signed and not.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let mut parts = ["push-token", now.as_str(), "n1"];
    parts.sort_unstable();
    let digest = <sha1::Sha1 as sha1::Digest>::digest(parts.concat().as_bytes());
    let signature: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    let verify = format!("/wx/push?signature={signature}&timestamp={now}&nonce=n1&echostr=e1");
    seen.call(&gateway, ("GET", "/wx/push", &verify), None, "")
        .await;
    let forged = format!("/wx/push?signature=00&timestamp={now}&nonce=n1&echostr=e1");
    seen.call(&gateway, ("GET", "/wx/push", &forged), None, "")
        .await;
    seen.call(&gateway, ("POST", "/wx/push", &forged), None, "{}")
        .await;
    // The WeChat API listener: JSON as WeChat labels it, an image, refusals.
    let api = |method, path| (method, "/{app}/{wechatPath}", path);
    let content = r#"{"content":"hi","version":2,"scene":2,"openid":"oMock_a"}"#;
    seen.call(
        &gateway,
        api("POST", "/default/wxa/msg_sec_check"),
        None,
        content,
    )
    .await;
    let image = api("POST", "/shop/wxa/getwxacodeunlimit");
    seen.call(&gateway, image, None, r#"{"scene":"a=1"}"#).await;
    seen.call(
        &gateway,
        api("GET", "/default/cgi-bin/get_api_domain_ip"),
        None,
        "",
    )
    .await;
    seen.call(&gateway, api("POST", "/default/cgi-bin/token"), None, "{}")
        .await;
    seen.call(
        &gateway,
        api("POST", "/nobody/wxa/msg_sec_check"),
        None,
        "{}",
    )
    .await;
    let check = ("POST", "/wx/session/check", "/wx/session/check");
    seen.call(&gateway, check, Some(&token), "").await;
    seen.call(&gateway, check, None, "").await;

    for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
        seen.call(&gateway, (method, "/auth", "/auth"), Some(&token), "")
            .await;
        seen.call(
            &gateway,
            (method, "/auth/{originalPath}", "/auth/public/x"),
            None,
            "",
        )
        .await;
    }
    seen.call(&gateway, ("GET", "/auth", "/auth"), None, "")
        .await;
    seen.call(
        &gateway,
        ("GET", "/auth/{originalPath}", "/auth/api/x"),
        None,
        "",
    )
    .await;
    seen.call(
        &gateway,
        ("GET", "/.well-known/jwks.json", "/.well-known/jwks.json"),
        None,
        "",
    )
    .await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        seen.call(&gateway, ("GET", path, path), None, "").await;
    }

    let refresh = ("POST", "/token/refresh", "/token/refresh");
    let refreshed = seen.call(&gateway, refresh, Some(&token), "").await;
    let fresh = refreshed.json()["token"].as_str().unwrap().to_string();
    seen.call(&gateway, refresh, None, "").await;
    seen.call(
        &gateway,
        ("GET", "/token/refresh", "/token/refresh"),
        Some(&fresh),
        "",
    )
    .await;
    let logout = ("POST", "/logout", "/logout");
    seen.call(&gateway, logout, Some(&fresh), "").await;
    seen.call(&gateway, logout, None, "").await;
    seen.call(&gateway, refresh, Some(&fresh), "").await;
    seen.call(&gateway, ("GET", "/logout", "/logout"), Some(&fresh), "")
        .await;
    // Last: WeChat failing (these may open the circuit breaker for the logins after them).
    seen.call(&gateway, login, None, r#"{"code":"mock-busy"}"#)
        .await;
    seen.call(&gateway, login, None, r#"{"code":"mock-slow"}"#)
        .await;

    // The login rate limit: 429 with Retry-After.
    let limited = Harness::start_with(Setup {
        sections: "[login.rate_limit]\nper_minute = 1\nburst = 1\n".into(),
        ..Setup::default()
    })
    .await;
    seen.call(&limited, login, None, r#"{"code":"lee.1"}"#)
        .await;
    seen.call(&limited, login, None, r#"{"code":"lee.2"}"#)
        .await;

    let mut problems = Vec::new();
    let mut statuses = std::collections::BTreeSet::new();
    for (method, template, response) in &seen.0 {
        statuses.insert(format!("{method} {template} {}", response.status));
        if let Err(problem) = spec.check(method, template, response) {
            problems.push(format!("{problem}\n    answered: {}", response.text()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for (method, template) in spec.operations() {
        assert!(
            seen.0
                .iter()
                .any(|(m, t, _)| *m == method && *t == template),
            "{method} {template} is documented but never called here"
        );
    }
    // The scenario reaches the error classes it means to, not only successes.
    for expected in [
        "POST /login 200",
        "POST /login 400",
        "POST /login 401",
        "POST /login 403",
        "POST /login 413",
        "POST /login 429",
        "POST /login 502",
        "POST /login 504",
        "GET /login 405",
        "POST /login/{app} 200",
        "POST /login/{app} 404",
        "POST /wx/decrypt 200",
        "POST /wx/decrypt 400",
        "POST /wx/decrypt 401",
        "POST /wx/phone 200",
        "POST /wx/phone 400",
        "POST /wx/phone 401",
        "POST /wx/phone 503",
        "POST /wx/session/check 200",
        "GET /wx/push 200",
        "POST /{app}/{wechatPath} 200",
        "GET /{app}/{wechatPath} 200",
        "POST /{app}/{wechatPath} 403",
        "POST /{app}/{wechatPath} 404",
        "GET /wx/push 401",
        "POST /wx/push 401",
        "POST /wx/session/check 401",
        "GET /auth 200",
        "GET /auth 401",
        "GET /auth/{originalPath} 200",
        "GET /auth/{originalPath} 401",
        "POST /token/refresh 200",
        "POST /token/refresh 401",
        "POST /logout 200",
        "POST /logout 401",
    ] {
        assert!(
            statuses.contains(expected),
            "{expected} not reached: {statuses:?}"
        );
    }
}
