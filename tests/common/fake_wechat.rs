//! A scriptable fake of code2session for resilience tests: it can answer normally, say -1
//! (busy), fail with HTTP 500, or be slow, and counts every call it receives.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the fake answers the next calls.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// A normal code2session answer for user `oFake_<code>`.
    Healthy,
    /// errcode -1, "system error".
    Busy,
    /// errcode -1 once, then healthy.
    BusyOnce,
    /// HTTP 500 with an HTML page.
    Broken,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeWeChat {
    /// Where it listens (the gateway's `api_base`).
    pub addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
}

impl FakeWeChat {
    /// Starts the fake on `listener`; each answer waits `delay` first.
    pub async fn serve(listener: TcpListener, mode: Mode, delay: Duration) -> FakeWeChat {
        let fake = FakeWeChat {
            addr: listener.local_addr().unwrap(),
            calls: Arc::default(),
            mode: Arc::new(Mutex::new(mode)),
        };
        let serving = fake.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let fake = serving.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => head.extend_from_slice(&buffer[..read]),
                        }
                    }
                    fake.calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    let answer = fake.answer(&String::from_utf8_lossy(&head));
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        fake
    }

    /// Starts the fake on a new loopback port.
    pub async fn start(mode: Mode, delay: Duration) -> FakeWeChat {
        FakeWeChat::serve(super::bind().await, mode, delay).await
    }

    /// Calls received so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Changes how the next calls are answered.
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn answer(&self, head: &str) -> String {
        let mode = {
            let mut mode = self.mode.lock().unwrap();
            let now = *mode;
            if now == Mode::BusyOnce {
                *mode = Mode::Healthy;
            }
            now
        };
        let code = head
            .split_once("js_code=")
            .map(|(_, rest)| rest.split(['&', ' ']).next().unwrap_or_default())
            .unwrap_or_default();
        let (status, body) = match mode {
            Mode::Healthy => (
                "200 OK",
                format!(r#"{{"openid":"oFake_{code}","session_key":"ZmFrZS1zZXNzaW9uLWtleQ=="}}"#),
            ),
            Mode::Busy | Mode::BusyOnce => (
                "200 OK",
                r#"{"errcode":-1,"errmsg":"system error"}"#.to_string(),
            ),
            Mode::Broken => (
                "500 Internal Server Error",
                "<html>500 Internal Server Error</html>".to_string(),
            ),
        };
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }
}
