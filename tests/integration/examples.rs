//! The backend examples behind a real gateway: `examples/whoami.rs` (Rust, hyper) and
//! `examples/python/whoami.py` (Python, standard library) each greet the user whose X-OpenId the
//! gateway set, and see no identity for an anonymous or spoofing caller; the Python example with
//! PyJWT and `examples/node/whoami.mjs` with jose verify the gateway's identity assertions instead
//! (the axum example, with wxgate-verify, is `backend_verify.rs`'s).

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

/// Builds the Rust example `name` and returns its binary.
pub(crate) fn built_example(name: &str) -> std::path::PathBuf {
    let built = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(built.success());
    std::path::Path::new(env!("CARGO_BIN_EXE_wxgate"))
        .with_file_name("examples")
        .join(name)
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
    let mut command = Command::new(built_example("whoami"));
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

/// Runs an ES256 gateway with assertions on in front of the backend `launch` starts on a free
/// port (given the gateway's JWKS URL and the address), and checks that the backend verifies:
/// served through the gateway, 401 for a forged `X-OpenId`, a client token in the assertion's place
/// and an assertion made for another route's audience.
async fn assert_verifies_assertions(launch: impl FnOnce(&str, &str) -> Command) {
    let backend = crate::common::closed_port().await;
    let (gateway, _) = crate::backend_verify::gateway(&backend.to_string()).await;
    let jwks = format!("http://{}/.well-known/jwks.json", gateway.addr);
    let (_backend, printed) = start(launch(&jwks, &backend.to_string()));
    assert_eq!(printed, backend.to_string());

    let token = gateway.login("mia.1").await;
    let served = gateway.get_with_token("/who/am/i", &token, &[]).await;
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(served.json()["greeting"], "hello, oMock_mia");
    let elsewhere = gateway.get_with_token("/other/x", &token, &[]).await;
    assert_eq!(elsewhere.status, 401, "{}", elsewhere.text());
    assert_eq!(elsewhere.error_code(), "invalid_assertion");
    for (headers, code) in [
        (vec![("X-OpenId", "o-admin")], "missing_assertion"),
        (
            vec![("X-Wxgate-Assertion", token.as_str())],
            "invalid_assertion",
        ),
    ] {
        let direct = crate::common::request(backend, "GET", "/who/am/i", &headers, b"").await;
        assert_eq!(direct.status, 401, "{}", direct.text());
        assert_eq!(direct.error_code(), code);
        assert!(!direct.text().contains("o-admin"));
    }
}

/// Catches the Python example trusting a header once it is told to verify, or verifying with the
/// wrong rules.
#[tokio::test]
async fn the_python_backend_example_verifies_assertions_with_pyjwt() {
    if !external::python_modules("jwt, cryptography", "pip install 'pyjwt[crypto]'") {
        return;
    }
    assert_verifies_assertions(|jwks, address| {
        let mut command = Command::new("python3");
        command
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/python/whoami.py"
            ))
            .arg(address)
            .env("WXGATE_JWKS_URL", jwks)
            .env("WXGATE_ISSUER", crate::common::ISSUER)
            .env("WXGATE_AUDIENCE", "/who");
        command
    })
    .await;
}

/// Catches the Node example trusting a header, or verifying with the wrong rules.
#[tokio::test]
async fn the_node_backend_example_verifies_assertions_with_jose() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/node");
    let jose = Command::new("node")
        .args(["--input-type=module", "-e", "import 'jose'"])
        .current_dir(example)
        .status()
        .is_ok_and(|status| status.success());
    let probe = if jose { "true" } else { "false" };
    if !external::available(
        "node with jose (npm ci --prefix examples/node)",
        &mut Command::new(probe),
    ) {
        return;
    }
    assert_verifies_assertions(|jwks, address| {
        let mut command = Command::new("node");
        command
            .arg(format!("{example}/whoami.mjs"))
            .arg(address)
            .current_dir(example)
            .env("WXGATE_JWKS_URL", jwks)
            .env("WXGATE_ISSUER", crate::common::ISSUER)
            .env("WXGATE_AUDIENCE", "/who");
        command
    })
    .await;
}
