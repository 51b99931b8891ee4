//! The `wxgate` binary as users run it: `check`, `--help`, `demo` and `run` with SIGTERM.

use crate::common::process::{spawn_with_first_line, wait_exit, wxgate, SUBCOMMANDS};

use std::process::{Child, Stdio};
use std::time::Duration;

const EXAMPLE_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/wxgate.toml");
const APP_SECRET: &str = "cli-app-secret-value-1234567890";
const JWT_SECRET: &str = "cli-jwt-secret-value-that-is-long-enough";

#[test]
fn check_prints_the_resolved_config_with_secrets_redacted() {
    let output = wxgate(&["check", "--config", EXAMPLE_CONFIG])
        .env("WXGATE_WECHAT__SECRET", APP_SECRET)
        .env("WXGATE_JWT__SECRET", JWT_SECRET)
        .env("WXGATE_SERVER__MAX_BODY_BYTES", "2048")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stdout.contains(APP_SECRET) && !stdout.contains(JWT_SECRET));
    assert_eq!(
        stdout.matches(r#"secret = "<redacted>""#).count(),
        2,
        "{stdout}"
    );
    assert!(
        stdout.contains("max_body_bytes = 2048"),
        "env overrides the file: {stdout}"
    );
    assert!(
        stdout.contains("ttl_secs = 7200"),
        "defaults are shown: {stdout}"
    );
    assert!(stdout.contains(r#"auth = "required""#));
    assert!(
        stdout.contains(r#"store = "embedded""#),
        "the store: {stdout}"
    );
    assert!(
        stdout.contains("path = \"") && stdout.contains("wxgate.db\""),
        "and its file: {stdout}"
    );
}

#[test]
fn a_bad_config_exits_non_zero_naming_the_key() {
    let output = wxgate(&["check", "--config", EXAMPLE_CONFIG])
        .env("WXGATE_JWT__SECRET", JWT_SECRET)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("wechat.secret"));

    let output = wxgate(&["check", "--config", EXAMPLE_CONFIG])
        .env("WXGATE_WECHAT__SECRET", APP_SECRET)
        .env("WXGATE_JWT__SECRET", "short")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("jwt.secret") && stderr.contains("32 bytes"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("short\""),
        "the rejected secret is not echoed: {stderr}"
    );

    // The backends' WeChat API listener on the public address: refused by check and by run.
    for command in ["check", "run"] {
        let output = wxgate(&[command, "--config", EXAMPLE_CONFIG])
            .env("WXGATE_WECHAT__SECRET", APP_SECRET)
            .env("WXGATE_JWT__SECRET", JWT_SECRET)
            .env("WXGATE_SERVER__LISTEN", "0.0.0.0:18080")
            .env("WXGATE_WECHAT_API__LISTEN", "0.0.0.0:18080")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{command}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("wechat_api.listen"), "{command}: {stderr}");
    }

    let output = wxgate(&["run", "--config", "/nonexistent/wxgate.toml"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--config"));
}

#[test]
fn help_lists_every_subcommand() {
    let output = wxgate(&["--help"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let more = [
        "--config",
        "WXGATE_CONFIG",
        "/login",
        "/auth",
        "/.well-known/jwks.json",
        "/metrics",
        "/readyz",
        "SIGHUP",
        "mock-platforms",
    ];
    for expected in SUBCOMMANDS.iter().chain(&more) {
        assert!(stdout.contains(expected), "{expected} in {stdout}");
    }
    // The clearer name of mock-wechat works as well.
    let alias = wxgate(&["mock-platforms", "--help"]).output().unwrap();
    assert!(alias.status.success());
    assert!(String::from_utf8_lossy(&alias.stdout).contains("Kuaishou"));
}

fn sigterm(child: &Child) {
    crate::common::process::signal(child, "TERM");
}

#[tokio::test]
async fn demo_runs_the_readme_flow_and_exits_zero_on_sigterm() {
    let (child, line) = spawn_with_first_line(wxgate(&["demo", "--listen", "127.0.0.1:0"]));
    let address = line
        .split("gateway on http://")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no gateway address in {line:?}"));
    let address: std::net::SocketAddr = address.parse().unwrap();

    let body = br#"{"code":"alice.1"}"#;
    let login = crate::common::request(
        address,
        "POST",
        "/login",
        &[("Content-Type", "application/json")],
        body,
    )
    .await;
    assert_eq!(login.status, 200);
    let token = login.json()["token"].as_str().unwrap().to_string();
    let authorization = format!("Bearer {token}");
    let echoed = crate::common::request(
        address,
        "GET",
        "/api/hello",
        &[("Authorization", &authorization)],
        b"",
    )
    .await;
    assert_eq!(echoed.upstream_header("x-openid"), ["oMock_alice"]);
    assert_eq!(echoed.upstream_header("x-platform"), ["wechat"]);
    // The demo's second platform: the same mini-program on Douyin.
    let douyin = crate::common::request(
        address,
        "POST",
        "/login/douyin",
        &[("Content-Type", "application/json")],
        br#"{"code":"bob.1"}"#,
    )
    .await;
    assert_eq!(douyin.json()["platform"], "douyin", "{}", douyin.text());
    let bearer = format!("Bearer {}", douyin.json()["token"].as_str().unwrap());
    let seen = crate::common::request(
        address,
        "GET",
        "/api/hello",
        &[("Authorization", &bearer)],
        b"",
    )
    .await;
    assert_eq!(seen.upstream_header("x-platform"), ["douyin"]);
    assert_eq!(
        crate::common::request(address, "GET", "/api/hello", &[], b"")
            .await
            .status,
        401
    );
    let public = crate::common::request(
        address,
        "GET",
        "/public/hello",
        &[("X-OpenId", "admin")],
        b"",
    )
    .await;
    assert!(public.upstream_header("x-openid").is_empty());

    sigterm(&child);
    assert!(wait_exit(child).success(), "exit 0 after SIGTERM");
}

#[tokio::test]
async fn run_serves_with_a_mock_wechat_process_and_exits_zero_on_sigterm() {
    let (mock, line) = spawn_with_first_line(wxgate(&[
        "mock-wechat",
        "--listen",
        "127.0.0.1:0",
        "--appid",
        "wx0123456789abcdef",
        "--secret",
        APP_SECRET,
    ]));
    let mock_address = line
        .split("http://")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let port = crate::common::closed_port().await;
    let gateway = wxgate(&["run", "--config", EXAMPLE_CONFIG])
        .env("WXGATE_WECHAT__SECRET", APP_SECRET)
        .env("WXGATE_JWT__SECRET", JWT_SECRET)
        .env("WXGATE_WECHAT__API_BASE", format!("http://{mock_address}"))
        .env("WXGATE_SERVER__LISTEN", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut login = None;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(port).await.is_ok() {
            let body = br#"{"code":"kim.1"}"#;
            login = Some(
                crate::common::request(
                    port,
                    "POST",
                    "/login",
                    &[("Content-Type", "application/json")],
                    body,
                )
                .await,
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let login = login.expect("the gateway started listening");
    assert_eq!(login.status, 200, "{}", login.text());
    assert_eq!(login.json()["openid"], "oMock_kim");

    sigterm(&gateway);
    assert!(wait_exit(gateway).success());
    sigterm(&mock);
    assert!(wait_exit(mock).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_steady_load_fails_no_request_and_exits_zero() {
    let (slow, _) = crate::common::slow_upstream(Duration::from_millis(150)).await;
    let port = crate::common::closed_port().await;
    let gateway = wxgate(&["run", "--config", EXAMPLE_CONFIG])
        .env("WXGATE_WECHAT__SECRET", APP_SECRET)
        .env("WXGATE_JWT__SECRET", JWT_SECRET)
        .env("WXGATE_SERVER__LISTEN", port.to_string())
        .env("WXGATE_ROUTES__1__UPSTREAM", format!("http://{slow}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(port).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let load = crate::common::load::SteadyLoad::start(&format!("http://{port}/public"), 24);
    tokio::time::sleep(Duration::from_millis(800)).await;
    // The load balancer has stopped sending: nothing new from here on, and then the SIGTERM.
    load.stop_sending();
    sigterm(&gateway);
    let (served, failures) = load.finish().await;
    assert!(wait_exit(gateway).success(), "exit 0 after SIGTERM");
    assert!(failures.is_empty(), "failed: {failures:?}");
    assert!(served >= 48, "steady load: {served}");
}
