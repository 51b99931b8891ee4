//! The backend examples behind a real gateway: `examples/whoami.rs` (Rust, hyper) and
//! `examples/python/whoami.py` (Python, standard library) each greet the user whose X-OpenId the
//! gateway set, and see no identity for an anonymous or spoofing caller.

use std::process::{Child, Command};

use crate::common::process::spawn_with_first_line;
use crate::common::{external, Harness, Setup};

/// Kills the example when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Starts an example on a free port; returns it and the address it printed.
fn start(command: Command) -> (Running, String) {
    let (child, line) = spawn_with_first_line(command);
    let address = line
        .trim()
        .rsplit("http://")
        .next()
        .expect("the example names its address")
        .to_string();
    (Running(child), address)
}

/// Runs the gateway in front of the backend at `address` (/api: token required, /public: none)
/// and checks what the backend answered.
async fn assert_greets_through_the_gateway(address: &str) {
    let gateway = Harness::start_with(Setup {
        extra_routes: format!(
            "[[routes]]\nprefix = \"/who\"\nupstream = \"http://{address}\"\nauth = \"optional\"\n"
        ),
        ..Setup::default()
    })
    .await;
    let token = gateway.login("hana.1").await;
    let response = gateway.get_with_token("/who/am/i", &token, &[]).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        response.text().contains("hello, oMock_hana"),
        "{}",
        response.text()
    );
    let anonymous = gateway.get("/who/am/i", &[("X-OpenId", "o-admin")]).await;
    assert_eq!(anonymous.status, 200);
    assert!(
        anonymous.text().contains("hello, anonymous visitor"),
        "{}",
        anonymous.text()
    );
}

/// Catches an example that stops reading X-OpenId, or that no longer builds or starts.
#[tokio::test]
async fn the_rust_backend_example_sees_the_gateways_x_openid() {
    let built = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", "whoami"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(built.success());
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_wxgate"))
        .with_file_name("examples")
        .join("whoami");
    let mut command = Command::new(binary);
    command.arg("127.0.0.1:0");
    let (_backend, address) = start(command);
    assert_greets_through_the_gateway(&address).await;
}

/// Catches a Python example that stops reading X-OpenId, or no longer starts.
#[tokio::test]
async fn the_python_backend_example_sees_the_gateways_x_openid() {
    if !external::available("python3", Command::new("python3").arg("--version")) {
        return;
    }
    let mut command = Command::new("python3");
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/python/whoami.py"
        ))
        .arg("127.0.0.1:0");
    let (_backend, address) = start(command);
    assert_greets_through_the_gateway(&address).await;
}
