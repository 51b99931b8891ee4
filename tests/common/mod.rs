//! Shared test harness: the gateway started through the same `server::run` as `main`, the mock
//! WeChat and the echo upstream, all on 127.0.0.1:0, plus a raw HTTP/1.1 client that sends bytes
//! exactly as written (attack paths must not be normalized by a client library first).
#![allow(dead_code, unused_imports)] // tests/logs.rs uses only a small part

pub mod external;
pub mod fake_wechat;
pub mod load;
pub mod metrics;
pub mod openapi;
pub mod process;
pub mod raw_h2;
pub mod raw_http;
pub mod redis;
pub mod tls;
pub mod tokens;
pub mod ws;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wxgate::config::Config;
use wxgate::echo::EchoUpstream;
use wxgate::mock_wechat::MockWeChat;

pub use raw_http::{request, send_raw, Response};

/// The appid the harness configures and the mock expects.
pub const APPID: &str = "wxtest0000000001";
/// The AppSecret the harness configures and the mock expects.
pub const APP_SECRET: &str = "appsecret-6f1c2d3e4a5b6c7d8e9f";
/// The content-encryption key of the harness's Alipay apps (AES-128: bytes 0 to 15).
pub const ALIPAY_AES_KEY: &str = "AAECAwQFBgcICQoLDA0ODw==";
/// The HS256 secret of the default harness.
pub const JWT_SECRET: &str = "test-jwt-secret-that-is-at-least-32-bytes-long";
/// The issuer of the default harness.
pub const ISSUER: &str = "wxgate-test";

/// (name, platform, appid, secret) of one app of each platform but WeChat, for
/// `Setup.platform_apps`.
pub const ONE_APP_PER_PLATFORM: [(&str, &str, &str, &str); 5] = [
    ("qqshop", "qq", "1112223334", "qq-app-secret"),
    (
        "dyshop",
        "douyin",
        "tt0123456789abcdef",
        "douyin-app-secret",
    ),
    ("bdshop", "baidu", "baidu-app-key-0123", "baidu-app-secret"),
    ("ksshop", "kuaishou", "ks0123456789", "kuaishou-app-secret"),
    ("alishop", "alipay", "2021000000000001", ""),
];

/// What to change from the default test configuration.
pub struct Setup {
    /// The whole `[jwt]` section.
    pub jwt: String,
    /// Extra lines for `[server]`.
    pub server: String,
    /// Extra lines for `[wechat]`.
    pub wechat: String,
    /// Override `wechat.api_base` and every `[apps.NAME]`'s (default: the mock).
    pub api_base: Option<String>,
    /// The AppSecret the gateway is configured with (the mock always expects `APP_SECRET`).
    pub app_secret: String,
    /// Extra `[[routes]]` appended after the defaults; `{echo}` stands for the echo upstream.
    pub extra_routes: String,
    /// Extra top-level sections (e.g. `[websocket]`).
    pub sections: String,
    /// More mini-programs: (name, appid, secret), configured and known to the mock.
    pub apps: Vec<(&'static str, &'static str, &'static str)>,
    /// Mini-programs of other platforms, `[apps.NAME]`: (name, platform, appid, secret), their
    /// `api_base` the mock, which knows their credentials.
    pub platform_apps: Vec<(&'static str, &'static str, &'static str, &'static str)>,
    /// More lines for some of those `[apps.NAME]` tables: (name, lines).
    pub platform_app_lines: Vec<(&'static str, &'static str)>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            jwt: format!(
                "[jwt]\nalgorithm = \"HS256\"\nsecret = \"{JWT_SECRET}\"\nissuer = \"{ISSUER}\"\n"
            ),
            server: String::new(),
            wechat: String::new(),
            api_base: None,
            app_secret: APP_SECRET.to_string(),
            extra_routes: String::new(),
            sections: String::new(),
            apps: Vec::new(),
            platform_apps: Vec::new(),
            platform_app_lines: Vec::new(),
        }
    }
}

/// A running gateway with its fakes.
pub struct Harness {
    /// Where the gateway listens.
    pub addr: SocketAddr,
    /// Where its admin listener (metrics, health) listens.
    pub admin_addr: SocketAddr,
    /// Where its `[wechat_api]` listener listens, when the config has one (any port: a fresh
    /// one is bound).
    pub wechat_api_addr: Option<SocketAddr>,
    /// The fake WeChat, for its call counter and issued session keys.
    pub wechat: MockWeChat,
    /// Where the fake WeChat listens (another gateway can share it through `Setup.api_base`).
    pub wechat_addr: SocketAddr,
    /// The echo upstream, for its request counter.
    pub echo: EchoUpstream,
    /// Where the echo upstream listens.
    pub echo_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    /// The directory of the gateway's database file, removed on drop.
    store_dir: Option<std::path::PathBuf>,
}

impl Harness {
    /// The default gateway: HS256, routes /api (required), /opt (optional), /public (none),
    /// /unreachable (a closed port), /slow (an upstream slower than its 300 ms timeout).
    pub async fn start() -> Harness {
        Harness::start_with(Setup::default()).await
    }

    /// A gateway with parts of the default configuration replaced.
    pub async fn start_with(setup: Setup) -> Harness {
        let known = std::iter::once((APPID, APP_SECRET))
            .chain(
                setup
                    .apps
                    .iter()
                    .map(|(_, appid, secret)| (*appid, *secret)),
            )
            .chain(
                setup
                    .platform_apps
                    .iter()
                    .map(|(_, _, appid, secret)| (*appid, *secret)),
            );
        let wechat = MockWeChat::with_apps(
            known.map(|(appid, secret)| (appid.to_string(), secret.to_string())),
        );
        let apps: String = setup
            .apps
            .iter()
            .map(|(name, appid, secret)| {
                format!("[wechat.apps.{name}]\nappid = \"{appid}\"\nsecret = \"{secret}\"\n")
            })
            .collect();
        let wechat_listener = bind().await;
        let wechat_addr = wechat_listener.local_addr().unwrap();
        let alipay_keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/alipay");
        let api_base = setup
            .api_base
            .clone()
            .unwrap_or_else(|| format!("http://{wechat_addr}"));
        let platform_apps: String = setup
            .platform_apps
            .iter()
            .map(|(name, platform, appid, secret)| {
                // Alipay signs instead of sending a secret: the test keys of tests/support/alipay.
                let credentials = if *platform == "alipay" {
                    let (app, alipay) = (
                        std::fs::read_to_string(format!("{alipay_keys}/app_public.pem")).unwrap(),
                        std::fs::read_to_string(format!("{alipay_keys}/alipay_private.pem"))
                            .unwrap(),
                    );
                    wechat.serve_alipay(appid, &app, &alipay).unwrap();
                    format!(
                        "private_key_file = \"{alipay_keys}/app_private.pem\"\n\
                         alipay_public_key_file = \"{alipay_keys}/alipay_public.pem\"\n\
                         aes_key = \"{ALIPAY_AES_KEY}\"\n"
                    )
                } else if *platform == "baidu" {
                    format!("secret = \"{secret}\"\nopenapi_base = \"{api_base}\"\n")
                } else {
                    format!("secret = \"{secret}\"\n")
                };
                let lines = setup
                    .platform_app_lines
                    .iter()
                    .filter(|(app, _)| app == name)
                    .map(|(_, lines)| format!("{lines}\n"))
                    .collect::<String>();
                format!(
                    "[apps.{name}]\nplatform = \"{platform}\"\nappid = \"{appid}\"\n\
                     {credentials}api_base = \"{api_base}\"\n{lines}"
                )
            })
            .collect();
        let serving = wechat.clone();
        tokio::spawn(async move { serving.serve(wechat_listener, std::future::pending()).await });

        let echo = EchoUpstream::new();
        let echo_listener = bind().await;
        let echo_addr = echo_listener.local_addr().unwrap();
        let serving = echo.clone();
        tokio::spawn(async move { serving.serve(echo_listener, std::future::pending()).await });

        let (slow_addr, _) = slow_upstream(Duration::from_secs(5)).await;
        let closed_addr = closed_port().await;
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 65536
shutdown_grace_secs = 5
{server}

[wechat]
appid = "{APPID}"
secret = "{app_secret}"
api_base = "{api_base}"
{wechat_extra}

{apps}

{jwt}

{platform_apps}

{sections}

[[routes]]
prefix = "/api"
upstream = "http://{echo_addr}"
auth = "required"

[[routes]]
prefix = "/opt"
upstream = "http://{echo_addr}"
auth = "optional"

[[routes]]
prefix = "/public"
upstream = "http://{echo_addr}"
auth = "none"

[[routes]]
prefix = "/unreachable"
upstream = "http://{closed_addr}"
auth = "none"

[[routes]]
prefix = "/slow"
upstream = "http://{slow_addr}"
auth = "none"
timeout_ms = 300

{extra_routes}
"#,
            server = setup.server,
            wechat_extra = setup.wechat,
            jwt = setup.jwt,
            extra_routes = setup.extra_routes.replace("{echo}", &echo_addr.to_string()),
            app_secret = setup.app_secret,
            sections = setup.sections,
        );
        // The default store is a database file: each gateway gets one of its own.
        let store_dir = scratch_dir("harness");
        let store_path = store_dir.join("wxgate.db").display().to_string();
        let env = [("WXGATE_SESSION__PATH".to_string(), store_path)];
        let config = Config::from_toml(&text, env).expect("test config is valid");
        let mut harness = Harness::serve(config, (wechat, wechat_addr), echo, echo_addr).await;
        harness.store_dir = Some(store_dir);
        harness
    }

    /// Starts the gateway with a ready configuration.
    async fn serve(
        config: Config,
        (wechat, wechat_addr): (MockWeChat, SocketAddr),
        echo: EchoUpstream,
        echo_addr: SocketAddr,
    ) -> Harness {
        let listener = bind().await;
        let addr = listener.local_addr().unwrap();
        let admin = bind().await;
        let admin_addr = admin.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let wechat_api = match config.wechat_api.listen {
            Some(listen) => Some(TcpListener::bind((listen.ip(), 0)).await.unwrap()),
            None => None,
        };
        let wechat_api_addr = wechat_api
            .as_ref()
            .map(|listener| listener.local_addr().unwrap());
        let listeners = wxgate::server::Listeners {
            public: listener,
            admin: Some(admin),
            wechat_api,
        };
        let server = tokio::spawn(wxgate::server::run(listeners, config, async {
            let _ = stopped.await;
        }));
        Harness {
            addr,
            admin_addr,
            wechat_api_addr,
            wechat,
            wechat_addr,
            echo,
            echo_addr,
            stop: Some(stop),
            server: Some(server),
            store_dir: None,
        }
    }

    /// Signals shutdown and waits for `server::run` to return.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let server = self.server.take().expect("server still running");
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server::run returns after shutdown")
            .expect("server task did not panic")
    }

    /// Signals shutdown without waiting; returns the server task.
    pub fn begin_shutdown(&mut self) -> JoinHandle<std::io::Result<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.take().expect("server still running")
    }

    /// GET `path` with optional extra header lines.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        request(self.addr, "GET", path, headers, b"").await
    }

    /// GET `path` with a bearer token and optional extra header lines.
    pub async fn get_with_token(
        &self,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        let authorization = format!("Bearer {token}");
        let mut all = vec![("Authorization", authorization.as_str())];
        all.extend_from_slice(headers);
        request(self.addr, "GET", path, &all, b"").await
    }

    /// POSTs `body` as JSON to `path` with a bearer token.
    pub async fn post_json_with_token(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> Response {
        let bearer = format!("Bearer {token}");
        let headers = [
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ];
        request(
            self.addr,
            "POST",
            path,
            &headers,
            body.to_string().as_bytes(),
        )
        .await
    }

    /// POSTs to `path` with a bearer token and no body (refresh, logout).
    pub async fn post_with_token(&self, path: &str, token: &str) -> Response {
        let bearer = format!("Bearer {token}");
        request(self.addr, "POST", path, &[("Authorization", &bearer)], b"").await
    }

    /// POSTs a JSON login with `code`.
    pub async fn login_response(&self, code: &str) -> Response {
        let body = serde_json::json!({ "code": code }).to_string();
        request(
            self.addr,
            "POST",
            "/login",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .await
    }

    /// Logs in with `code` and returns the token.
    pub async fn login(&self, code: &str) -> String {
        let response = self.login_response(code).await;
        assert_eq!(response.status, 200, "login failed: {}", response.text());
        response.json()["token"]
            .as_str()
            .expect("token")
            .to_string()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(dir) = self.store_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A fresh, empty directory of this test process's own under cargo's scratch directory for
/// integration tests (`target/tmp`).
pub fn scratch_dir(purpose: &str) -> std::path::PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "wxgate-{purpose}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// A listener on an ephemeral loopback port.
pub async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback")
}

/// An address on which nothing listens (bound, then closed).
pub async fn closed_port() -> SocketAddr {
    let listener = bind().await;
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// An upstream that reads the request head, waits `delay`, then answers 200 "slow". The counter
/// tells how many request heads it has received.
pub async fn slow_upstream(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = bind().await;
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 16 * 1024];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => seen.extend_from_slice(&buffer[..read]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nslow",
                    )
                    .await;
            });
        }
    });
    (addr, received)
}
