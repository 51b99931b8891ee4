//! A real redis-server on an ephemeral loopback port, started per test and killed on drop.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct RedisServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    settings: Vec<String>,
}

impl RedisServer {
    /// Starts redis-server, or `None` (after saying why) when it is not installed.
    pub async fn start() -> Option<RedisServer> {
        RedisServer::start_with(&[]).await
    }

    /// Starts redis-server with more command-line settings (`--maxmemory-policy`, ...).
    pub async fn start_with(settings: &[&str]) -> Option<RedisServer> {
        let installed = super::external::available(
            "redis-server (Debian package redis-server)",
            Command::new("redis-server").arg("--version"),
        );
        if !installed {
            return None;
        }
        let addr = super::closed_port().await;
        let mut server = RedisServer {
            child: None,
            addr,
            settings: settings.iter().map(|setting| setting.to_string()).collect(),
        };
        server.spawn().await;
        Some(server)
    }

    /// Starts the process (again, after `stop`: an empty Redis on the same port) and waits
    /// until it answers.
    pub async fn spawn(&mut self) {
        let addr = self.addr;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &addr.port().to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .args(&self.settings)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        for _ in 0..100 {
            if self.ping().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not answer PING on {addr}");
    }

    /// `redis://` URL of the server.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Whether the server answers PING.
    pub async fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(self.addr).await else {
            return false;
        };
        if stream.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).await.is_ok() && &answer == b"+PONG\r\n"
    }

    /// Empties the server (`FLUSHALL`), as an operator's mistake or a failover to an empty
    /// replica would.
    pub async fn flushall(&self) {
        let mut stream = TcpStream::connect(self.addr)
            .await
            .expect("connect to redis");
        stream.write_all(b"FLUSHALL\r\n").await.unwrap();
        let mut answer = [0u8; 5];
        stream.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"+OK\r\n");
    }

    /// Kills the server (a Redis outage).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
