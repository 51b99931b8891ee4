//! Driving the real `wxgate` binary: a clean environment, signals, waiting for it to listen and
//! to exit.

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::Duration;

/// The binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_wxgate");

/// Every subcommand the binary has.
pub const SUBCOMMANDS: [&str; 7] = [
    "run",
    "check",
    "mock-wechat",
    "gen-cert",
    "demo",
    "token",
    "completions",
];

/// `wxgate args...` with no inherited config variables, and the admin listener on an ephemeral
/// port (tests run side by side: the default port would be taken twice).
pub fn wxgate(args: &[&str]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("WXGATE_CONFIG");
    for (name, _) in std::env::vars().filter(|(name, _)| name.contains("__")) {
        command.env_remove(name);
    }
    command.env("WXGATE_ADMIN__LISTEN", "127.0.0.1:0");
    // Each process its own session database (the default store is a file), never the repository's.
    let store = super::scratch_dir("process").join("wxgate.db");
    command.env("WXGATE_SESSION__PATH", store);
    command
}

/// Sends `signal` (TERM, HUP...) with kill(1).
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits up to 5 s for the process to exit.
pub fn wait_exit(mut child: Child) -> std::process::ExitStatus {
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().ok();
    panic!("wxgate did not exit within 5 s");
}

/// Waits up to 5 s until something accepts connections on `address`.
pub async fn wait_listening(address: SocketAddr) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {address}");
}

/// Spawns `command` and returns it with the first line it prints (where it says it listens).
pub fn spawn_with_first_line(mut command: Command) -> (Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}
