//! A real nginx in front of a backend, asking wxgate with `auth_request`: the shipped
//! `deploy/nginx/wxgate.conf`, with only its addresses swapped for the test's ports. Skips (saying
//! why) when nginx is missing, unless WXGATE_REQUIRE_EXTERNAL=1, where that fails the test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{request, Harness, Response, Setup};

/// The nginx binary: on PATH, or where Debian puts it (not on a normal user's PATH).
fn nginx_binary() -> Option<PathBuf> {
    let candidates = [PathBuf::from("nginx"), PathBuf::from("/usr/sbin/nginx")];
    let found = candidates.into_iter().find(|candidate| {
        Command::new(candidate)
            .arg("-v")
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    });
    let probe = found.clone().unwrap_or_else(|| PathBuf::from("nginx"));
    crate::common::external::available(
        "nginx (Debian package nginx-light)",
        Command::new(probe).arg("-v"),
    )
    .then_some(found)
    .flatten()
}

/// An nginx process serving the shipped config; killed on drop.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The shipped snippet with wxgate, the app and the listener moved to the test's addresses;
/// each line it rewrites must be there exactly once, so a drifting deploy file fails here.
fn shipped_config(gateway: SocketAddr, app: SocketAddr, listen: SocketAddr) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx/wxgate.conf");
    let mut text = std::fs::read_to_string(path).unwrap();
    for (shipped, test) in [
        ("server 127.0.0.1:8080;", format!("server {gateway};")),
        ("server 127.0.0.1:3000;", format!("server {app};")),
        ("listen 80;", format!("listen {listen};")),
    ] {
        assert_eq!(text.matches(shipped).count(), 1, "{shipped} in {path}");
        text = text.replace(shipped, &test);
    }
    text
}

async fn start_nginx(binary: &Path, gateway: &Harness) -> Nginx {
    let dir = crate::common::tls::temp_dir("nginx");
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let addr = crate::common::closed_port().await;
    std::fs::write(
        dir.join("wxgate.conf"),
        shipped_config(gateway.addr, gateway.echo_addr, addr),
    )
    .unwrap();
    let d = dir.display();
    let main = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\nevents {{ worker_connections 128; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n\
         proxy_temp_path {d}/tmp/proxy;\n  fastcgi_temp_path {d}/tmp/fastcgi;\n\
         uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
         include {d}/wxgate.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let child = Command::new(binary)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let nginx = Nginx { child, addr, dir };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return nginx;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
    panic!("nginx did not start listening on {addr}: {log}");
}

async fn through_nginx(nginx: &Nginx, target: &str, headers: &[(&str, &str)]) -> Response {
    request(nginx.addr, "GET", target, headers, b"").await
}

#[tokio::test]
async fn nginx_auth_request_lets_wxgate_decide_and_hands_over_x_openid() {
    let Some(binary) = nginx_binary() else { return };
    let gateway = Harness::start_with(Setup {
        server: "trusted_proxies = [\"127.0.0.1/32\"]".into(),
        sections: "[identity]\nassertion = true\n".into(),
        ..Setup::default()
    })
    .await;
    let nginx = start_nginx(&binary, &gateway).await;

    // Login through nginx, as a mini-program would.
    let body = br#"{"code": "henry"}"#;
    let json = [("Content-Type", "application/json")];
    let login = request(nginx.addr, "POST", "/login", &json, body).await;
    assert_eq!(login.status, 200, "{}", login.text());
    let token = login.json()["token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {token}");

    // No token: 401 from nginx, with wxgate's challenge; the backend never sees the request.
    let denied = through_nginx(&nginx, "/api/orders", &[]).await;
    assert_eq!(denied.status, 401);
    assert!(denied
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    let forged = through_nginx(&nginx, "/api/orders", &[("Authorization", "Bearer a.b.c")]).await;
    assert_eq!(forged.status, 401);
    assert_eq!(gateway.echo.requests(), 0);

    // A valid token: the backend sees the X-OpenId set through auth_request_set.
    let allowed = through_nginx(&nginx, "/api/orders?page=2", &[("Authorization", &bearer)]).await;
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    assert_eq!(allowed.upstream_header("x-openid"), ["oMock_henry"]);
    assert_eq!(allowed.upstream_header("x-unionid"), ["uMock_henry"]);
    assert_eq!(allowed.upstream_header("x-platform"), ["wechat"]);
    assert_eq!(allowed.upstream_uri(), "/api/orders?page=2");
    // The signed assertion too, for the route nginx's request falls under.
    let assertion = allowed.upstream_header("x-wxgate-assertion");
    assert_eq!(assertion.len(), 1, "{}", allowed.text());
    let claims = crate::common::tokens::payload(&assertion[0]);
    assert_eq!(
        (claims["sub"].as_str(), claims["aud"].as_str()),
        (Some("oMock_henry"), Some("/api"))
    );

    // A public path passes without a token, and without identity.
    let forged_assertion = [("X-Wxgate-Assertion", "forged")];
    let public = through_nginx(&nginx, "/public/catalog", &forged_assertion).await;
    assert_eq!(public.status, 200, "{}", public.text());
    assert!(public.upstream_header("x-openid").is_empty());
    assert!(public.upstream_header("x-wxgate-assertion").is_empty());

    // A path that only looks public once the client's own headers are believed stays protected.
    let smuggled = [
        ("X-Forwarded-Uri", "/public/x"),
        ("X-Original-URL", "/public/x"),
    ];
    assert_eq!(
        through_nginx(&nginx, "/api/orders", &smuggled).await.status,
        401
    );
    let dotted = through_nginx(&nginx, "/public/../api/orders", &[]).await;
    assert_eq!(dotted.status, 401, "{}", dotted.text());
}

/// Catches a deploy config (or a gateway) that lets a client-supplied X-OpenId through nginx, in
/// any spelling, on public and protected paths.
#[tokio::test]
async fn client_supplied_x_openid_never_reaches_the_backend_through_nginx() {
    let Some(binary) = nginx_binary() else { return };
    let gateway = Harness::start_with(Setup {
        server: "trusted_proxies = [\"127.0.0.1/32\"]".into(),
        ..Setup::default()
    })
    .await;
    let nginx = start_nginx(&binary, &gateway).await;
    let token = gateway.login("irene").await;
    let bearer = format!("Bearer {token}");
    let spoofed = [
        ("X-OpenId", "oEvil"),
        ("x-openid", "oEvil2"),
        ("X_OpenId", "oEvil3"),
        ("X-UnionId", "uEvil"),
    ];
    let public = through_nginx(&nginx, "/public/x", &spoofed).await;
    assert_eq!(public.status, 200, "{}", public.text());
    let mut protected = spoofed.to_vec();
    protected.push(("Authorization", &bearer));
    let authenticated = through_nginx(&nginx, "/api/me", &protected).await;
    assert_eq!(authenticated.status, 200, "{}", authenticated.text());
    assert_eq!(authenticated.upstream_header("x-openid"), ["oMock_irene"]);
    assert_eq!(authenticated.upstream_header("x-unionid"), ["uMock_irene"]);
    // The echo body lists every header the backend received, so no spoofed value may appear.
    for response in [&public, &authenticated] {
        assert!(!response.text().contains("Evil"), "{}", response.text());
    }
}
