//! The mini-program client (`examples/miniprogram/wxgate.js`) against real gateways: Node runs its
//! test suite (`examples/miniprogram/test/`) through a `wx` shim doing real HTTP and WebSockets, and
//! this test passes when every Node test does.

use std::process::Command;
use std::time::Duration;

use crate::common::ws::ws_echo_upstream;
use crate::common::{external, Harness, Setup, APPID, ISSUER, JWT_SECRET, ONE_APP_PER_PLATFORM};

/// Whether Node.js (18 or later, for `node --test`) is installed.
fn node_available() -> bool {
    external::available(
        "node 18+ (Debian package nodejs)",
        Command::new("node").args(["-e", "require('node:test')"]),
    )
}

async fn gateway_with(jwt_extra: &str) -> Harness {
    let (ws_addr, _) = ws_echo_upstream().await;
    Harness::start_with(Setup {
        jwt: format!("[jwt]\nsecret = \"{JWT_SECRET}\"\nissuer = \"{ISSUER}\"\n{jwt_extra}\n"),
        extra_routes: format!(
            "[[routes]]\nprefix = \"/ws\"\nupstream = \"http://{ws_addr}\"\nauth = \"required\"\n"
        ),
        ..Setup::default()
    })
    .await
}

/// Catches a client that logs in more than once for concurrent 401s, loses the token, forgets the
/// retry, or sends no token on a socket; and a gateway that breaks what the client relies on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_client_suite_passes_against_a_running_gateway() {
    if !node_available() {
        return;
    }
    let gateway = gateway_with("").await;
    let short_ttl = gateway_with("ttl_secs = 2\nleeway_secs = 0").await;
    let platforms = Harness::start_with(Setup {
        platform_apps: ONE_APP_PER_PLATFORM.to_vec(),
        ..Setup::default()
    })
    .await;
    let suite = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/miniprogram/test");
    let mut node = tokio::process::Command::new("node");
    node.arg("--test")
        .arg(format!("{suite}/client.test.js"))
        .arg(format!("{suite}/platforms.test.js"))
        .env("WXGATE_URL", format!("http://{}", gateway.addr))
        .env("WXGATE_SHORT_TTL_URL", format!("http://{}", short_ttl.addr))
        .env("WXGATE_PLATFORMS_URL", format!("http://{}", platforms.addr))
        .env("WXGATE_APPID", APPID)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), node.output())
        .await
        .expect("the Node suite finished within 120 s")
        .expect("node runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // 8 of the WeChat client, 5 platform globals, Alipay's `my` twice, uni.login twice (Douyin,
    // Alipay), a Douyin login without a host user.
    assert!(report.contains("# pass 18"), "{report}");
    assert!(report.contains("# fail 0"), "{report}");
}
