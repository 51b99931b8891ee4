//! `wxgate demo`: the whole flow on one machine with no WeChat account. Starts the mock WeChat and
//! the echo upstream on loopback, then the gateway in front of them with a fresh random key, and
//! prints the curl lines that walk through login -> authenticated request -> what the upstream saw.

use std::future::Future;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::echo::EchoUpstream;
use crate::mock_wechat::MockWeChat;

const DEMO_APPID: &str = "wxdemo0000000000";
/// The demo's second platform: the same mini-program published on Douyin.
const DEMO_DOUYIN_APPID: &str = "ttdemo0000000000";

/// Runs the demo gateway on `listener` until `shutdown` completes.
pub async fn run(listener: TcpListener, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let app_secret = random_hex()?;
    let douyin_secret = random_hex()?;
    let mock = MockWeChat::with_apps([
        (DEMO_APPID.to_string(), app_secret.clone()),
        (DEMO_DOUYIN_APPID.to_string(), douyin_secret.clone()),
    ]);
    let mock_listener = TcpListener::bind("127.0.0.1:0").await?;
    let mock_address = mock_listener.local_addr()?;
    tokio::spawn(async move { mock.serve(mock_listener, std::future::pending()).await });
    let echo_listener = TcpListener::bind("127.0.0.1:0").await?;
    let echo_address = echo_listener.local_addr()?;
    tokio::spawn(async move {
        EchoUpstream::new()
            .serve(echo_listener, std::future::pending())
            .await
    });

    let config_text = format!(
        r#"
[server]
listen = "{listen}"
shutdown_grace_secs = 2

[wechat]
appid = "{DEMO_APPID}"
secret = "{app_secret}"
api_base = "http://{mock_address}"

# The same mini-program on Douyin: logins at /login/douyin, X-Platform: douyin upstream.
[apps.douyin]
platform = "douyin"
appid = "{DEMO_DOUYIN_APPID}"
secret = "{douyin_secret}"
api_base = "http://{mock_address}"

[jwt]
algorithm = "HS256"
secret = "{jwt_secret}"
issuer = "wxgate-demo"

# The demo's signing key is new at every start, so nothing it issues outlives it: no file needed.
[session]
store = "memory"

[[routes]]
prefix = "/api"
upstream = "http://{echo_address}"
auth = "required"

[[routes]]
prefix = "/public"
upstream = "http://{echo_address}"
auth = "none"

[[routes]]
prefix = "/"
upstream = "http://{echo_address}"
auth = "optional"
"#,
        listen = listener.local_addr()?,
        jwt_secret = random_hex()?,
    );
    let config = Config::from_toml(&config_text, std::iter::empty())
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    let gateway = format!("http://{}", listener.local_addr()?);
    println!(
        r#"wxgate demo: gateway on {gateway}, mock WeChat (and Douyin) on http://{mock_address}, echo upstream on http://{echo_address}
Routes: /api (auth required), /public (no auth), / (auth optional). Ctrl-C stops it.

In another terminal:

  # 1. Log in as "alice" with a mock wx.login() code (each code works once: next time use alice.2 ...)
  TOKEN=$(curl -s -X POST {gateway}/login -H 'Content-Type: application/json' -d '{{"code":"alice.1"}}' | sed -E 's/.*"token":"([^"]+)".*/\1/')

  # 2. Call a protected API: the echo upstream answers with what it received, X-OpenId included
  curl -s {gateway}/api/hello -H "Authorization: Bearer $TOKEN"

  # 3. Without a token: 401. With a forged X-OpenId on a public path: stripped before the upstream
  curl -si {gateway}/api/hello
  curl -s {gateway}/public/hello -H 'X-OpenId: admin'

  # 4. The same mini-program on Douyin: log in at /login/douyin; the upstream sees X-Platform: douyin
  DY=$(curl -s -X POST {gateway}/login/douyin -H 'Content-Type: application/json' -d '{{"code":"bob.1"}}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
  curl -s {gateway}/api/hello -H "Authorization: Bearer $DY"
"#
    );
    crate::server::run(listener, config, shutdown).await
}

/// 32 random bytes as 64 hex characters.
fn random_hex() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| std::io::Error::other(error.to_string()))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}
