//! A Rust backend that verifies instead of trusting: `examples/axum_backend.rs` (wxgate-verify's
//! tower layer and axum extractor) as a real process, behind real gateways. It refuses what did not
//! come through the gateway (a forged `X-OpenId`, no or a bad assertion, a client token in the
//! assertion's place, an expired assertion, one made for another route's audience) and serves
//! what did; it picks up a new signing key from the JWKS without a restart.

use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::process::spawn_with_first_line;
use crate::common::tokens::{es256_jwt_section, now};
use crate::common::{request, Harness, Response, Setup, ISSUER};

struct Backend(Child);

impl Drop for Backend {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// A JWKS endpoint whose key set the test changes (standing for a gateway whose keys rotate).
#[derive(Clone)]
struct JwksServer {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
}

impl JwksServer {
    async fn start() -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let keys: Arc<Mutex<Vec<Value>>> = Arc::default();
        let served = keys.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let body = serde_json::json!({ "keys": *served.lock().unwrap() }).to_string();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => head.extend_from_slice(&buffer[..read]),
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    stream.write_all(answer.as_bytes()).await.ok();
                });
            }
        });
        JwksServer { url, keys }
    }

    fn publish(&self, keys: Vec<Value>) {
        *self.keys.lock().unwrap() = keys;
    }
}

/// Builds and starts the example, verifying assertions for `audience` with the keys at `jwks`.
fn start_backend(jwks: &str, audience: &str) -> (Backend, String) {
    let mut command = Command::new(crate::examples::built_example("axum_backend"));
    command
        .arg("127.0.0.1:0")
        .env("WXGATE_JWKS_URL", jwks)
        .env("WXGATE_ISSUER", ISSUER)
        .env("WXGATE_AUDIENCE", audience)
        .env("WXGATE_JWKS_REFETCH_SECS", "1");
    let (child, line) = spawn_with_first_line(command);
    let address = line.trim().rsplit("http://").next().unwrap().to_string();
    (Backend(child), address)
}

/// An ES256 gateway with assertions on, `/who` and `/other` (audience `other-service`) going to
/// the backend; and its signing key.
pub(crate) async fn gateway(backend: &str) -> (Harness, String) {
    let (jwt, key) = es256_jwt_section(ISSUER);
    let gateway = Harness::start_with(Setup {
        jwt,
        sections: "[identity]\nassertion = true\n".into(),
        extra_routes: format!(
            "[[routes]]\nprefix = \"/who\"\nupstream = \"http://{backend}\"\nauth = \"required\"\n\
             [[routes]]\nprefix = \"/other\"\nupstream = \"http://{backend}\"\nauth = \"required\"\n\
             audience = \"other-service\"\n"
        ),
        ..Setup::default()
    })
    .await;
    (gateway, key)
}

async fn published_keys(gateway: &Harness) -> Vec<Value> {
    let jwks = request(gateway.addr, "GET", "/.well-known/jwks.json", &[], b"").await;
    jwks.json()["keys"].as_array().unwrap().clone()
}

async fn direct(backend: &str, headers: &[(&str, &str)]) -> Response {
    request(backend.parse().unwrap(), "GET", "/who/me", headers, b"").await
}

fn assert_refused(answer: &Response, code: &str, words: &str) {
    assert_eq!(answer.status, 401, "{}", answer.text());
    assert_eq!(answer.error_code(), code, "{}", answer.text());
    let message = answer.json()["message"].as_str().unwrap().to_string();
    assert!(message.contains(words), "{message}");
    assert!(!answer.text().contains("hello"), "the handler never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_backend_serves_only_what_came_through_the_gateway() {
    let jwks = JwksServer::start().await;
    let (_backend, backend) = start_backend(&jwks.url, "/who");
    let (gateway, key) = gateway(&backend).await;
    let keys = published_keys(&gateway).await;
    jwks.publish(keys.clone());

    // Straight to the backend: a forged X-OpenId, no assertion, a bad one.
    let forged = direct(&backend, &[("X-OpenId", "o-admin")]).await;
    assert_refused(&forged, "missing_assertion", "through wxgate");
    let bad = direct(&backend, &[("X-Wxgate-Assertion", "a.b.c")]).await;
    assert_refused(&bad, "invalid_assertion", "malformed");

    // Through the gateway: served, with the right identity.
    let token = gateway.login("kim").await;
    let served = gateway.get_with_token("/who/me", &token, &[]).await;
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(served.text(), "hello, oMock_kim (app default, wechat)\n");
    // The same user through a route whose audience is another service's: refused there.
    let elsewhere = gateway.get_with_token("/other/me", &token, &[]).await;
    assert_refused(&elsewhere, "invalid_assertion", "another audience");

    // A client token in the assertion's place.
    let as_assertion = direct(&backend, &[("X-Wxgate-Assertion", &token)]).await;
    assert_refused(
        &as_assertion,
        "invalid_assertion",
        "not an identity assertion",
    );

    // An assertion signed with the gateway's own key, but expired.
    let kid = keys[0]["kid"].as_str().unwrap().to_string();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid);
    header.typ = Some("wxgate-assertion+jwt".into());
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "oMock_kim", "aud": "/who", "platform": "wechat",
        "iat": now() - 120, "exp": now() - 60,
    });
    let signing = EncodingKey::from_ec_pem(key.as_bytes()).unwrap();
    let expired = jsonwebtoken::encode(&header, &claims, &signing).unwrap();
    let answer = direct(&backend, &[("X-Wxgate-Assertion", &expired)]).await;
    assert_refused(&answer, "invalid_assertion", "expired");
    // The same claims, fresh, are accepted: only the expiry was wrong.
    let fresh = serde_json::json!({
        "iss": ISSUER, "sub": "oMock_kim", "aud": "/who", "platform": "wechat",
        "iat": now(), "exp": now() + 60,
    });
    let fresh = jsonwebtoken::encode(&header, &fresh, &signing).unwrap();
    let answer = direct(&backend, &[("X-Wxgate-Assertion", &fresh)]).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_signing_key_is_picked_up_from_the_jwks_without_a_restart() {
    let jwks = JwksServer::start().await;
    let (_backend, backend) = start_backend(&jwks.url, "/who");
    let (old, _) = gateway(&backend).await;
    let (new, _) = gateway(&backend).await;
    let old_keys = published_keys(&old).await;
    jwks.publish(old_keys.clone());
    let token = old.login("lin").await;
    assert_eq!(old.get_with_token("/who/me", &token, &[]).await.status, 200);

    // The new key signs before the JWKS lists it: refused, as a forgery would be.
    let token = new.login("lin").await;
    let early = new.get_with_token("/who/me", &token, &[]).await;
    assert_refused(&early, "invalid_assertion", "unknown key id");

    // Published (the old key kept for tokens it signed): the next fetch takes it in, at most
    // once per refetch interval.
    let mut keys = old_keys;
    keys.extend(published_keys(&new).await);
    jwks.publish(keys);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let served = new.get_with_token("/who/me", &token, &[]).await;
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(served.text(), "hello, oMock_lin (app default, wechat)\n");
}
