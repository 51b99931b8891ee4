//! Managed Redis: a real redis-server serving TLS only (`rediss://` with the test CA, and with
//! client certificates required), and a real Sentinel setup (`redis-sentinel`) whose master is
//! killed while logins, requests and logouts go on: the gateways follow the promoted replica and
//! logouts still revoke on every replica.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::common::redis::RedisServer;
use crate::common::{self, Harness, Setup};

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
struct Pki {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
    /// Another CA's certificate, which signed none of these.
    stranger_ca: PathBuf,
}

fn pki() -> Pki {
    let dir = common::scratch_dir("redis-pki");
    let authority = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key).unwrap().pem();
        (Issuer::new(params, key), pem)
    };
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (issuer, ca_pem) = authority("redis test CA");
    let leaf = |name: &str, hosts: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(hosts).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap();
        (
            write(&format!("{name}.pem"), &cert.pem()),
            write(&format!("{name}-key.pem"), &key.serialize_pem()),
        )
    };
    let server = leaf(
        "server",
        vec!["127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let client = leaf("client", Vec::new(), ExtendedKeyUsagePurpose::ClientAuth);
    Pki {
        ca: write("ca.pem", &ca_pem),
        server,
        client,
        stranger_ca: write("stranger.pem", &authority("another CA").1),
    }
}

/// A gateway whose session store is the Redis at `session_lines`.
async fn replica(session_lines: &str) -> Harness {
    Harness::start_with(Setup {
        sections: format!(
            "[session]\nstore = \"redis\"\nredis_key_prefix = \"managed:\"\nredis_timeout_ms = 500\n\
             {session_lines}\n[wechat_api]\nlisten = \"127.0.0.1:0\"\n"
        ),
        ..Setup::default()
    })
    .await
}

fn file_line(key: &str, path: &Path) -> String {
    format!("{key} = \"{}\"\n", path.display())
}

/// Logs in on `a`, uses the token on `b`, logs out on `b` and sees it refused on `a`.
async fn a_login_and_logout_cross(a: &Harness, b: &Harness, code: &str) -> Result<(), String> {
    let login = a.login_response(code).await;
    if login.status != 200 {
        return Err(format!("login {}: {}", login.status, login.text()));
    }
    let token = login.json()["token"].as_str().unwrap().to_string();
    let used = b.get_with_token("/api/me", &token, &[]).await;
    if used.status != 200 {
        return Err(format!("request {}: {}", used.status, used.text()));
    }
    let logout = b.post_with_token("/logout", &token).await;
    if logout.status != 200 {
        return Err(format!("logout {}: {}", logout.status, logout.text()));
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let after = a.get_with_token("/api/me", &token, &[]).await;
        match after.status {
            401 => return Ok(()),
            _ if Instant::now() > deadline => {
                return Err(format!("still {} after the logout", after.status))
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test]
async fn replicas_share_sessions_through_a_tls_redis_whose_certificate_is_verified() {
    let pki = pki();
    let (cert, key) = &pki.server;
    let Some(redis) = RedisServer::start_tls(cert, key, &pki.ca, false).await else {
        return;
    };
    let url = format!("redis_url = \"rediss://127.0.0.1:{}\"\n", redis.addr.port());
    let trusting = url.clone() + &file_line("redis_ca_file", &pki.ca);
    let (a, b) = (replica(&trusting).await, replica(&trusting).await);
    a_login_and_logout_cross(&a, &b, "mia").await.unwrap();
    a_login_and_logout_cross(&b, &a, "noa").await.unwrap();

    // A gateway trusting another CA refuses the server's certificate: nothing reaches Redis.
    let stranger = replica(&(url + &file_line("redis_ca_file", &pki.stranger_ca))).await;
    let refused = stranger.login_response("zoe").await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.error_code(), "session_store_unavailable");
}

#[tokio::test]
async fn a_redis_that_requires_client_certificates_gets_the_configured_one() {
    let pki = pki();
    let (cert, key) = &pki.server;
    let Some(redis) = RedisServer::start_tls(cert, key, &pki.ca, true).await else {
        return;
    };
    let url = format!("redis_url = \"rediss://127.0.0.1:{}\"\n", redis.addr.port())
        + &file_line("redis_ca_file", &pki.ca);
    let (client_cert, client_key) = &pki.client;
    let with_certificate = url.clone()
        + &file_line("redis_client_cert_file", client_cert)
        + &file_line("redis_client_key_file", client_key);
    let (a, b) = (
        replica(&with_certificate).await,
        replica(&with_certificate).await,
    );
    a_login_and_logout_cross(&a, &b, "mia").await.unwrap();

    let without = replica(&url).await;
    assert_eq!(without.login_response("zoe").await.status, 503);
}

/// A `redis-sentinel` process watching `master` (quorum 1, down after 500 ms).
struct Sentinel {
    child: Child,
    addr: SocketAddr,
}

impl Sentinel {
    async fn start(master: SocketAddr) -> Option<Sentinel> {
        let installed = common::external::available(
            "redis-sentinel (Debian package redis-sentinel)",
            Command::new("redis-sentinel").arg("--version"),
        );
        if !installed {
            return None;
        }
        let addr = common::closed_port().await;
        let dir = common::scratch_dir("sentinel");
        let config = dir.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor mymaster 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds mymaster 500\n\
                 sentinel failover-timeout mymaster 5000\n",
                addr.port(),
                dir.display(),
                master.port()
            ),
        )
        .unwrap();
        let child = Command::new("redis-sentinel")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-sentinel");
        common::process::wait_listening(addr).await;
        Some(Sentinel { child, addr })
    }

    async fn ask(&self, words: &[&str]) -> redis::Value {
        query(self.addr, words).await
    }

    /// The port of the server the Sentinel calls master now.
    async fn master_port(&self) -> u16 {
        let answer = self
            .ask(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])
            .await;
        let address: Vec<String> = redis::FromRedisValue::from_redis_value(answer).unwrap();
        address[1].parse().unwrap()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One command to the Redis or Sentinel at `addr`.
async fn query(addr: SocketAddr, words: &[&str]) -> redis::Value {
    let client = redis::Client::open(format!("redis://{addr}")).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let mut command = redis::cmd(words[0]);
    for word in &words[1..] {
        command.arg(*word);
    }
    command.query_async(&mut connection).await.unwrap()
}

/// Waits until `check` holds (every 100 ms, up to `limit`).
async fn until<F, Fut>(what: &str, limit: Duration, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn text(value: &redis::Value) -> String {
    format!("{value:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_follow_a_sentinel_failover_and_logouts_still_revoke_everywhere() {
    let Some(mut master) = RedisServer::start().await else {
        return;
    };
    let replica_of = master.addr.port().to_string();
    let Some(standby) = RedisServer::start_with(&["--replicaof", "127.0.0.1", &replica_of]).await
    else {
        return;
    };
    until(
        "the replica is in sync",
        Duration::from_secs(10),
        || async {
            text(&query(standby.addr, &["INFO", "replication"]).await)
                .contains("master_link_status:up")
        },
    )
    .await;
    let Some(sentinel) = Sentinel::start(master.addr).await else {
        return;
    };
    let standby_port = standby.addr.port().to_string();
    until(
        "the Sentinel knows the replica",
        Duration::from_secs(15),
        || async {
            text(&sentinel.ask(&["SENTINEL", "REPLICAS", "mymaster"]).await).contains(&standby_port)
        },
    )
    .await;

    let sentinels = format!(
        "redis_sentinels = [\"{}\"]\nredis_sentinel_master = \"mymaster\"\n",
        sentinel.addr
    );
    let (a, b) = (replica(&sentinels).await, replica(&sentinels).await);
    a_login_and_logout_cross(&a, &b, "ann").await.unwrap();
    let logged_out_before = a.login("bea").await;
    assert_eq!(
        b.post_with_token("/logout", &logged_out_before)
            .await
            .status,
        200
    );
    let kept = a.login("cai").await;
    let api = |gateway: &Harness| {
        let addr = SocketAddr::from(([127, 0, 0, 1], gateway.wechat_api_addr.unwrap().port()));
        async move { common::request(addr, "GET", "/default/cgi-bin/get_api_domain_ip", &[], b"").await }
    };
    assert_eq!(
        api(&a).await.status,
        200,
        "the access_token is fetched and shared"
    );
    until(
        "the replica has every write",
        Duration::from_secs(5),
        || async {
            text(&query(standby.addr, &["DBSIZE"]).await)
                == text(&query(master.addr, &["DBSIZE"]).await)
        },
    )
    .await;

    // Logins, requests and logouts go on while the master is killed and the replica promoted.
    let (going, rounds, failed) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let activity = {
        let (a, b) = (a.addr, b.addr);
        let (going, rounds, failed) = (going.clone(), rounds.clone(), failed.clone());
        tokio::spawn(async move {
            let mut round = 0;
            while going.load(Ordering::SeqCst) {
                round += 1;
                let code = format!("during{round}");
                let body = serde_json::json!({ "code": code }).to_string();
                let headers = [("Content-Type", "application/json")];
                let (first, second) = if round % 2 == 0 { (a, b) } else { (b, a) };
                let login =
                    common::request(first, "POST", "/login", &headers, body.as_bytes()).await;
                let cycle_ok = match login.status {
                    200 => {
                        let token = login.json()["token"].as_str().unwrap().to_string();
                        let bearer = format!("Bearer {token}");
                        let auth = [("Authorization", bearer.as_str())];
                        let used = common::request(second, "GET", "/api/me", &auth, b"").await;
                        let out = common::request(second, "POST", "/logout", &auth, b"").await;
                        used.status == 200 && out.status == 200
                    }
                    _ => false,
                };
                match cycle_ok {
                    true => rounds.fetch_add(1, Ordering::SeqCst),
                    false => failed.fetch_add(1, Ordering::SeqCst),
                };
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rounds.load(Ordering::SeqCst);
    assert!(before > 0, "the activity runs");
    master.stop();
    let promoted = standby.addr.port();
    until(
        "the Sentinel promotes the replica",
        Duration::from_secs(30),
        || async { sentinel.master_port().await == promoted },
    )
    .await;
    let promoted_at = rounds.load(Ordering::SeqCst);
    until(
        "activity succeeds on the new master",
        Duration::from_secs(15),
        || async { rounds.load(Ordering::SeqCst) >= promoted_at + 5 },
    )
    .await;
    going.store(false, Ordering::SeqCst);
    activity.await.unwrap();
    eprintln!(
        "failover: {} rounds succeeded, {} failed while the master was away",
        rounds.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst)
    );

    // What was written before the failover holds; logouts still revoke on every replica.
    for gateway in [&a, &b] {
        let refused = gateway
            .get_with_token("/api/me", &logged_out_before, &[])
            .await;
        assert_eq!(refused.status, 401, "a logout from before the failover");
        let used = gateway.get_with_token("/api/me", &kept, &[]).await;
        assert_eq!(used.status, 200, "a login from before the failover");
    }
    a_login_and_logout_cross(&b, &a, "dee").await.unwrap();
    a_login_and_logout_cross(&a, &b, "eve").await.unwrap();
    assert_eq!(
        api(&b).await.status,
        200,
        "the shared access_token still works"
    );
}
