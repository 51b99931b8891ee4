//! Every platform's failures land in the gateway's shared error classes (`docs/platforms.md`,
//! "Errors, per platform"), against the mock speaking each platform: a bad code, an unparseable
//! answer, a timeout, an app the platform does not know, an unreachable host, and busy and
//! rate-limited where the platform documents them.

use crate::common::{closed_port, request, Harness, Response, Setup, ONE_APP_PER_PLATFORM};

const APPS: [(&str, &str, &str, &str); 5] = ONE_APP_PER_PLATFORM;

fn setup(api_base: Option<String>) -> Setup {
    Setup {
        wechat: "timeout_ms = 400\nretry_backoff_ms = 10".into(),
        platform_apps: APPS.to_vec(),
        api_base,
        ..Setup::default()
    }
}

async fn login(gateway: &Harness, app: &str, code: &str) -> Response {
    let body = serde_json::json!({ "code": code }).to_string();
    let headers = [("Content-Type", "application/json")];
    let path = format!("/login/{app}");
    request(gateway.addr, "POST", &path, &headers, body.as_bytes()).await
}

fn assert_refused(answer: &Response, expected: (u16, &str), case: &str) {
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        expected,
        "{case}: {}",
        answer.text()
    );
    assert!(answer.json().get("token").is_none(), "{case}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_platform_maps_its_failures_to_the_shared_classes() {
    let gateway = Harness::start_with(setup(None)).await;
    for (app, platform, _, _) in APPS {
        for (code, expected) in [
            ("mock-invalid", (401, "invalid_code")),
            ("mock-garbage", (502, "wechat_bad_answer")),
            ("mock-slow", (504, "wechat_timeout")),
        ] {
            let answer = login(&gateway, app, code).await;
            assert_refused(&answer, expected, &format!("{platform} {code}"));
        }
        // The mock's codes are single-use across platforms: one of its own for each.
        let code = format!("{platform}.1");
        let first = login(&gateway, app, &code).await;
        assert_eq!(first.status, 200, "{platform}: {}", first.text());
        let again = login(&gateway, app, &code).await;
        assert!(
            matches!(
                again.error_code().as_str(),
                "invalid_code" | "code_already_used"
            ),
            "{platform} reused: {}",
            again.text()
        );
        assert_eq!(again.status, 401, "{platform}");
    }
    // Busy (retried once, then 502) where the platform documents it.
    for app in ["qqshop", "dyshop", "alishop"] {
        let calls = gateway.wechat.calls();
        let answer = login(&gateway, app, "mock-busy").await;
        assert_refused(&answer, (502, "wechat_busy"), app);
        assert_eq!(gateway.wechat.calls(), calls + 2, "{app}: retried once");
    }
    // QQ documents 45011 (100 calls per user per minute); its blocked-user code is WeChat's.
    let limited = login(&gateway, "qqshop", "mock-ratelimit").await;
    assert_refused(&limited, (429, "rate_limited"), "qq rate limited");
}

#[tokio::test]
async fn an_app_the_platform_does_not_know_is_an_operators_problem() {
    // Another mock, which knows none of these apps (nor Alipay's key).
    let other = Harness::start().await;
    let gateway = Harness::start_with(setup(Some(format!("http://{}", other.wechat_addr)))).await;
    for (app, platform, _, _) in APPS {
        let answer = login(&gateway, app, "olga.1").await;
        assert_refused(&answer, (502, "wechat_config_rejected"), platform);
    }
}

#[tokio::test]
async fn an_unreachable_platform_is_a_502() {
    let closed = closed_port().await;
    let gateway = Harness::start_with(setup(Some(format!("http://{closed}")))).await;
    for (app, platform, _, _) in APPS {
        let answer = login(&gateway, app, "uma.1").await;
        assert_refused(&answer, (502, "wechat_unreachable"), platform);
    }
}
