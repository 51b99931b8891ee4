//! Logs at TRACE level, through the gateway's own logging setup, across successful and failing
//! flows: one line per request with method, path, status, latency and openid; never the AppSecret,
//! the JWT secret, a session_key, an access_token or a whole token.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{Harness, Setup};

/// A writer that appends everything to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_session_key_or_token_is_logged_at_any_level() {
    let captured = Captured::default();
    let writer = captured.clone();
    wxgate::logging::init("trace", wxgate::logging::LogFormat::Text, move || {
        writer.clone()
    })
    .expect("install the subscriber");

    let gateway = Harness::start_with(Setup {
        sections: "[wechat_api]\nlisten = \"127.0.0.1:0\"\n".into(),
        platform_apps: common::ONE_APP_PER_PLATFORM.to_vec(),
        platform_app_lines: vec![("bdshop", "fetch_unionid = true")],
        ..Setup::default()
    })
    .await;
    let token = gateway.login("alice.1").await;
    assert_eq!(
        gateway
            .get_with_token("/api/x?access_token=query-secret", &token, &[])
            .await
            .status,
        200
    );
    assert_eq!(gateway.login_response("alice.1").await.status, 401);
    // /wx/phone: the gateway fetches an access_token and sends it to WeChat in a URL.
    let bearer = format!("Bearer {token}");
    let phone = common::request(
        gateway.addr,
        "POST",
        "/wx/phone",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        br#"{"code":"phone-ok"}"#,
    )
    .await;
    assert_eq!(phone.status, 200, "{}", phone.text());
    // A backend's WeChat API calls: the token goes into WeChat's URL, is rotated and fetched
    // again; a caller's own access_token is in the query the gateway receives.
    let api = std::net::SocketAddr::from(([127, 0, 0, 1], gateway.wechat_api_addr.unwrap().port()));
    let target = "/default/wxa/msg_sec_check?access_token=caller-query-token";
    let body = br#"{"content":"hello","version":2,"scene":2,"openid":"oMock_alice"}"#;
    for rotate in [false, true] {
        if rotate {
            gateway.wechat.rotate_access_token();
        }
        let answer = common::request(api, "POST", target, &[], body).await;
        assert_eq!(answer.json()["errcode"], 0, "{}", answer.text());
    }
    // Every platform's login (secrets in URLs and form bodies, Alipay's signed requests and its
    // user tokens, Baidu's getunionid with its access_token), and QQ's and Baidu's server APIs.
    let json = [("Content-Type", "application/json")];
    for (app, ..) in common::ONE_APP_PER_PLATFORM {
        let code = format!(r#"{{"code":"{app}user.1"}}"#);
        let path = format!("/login/{app}");
        let answer = common::request(gateway.addr, "POST", &path, &json, code.as_bytes()).await;
        assert_eq!(answer.status, 200, "{app}: {}", answer.text());
    }
    for app in ["qqshop", "bdshop"] {
        let target = format!("/{app}/wxa/msg_sec_check");
        let answer = common::request(api, "POST", &target, &[], body).await;
        assert_eq!(answer.json()["errcode"], 0, "{app}: {}", answer.text());
    }
    let image = br#"{"scene":"a=1"}"#;
    let answer = common::request(api, "POST", "/default/wxa/getwxacodeunlimit", &[], image).await;
    assert_eq!(answer.status, 200);
    assert_eq!(gateway.wechat.stable_token_calls(), 2);
    assert_eq!(gateway.login_response("mock-busy").await.status, 502);
    assert_eq!(
        gateway
            .get_with_token("/api/x", &format!("{token}x"), &[])
            .await
            .status,
        401
    );
    assert_eq!(gateway.get("/unreachable/x", &[]).await.status, 502);
    let traced = [("X-Request-Id", "trace-me-42")];
    assert_eq!(gateway.get("/unreachable/y", &traced).await.status, 502);

    let closed = common::closed_port().await;
    let unreachable = Harness::start_with(Setup {
        api_base: Some(format!("http://{closed}")),
        ..Setup::default()
    })
    .await;
    assert_eq!(unreachable.login_response("bob.1").await.status, 502);
    let misconfigured = Harness::start_with(Setup {
        app_secret: "wrong-app-secret-value".into(),
        ..Setup::default()
    })
    .await;
    assert_eq!(misconfigured.login_response("carol.1").await.status, 502);
    let slow = Harness::start_with(Setup {
        wechat: "timeout_ms = 200".into(),
        ..Setup::default()
    })
    .await;
    assert_eq!(slow.login_response("mock-slow").await.status, 504);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "trace level is really on"
    );
    assert!(
        logs.contains(r#"method=POST path="/login" status=200"#),
        "{logs}"
    );
    assert!(logs.contains(r#"openid="oMock_alice""#));
    assert!(logs.contains(r#"path="/api/x" status=200"#));
    assert!(
        logs.contains(r#"method=POST path="/default/wxa/msg_sec_check" status=200"#),
        "the WeChat API listener's request line"
    );
    assert!(logs.contains("status=502") && logs.contains("status=504"));
    // The request id is on the request line, and on every line logged while answering it.
    let traced: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("trace-me-42"))
        .collect();
    assert!(
        traced
            .iter()
            .any(|line| line.contains("upstream unreachable")),
        "{traced:?}"
    );
    assert!(
        traced
            .iter()
            .any(|line| line.contains(r#"request_id="trace-me-42""#) && line.contains("status=502")),
        "{traced:?}"
    );

    let mut secrets = vec![
        common::APP_SECRET.to_string(),
        "wrong-app-secret-value".to_string(),
        common::JWT_SECRET.to_string(),
        "query-secret".to_string(),
        "caller-query-token".to_string(),
        "mock-access-token".to_string(),
        "mock-alipay-user-token".to_string(),
        "mock-alipay-refresh-token".to_string(),
        common::ALIPAY_AES_KEY.to_string(),
        token.clone(),
        token.split('.').nth(2).unwrap().to_string(),
    ];
    secrets.extend(
        common::ONE_APP_PER_PLATFORM
            .iter()
            .map(|(.., secret)| secret.to_string())
            .filter(|secret| !secret.is_empty()),
    );
    secrets.extend(gateway.wechat.issued_session_keys());
    secrets.extend(misconfigured.wechat.issued_session_keys());
    assert!(!gateway.wechat.issued_session_keys().is_empty());
    for secret in secrets {
        assert!(!logs.contains(&secret), "{secret:?} appears in the logs");
    }
}
