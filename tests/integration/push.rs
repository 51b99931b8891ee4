//! WeChat's message push, against messages made by an independent implementation (wechatpy's
//! crypto, pyca cryptography; `tests/support/push_vectors.py`): verified, decrypted and POSTed to
//! the backend as JSON in safe, compatible and plain modes, XML and JSON; a tampered signature,
//! another app's message, bad padding and a stale timestamp each refused with nothing forwarded;
//! a redelivered message forwarded once across two replicas sharing Redis.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::external;
use crate::common::redis::RedisServer;
use crate::common::{bind, request, Harness, Response, Setup, APPID};

const TOKEN: &str = "push-token-42";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

/// A request's head (lowercased) and body.
type Received = (String, Vec<u8>);

/// A backend that records every request it gets (headers and body), answering 200, or 500 while
/// `failing`.
#[derive(Clone, Default)]
struct Recorder {
    received: Arc<Mutex<Vec<Received>>>,
    failing: Arc<AtomicBool>,
}

impl Recorder {
    async fn start() -> (Recorder, SocketAddr) {
        let recorder = Recorder::default();
        let listener: TcpListener = bind().await;
        let addr = listener.local_addr().unwrap();
        let serving = recorder.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let recorder = serving.clone();
                tokio::spawn(async move {
                    let mut bytes = Vec::new();
                    let mut buffer = [0u8; 4096];
                    loop {
                        let Ok(read) = stream.read(&mut buffer).await else {
                            return;
                        };
                        if read == 0 {
                            return;
                        }
                        bytes.extend_from_slice(&buffer[..read]);
                        let text = String::from_utf8_lossy(&bytes).to_string();
                        let Some(end) = text.find("\r\n\r\n") else {
                            continue;
                        };
                        let head = text[..end].to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|line| line.strip_prefix("content-length:"))
                            .map_or(0, |value| value.trim().parse().unwrap());
                        if bytes.len() < end + 4 + length {
                            continue;
                        }
                        let body = bytes[end + 4..end + 4 + length].to_vec();
                        let status = if recorder.failing.load(Ordering::SeqCst) {
                            "500 Internal Server Error"
                        } else {
                            recorder.received.lock().unwrap().push((head, body));
                            "200 OK"
                        };
                        let answer = format!(
                            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                        let _ = stream.write_all(answer.as_bytes()).await;
                        return;
                    }
                });
            }
        });
        (recorder, addr)
    }

    fn messages(&self) -> Vec<(String, serde_json::Value)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(head, body)| (head.clone(), serde_json::from_slice(body).unwrap()))
            .collect()
    }
}

/// The cases `push_vectors.py` makes for `mode` and `format`.
fn vectors(mode: &str, format: &str) -> Option<serde_json::Value> {
    if !external::python_modules(
        "wechatpy, cryptography",
        "pip install wechatpy cryptography",
    ) {
        return None;
    }
    let output = std::process::Command::new("python3")
        .args([
            "tests/support/push_vectors.py",
            TOKEN,
            AES_KEY,
            APPID,
            mode,
            format,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).unwrap())
}

fn push_section(mode: &str, format: &str, upstream: SocketAddr) -> String {
    format!(
        "[wechat.push]\ntoken = \"{TOKEN}\"\nencoding_aes_key = \"{AES_KEY}\"\nmode = \"{mode}\"\n\
         format = \"{format}\"\nupstream = \"http://{upstream}/wechat/messages\"\n"
    )
}

async fn push(gateway: &Harness, case: &serde_json::Value) -> Response {
    let target = format!("/wx/push?{}", case["query"].as_str().unwrap());
    let body = case["body"].as_str().unwrap();
    request(
        gateway.addr,
        "POST",
        &target,
        &[("Content-Type", "text/xml")],
        body.as_bytes(),
    )
    .await
}

#[tokio::test]
async fn pushes_of_every_mode_and_format_are_verified_decrypted_and_forwarded_once() {
    for mode in ["safe", "compatible", "plain"] {
        for format in ["json", "xml"] {
            let Some(cases) = vectors(mode, format) else {
                return;
            };
            let (backend, backend_addr) = Recorder::start().await;
            let gateway = Harness::start_with(Setup {
                wechat: push_section(mode, format, backend_addr),
                ..Setup::default()
            })
            .await;
            let label = format!("{mode}/{format}");
            let check = &cases["verification"];
            let target = format!("/wx/push?{}", check["query"].as_str().unwrap());
            let verified = request(gateway.addr, "GET", &target, &[], b"").await;
            assert_eq!(
                (verified.status, verified.text().as_str()),
                (200, "echo-4242"),
                "{label}"
            );
            let forged = target.replace("signature=", "signature=0");
            assert_eq!(
                request(gateway.addr, "GET", &forged, &[], b"").await.status,
                401,
                "{label}"
            );

            let delivered = push(&gateway, &cases["valid"]).await;
            assert_eq!(
                (delivered.status, delivered.text().as_str()),
                (200, "success"),
                "{label}"
            );
            let messages = backend.messages();
            assert_eq!(messages.len(), 1, "{label}");
            let (head, message) = &messages[0];
            assert!(
                head.starts_with("post /wechat/messages "),
                "{label}: {head}"
            );
            assert!(head.contains("x-app: default"), "{label}: {head}");
            assert!(head.contains("content-type: application/json"), "{label}");
            assert_eq!(
                message["Content"], "你好 <wxgate> & co",
                "{label}: {message}"
            );
            assert_eq!(message["FromUserName"], "oMock_pusher", "{label}");
            assert_eq!(message["MsgType"], "text", "{label}");
            assert!(
                message.get("Encrypt").is_none() || mode == "plain",
                "{label}: {message}"
            );

            // WeChat's redelivery of the same message: answered, not forwarded again.
            let again = push(&gateway, &cases["valid"]).await;
            assert_eq!(
                (again.status, again.text().as_str()),
                (200, "success"),
                "{label}"
            );
            assert_eq!(backend.messages().len(), 1, "{label}: forwarded once");

            let mut refusals = vec![
                ("tampered", 401, "push_refused", "signature"),
                ("stale", 401, "push_refused", "timestamp"),
            ];
            if mode != "plain" {
                refusals.push(("wrong_appid", 400, "push_malformed", "another app"));
                refusals.push(("bad_padding", 400, "push_malformed", "padding"));
            }
            for (case, status, code, why) in refusals {
                let refused = push(&gateway, &cases[case]).await;
                assert_eq!(
                    (refused.status, refused.error_code().as_str()),
                    (status, code),
                    "{label} {case}: {}",
                    refused.text()
                );
                let message = refused.json()["message"].as_str().unwrap().to_string();
                assert!(message.contains(why), "{label} {case}: {message}");
            }
            assert_eq!(
                backend.messages().len(),
                1,
                "{label}: nothing refused was forwarded"
            );
        }
    }
}

#[tokio::test]
async fn a_failed_delivery_is_retried_by_wechat_and_a_redelivery_forwarded_once_across_replicas() {
    let Some(cases) = vectors("safe", "xml") else {
        return;
    };
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (backend, backend_addr) = Recorder::start().await;
    let sections = format!(
        "[session]\nstore = \"redis\"\nredis_url = \"{}\"\n",
        redis.url()
    );
    let replica = || {
        Harness::start_with(Setup {
            wechat: push_section("safe", "xml", backend_addr),
            sections: sections.clone(),
            ..Setup::default()
        })
    };
    let (a, b) = (replica().await, replica().await);

    backend.failing.store(true, Ordering::SeqCst);
    let failed = push(&a, &cases["valid"]).await;
    assert_eq!(
        failed.status, 502,
        "the backend failed: WeChat must push again"
    );
    backend.failing.store(false, Ordering::SeqCst);
    let retried = push(&b, &cases["valid"]).await;
    assert_eq!((retried.status, retried.text().as_str()), (200, "success"));
    assert_eq!(backend.messages().len(), 1, "WeChat's retry is delivered");
    let redelivered = push(&a, &cases["valid"]).await;
    assert_eq!(redelivered.text(), "success");
    let second = push(&b, &cases["second"]).await;
    assert_eq!(second.text(), "success");
    let ids: Vec<String> = backend
        .messages()
        .iter()
        .map(|(_, message)| message["MsgId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        ["1001", "1002"],
        "each message once, across both replicas"
    );
}

/// `wxgate mock-wechat push` (and the library's `MockPush` behind it) pushes as WeChat does, in
/// every mode and format, so a gateway can be tried offline.
#[tokio::test]
async fn the_mock_pushes_in_every_mode_and_format() {
    use wxgate::config::{PushFormat, PushMode};
    use wxgate::mock_wechat::MockPush;
    for (mode, mode_name) in [
        (PushMode::Safe, "safe"),
        (PushMode::Compatible, "compatible"),
        (PushMode::Plain, "plain"),
    ] {
        for (format, format_name) in [(PushFormat::Json, "json"), (PushFormat::Xml, "xml")] {
            let (backend, backend_addr) = Recorder::start().await;
            let gateway = Harness::start_with(Setup {
                wechat: push_section(mode_name, format_name, backend_addr),
                ..Setup::default()
            })
            .await;
            let push = MockPush {
                to: format!("http://{}/wx/push", gateway.addr),
                token: TOKEN.into(),
                encoding_aes_key: AES_KEY.into(),
                appid: APPID.into(),
                mode,
                format,
                message: String::new(),
            };
            let label = format!("{mode_name}/{format_name}");
            assert_eq!(
                push.send().await.unwrap(),
                (200, "success".into()),
                "{label}"
            );
            let messages = backend.messages();
            assert_eq!(messages.len(), 1, "{label}");
            assert_eq!(messages[0].1["Content"], "hello from the mock", "{label}");
            let wrong_app = MockPush {
                appid: "wx-another-app".into(),
                ..push.clone()
            };
            let (status, _) = wrong_app.send().await.unwrap();
            let expected = if mode == PushMode::Plain { 200 } else { 400 };
            assert_eq!(status, expected, "{label}: another app's message");
        }
    }
    // The command line, once.
    let (backend, backend_addr) = Recorder::start().await;
    let gateway = Harness::start_with(Setup {
        wechat: push_section("safe", "xml", backend_addr),
        ..Setup::default()
    })
    .await;
    let to = format!("http://{}/wx/push", gateway.addr);
    let mut command = crate::common::process::wxgate(&[
        "mock-wechat",
        "push",
        "--to",
        &to,
        "--appid",
        APPID,
        "--format",
        "xml",
    ]);
    command
        .env("WXGATE_MOCK_PUSH_TOKEN", TOKEN)
        .env("WXGATE_MOCK_PUSH_AES_KEY", AES_KEY);
    // Off this thread: the gateway answering the command runs on it.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(printed.trim(), "200 success");
    assert_eq!(backend.messages().len(), 1);
}
