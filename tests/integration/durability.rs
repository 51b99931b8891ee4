//! Durable sessions and logouts (issue 34), with the real `wxgate` binary and the default embedded
//! store: answered logouts and sessions survive a restart (SIGTERM, and SIGKILL during a burst of
//! logouts), a deleted database starts a new generation that refuses every older token, a corrupt
//! one stops the gateway naming `session.path`, and the memory store says what it loses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::json;
use wxgate::mock_wechat::MockWeChat;

use crate::common::process::{signal, wait_exit, wait_listening, wxgate};
use crate::common::{bind, closed_port, request, scratch_dir, Response, APPID, APP_SECRET};

const JWT_SECRET: &str = "durability-test-secret-of-more-than-32-bytes";
const IV: &str = "AAECAwQFBgcICQoLDA0ODw==";
/// WeChat's sample user data, encrypted for the mock's `samplekey` users (see decrypt.rs).
const USER: &str = "Lnyi8fMh3t2dWwcJFqQSEJ+qNlX1Kb7SO/gO9q9x1fnXavKKFYJ7yva54C4WatiAmEVXXNh/V77ZxfD5q+6M8Z/nySA5kpOoS9lh41MYtwXSGrKzSz4/0ErDrOM42sOn5EyOGYRvxBbAss6msa2A0PtE93n6qMRHe8d3X4b381t7QbBugS1kWlbDRC4eb55G";

/// A mock WeChat and an echo upstream that outlive the gateway processes of one test.
struct World {
    wechat: SocketAddr,
    echo: SocketAddr,
    config: PathBuf,
    database: PathBuf,
}

impl World {
    async fn new(session: &str) -> World {
        let wechat = MockWeChat::with_apps([(APPID.to_string(), APP_SECRET.to_string())]);
        let listener = bind().await;
        let wechat_addr = listener.local_addr().unwrap();
        tokio::spawn(async move { wechat.serve(listener, std::future::pending()).await });
        let echo = wxgate::echo::EchoUpstream::new();
        let listener = bind().await;
        let echo_addr = listener.local_addr().unwrap();
        tokio::spawn(async move { echo.serve(listener, std::future::pending()).await });
        let dir = scratch_dir("durability");
        let config = dir.join("wxgate.toml");
        let database = dir.join("state").join("wxgate.db");
        std::fs::write(
            &config,
            format!(
                "[server]\nshutdown_grace_secs = 2\n[wechat]\nappid = \"{APPID}\"\n\
                 api_base = \"http://{wechat_addr}\"\n[jwt]\nissuer = \"durability\"\n\
                 [login.rate_limit]\nper_minute = 0\n\
                 [session]\n{session}\n\
                 [[routes]]\nprefix = \"/api\"\nupstream = \"http://{echo_addr}\"\nauth = \"required\"\n"
            ),
        )
        .unwrap();
        World {
            wechat: wechat_addr,
            echo: echo_addr,
            config,
            database,
        }
    }

    /// Starts a gateway on a fresh port with this world's config and database; its log (stderr)
    /// goes to `log`.
    async fn start(&self, log: &Path) -> (Child, SocketAddr) {
        let address = closed_port().await;
        let child = wxgate(&["run", "--config", self.config.to_str().unwrap()])
            .env("WXGATE_WECHAT__SECRET", APP_SECRET)
            .env("WXGATE_JWT__SECRET", JWT_SECRET)
            .env("WXGATE_SERVER__LISTEN", address.to_string())
            .env("WXGATE_SESSION__PATH", &self.database)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        wait_listening(address).await;
        (child, address)
    }
}

async fn login(address: SocketAddr, code: &str) -> String {
    let body = json!({ "code": code }).to_string();
    let response = request(
        address,
        "POST",
        "/login",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["token"].as_str().unwrap().to_string()
}

async fn with_token(address: SocketAddr, method: &str, path: &str, token: &str) -> Response {
    let bearer = format!("Bearer {token}");
    request(address, method, path, &[("Authorization", &bearer)], b"").await
}

async fn decrypt(address: SocketAddr, token: &str) -> Response {
    let bearer = format!("Bearer {token}");
    let body = json!({ "encryptedData": USER, "iv": IV }).to_string();
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    request(address, "POST", "/wx/decrypt", &headers, body.as_bytes()).await
}

/// Catches a build whose default store forgets logouts or sessions on a restart (the memory store
/// as the default did): a logged-out token stays refused after SIGTERM and a new start, a live
/// one still works, and `/wx/decrypt` works with the session_key from before the restart.
#[tokio::test]
async fn answered_logouts_and_sessions_survive_a_restart() {
    let world = World::new("").await;
    let log = world.config.with_file_name("first.log");
    let (gateway, address) = world.start(&log).await;
    let out = login(address, "carol.1").await;
    let kept = login(address, "samplekey.1").await;
    let logout = with_token(address, "POST", "/logout", &out).await;
    assert_eq!(logout.status, 200, "{}", logout.text());
    assert_eq!(
        with_token(address, "GET", "/api/me", &out).await.status,
        401
    );
    signal(&gateway, "TERM");
    assert!(wait_exit(gateway).success());
    assert!(world.database.exists(), "the default store is a file");

    let (gateway, address) = world.start(&log.with_file_name("second.log")).await;
    let refused = with_token(address, "GET", "/api/me", &out).await;
    assert_eq!(refused.status, 401, "a logout survives the restart");
    assert!(
        refused.text().contains("revoked by a logout"),
        "{}",
        refused.text()
    );
    let served = with_token(address, "GET", "/api/me", &kept).await;
    assert_eq!(served.status, 200, "{}", served.text());
    let decrypted = decrypt(address, &kept).await;
    assert_eq!(
        decrypted.status,
        200,
        "the session survives: {}",
        decrypted.text()
    );
    assert_eq!(decrypted.json()["openId"], "oMock_olivia");
    signal(&gateway, "TERM");
    assert!(wait_exit(gateway).success());
    let _ = world.echo;
}

/// Catches a build that answers a logout before it is on disk: SIGKILL in the middle of a burst of
/// logouts, and every logout that was answered 200 still refuses its token after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_answered_logout_survives_a_sigkill_during_a_burst() {
    let world = World::new("").await;
    let log = world.config.with_file_name("first.log");
    let (gateway, address) = world.start(&log).await;
    let mut tokens = Vec::new();
    for index in 0..200 {
        tokens.push(login(address, &format!("burst{index}.1")).await);
    }
    let mut logouts = Vec::new();
    let so_far = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for token in tokens.clone() {
        let so_far = so_far.clone();
        logouts.push(tokio::spawn(async move {
            let bearer = format!("Bearer {token}");
            let exchange = async {
                let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
                let head = format!(
                    "POST /logout HTTP/1.1\r\nHost: a\r\nAuthorization: {bearer}\r\nConnection: close\r\n\r\n"
                );
                tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes())
                    .await
                    .ok()?;
                let mut answer = Vec::new();
                tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer)
                    .await
                    .ok()?;
                let ok = answer.starts_with(b"HTTP/1.1 200");
                if ok {
                    so_far.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                ok.then_some(token)
            };
            tokio::time::timeout(Duration::from_secs(10), exchange)
                .await
                .ok()
                .flatten()
        }));
    }
    // The kill lands in the middle of the burst, the moment the first logout is answered: sent
    // from here (kill(1) would take a fork and an exec, while a gateway that answered before
    // committing would be committing).
    let started = std::time::Instant::now();
    while so_far.load(std::sync::atomic::Ordering::SeqCst) == 0
        && started.elapsed() < Duration::from_secs(10)
    {
        std::hint::spin_loop();
    }
    let pid = libc::pid_t::try_from(gateway.id()).unwrap();
    // SAFETY: kill(2) on the child this test spawned and has not yet waited for.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let _ = wait_exit(gateway);
    let mut answered = Vec::new();
    for logout in logouts {
        if let Some(token) = logout.await.unwrap() {
            answered.push(token);
        }
    }
    assert!(
        !answered.is_empty(),
        "some logouts were answered before the kill"
    );

    let (gateway, address) = world.start(&log.with_file_name("second.log")).await;
    for token in &answered {
        let response = with_token(address, "GET", "/api/me", token).await;
        assert_eq!(response.status, 401, "an answered logout was lost");
    }
    signal(&gateway, "TERM");
    assert!(wait_exit(gateway).success());
    eprintln!(
        "{} of {} logouts answered before SIGKILL",
        answered.len(),
        tokens.len()
    );
}

/// Catches a build that starts afresh on an empty store and lets old tokens through (their
/// logouts went with the file): after the database is deleted, tokens from before are refused
/// with 401 and a new login works.
#[tokio::test]
async fn a_deleted_database_refuses_every_earlier_token() {
    let world = World::new("").await;
    let log = world.config.with_file_name("first.log");
    let (gateway, address) = world.start(&log).await;
    let before = login(address, "dave.1").await;
    let logged_out = login(address, "erin.1").await;
    assert_eq!(
        with_token(address, "POST", "/logout", &logged_out)
            .await
            .status,
        200
    );
    signal(&gateway, "TERM");
    assert!(wait_exit(gateway).success());
    std::fs::remove_file(&world.database).unwrap();
    // The generation is to the second: a token from the same second as the new one would pass.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let second_log = log.with_file_name("second.log");
    let (gateway, address) = world.start(&second_log).await;
    for token in [&before, &logged_out] {
        let refused = with_token(address, "GET", "/api/me", token).await;
        assert_eq!(refused.status, 401);
        assert_eq!(refused.error_code(), "invalid_token");
        assert!(
            refused.text().contains("log in again"),
            "{}",
            refused.text()
        );
    }
    let fresh = login(address, "dave.2").await;
    assert_eq!(
        with_token(address, "GET", "/api/me", &fresh).await.status,
        200
    );
    signal(&gateway, "TERM");
    assert!(wait_exit(gateway).success());
    let logged = std::fs::read_to_string(&second_log).unwrap();
    assert!(logged.contains("no generation"), "{logged}");
}

/// Catches a build that replaces a corrupt or unreadable database with a new one (forgetting
/// every revocation): the gateway refuses to start, and says which key to look at.
#[tokio::test]
async fn a_corrupt_or_unreadable_database_stops_the_gateway_at_start() {
    let world = World::new("").await;
    std::fs::create_dir_all(world.database.parent().unwrap()).unwrap();
    for broken in ["corrupt", "directory"] {
        let _ = std::fs::remove_file(&world.database);
        let _ = std::fs::remove_dir_all(&world.database);
        if broken == "corrupt" {
            std::fs::write(&world.database, vec![0x5a; 8192]).unwrap();
        } else {
            std::fs::create_dir(&world.database).unwrap();
        }
        let output = wxgate(&["run", "--config", world.config.to_str().unwrap()])
            .env("WXGATE_WECHAT__SECRET", APP_SECRET)
            .env("WXGATE_JWT__SECRET", JWT_SECRET)
            .env("WXGATE_SERVER__LISTEN", "127.0.0.1:0")
            .env("WXGATE_SESSION__PATH", &world.database)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{broken}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("session.path"), "{broken}: {stderr}");
        assert!(
            stderr.contains(&world.database.display().to_string()),
            "{broken}: {stderr}"
        );
        if broken == "corrupt" {
            let kept = std::fs::read(&world.database).unwrap();
            assert_eq!(kept, vec![0x5a; 8192], "the file is left as it was");
        }
    }
}

/// The memory store says at start what it loses; the embedded one does not.
#[tokio::test]
async fn the_memory_store_warns_that_logouts_do_not_survive_a_restart() {
    let world = World::new("store = \"memory\"").await;
    let log = world.config.with_file_name("memory.log");
    let (gateway, _) = world.start(&log).await;
    signal(&gateway, "TERM");
    assert!(wait_exit(gateway).success());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("do not survive a restart"), "{logged}");
    assert!(!world.database.exists(), "no file for the memory store");
    let _ = world.wechat;
}
