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
    /// Serves TLS only (`--tls-port`): readiness is a listening port, not a plain PING.
    tls: bool,
}

impl RedisServer {
    /// Starts redis-server, or `None` (after saying why) when it is not installed.
    pub async fn start() -> Option<RedisServer> {
        RedisServer::start_with(&[]).await
    }

    /// Starts redis-server with more command-line settings (`--maxmemory-policy`, ...).
    pub async fn start_with(settings: &[&str]) -> Option<RedisServer> {
        let mut server = RedisServer::start_unspawned().await?;
        server.settings = settings.iter().map(|setting| setting.to_string()).collect();
        server.spawn().await;
        Some(server)
    }

    /// Starts redis-server serving TLS only on its port, with `cert`/`key`, clients verified
    /// against `ca` when `require_client_certificate`.
    pub async fn start_tls(
        cert: &std::path::Path,
        key: &std::path::Path,
        ca: &std::path::Path,
        require_client_certificate: bool,
    ) -> Option<RedisServer> {
        let mut server = RedisServer::start_unspawned().await?;
        let port = server.addr.port().to_string();
        let auth = if require_client_certificate {
            "yes"
        } else {
            "no"
        };
        server.settings = [
            "--port",
            "0",
            "--tls-port",
            &port,
            "--tls-auth-clients",
            auth,
        ]
        .iter()
        .map(|setting| setting.to_string())
        .chain(
            [
                ("--tls-cert-file", cert),
                ("--tls-key-file", key),
                ("--tls-ca-cert-file", ca),
            ]
            .into_iter()
            .flat_map(|(name, path)| [name.to_string(), path.display().to_string()]),
        )
        .collect();
        server.tls = true;
        server.spawn().await;
        Some(server)
    }

    /// A server on a free port, not started yet (`None` when redis-server is not installed).
    async fn start_unspawned() -> Option<RedisServer> {
        let installed = super::external::available(
            "redis-server (Debian package redis-server)",
            Command::new("redis-server").arg("--version"),
        );
        installed.then_some(())?;
        Some(RedisServer {
            child: None,
            addr: super::closed_port().await,
            settings: Vec::new(),
            tls: false,
        })
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

    /// Whether the server answers PING (a TLS-only server: whether it listens).
    pub async fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(self.addr).await else {
            return false;
        };
        if self.tls {
            return true;
        }
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
