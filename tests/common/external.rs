//! External programs some tests drive (curl, nginx, PyJWT): present, or the test skips saying
//! why, unless WXGATE_REQUIRE_EXTERNAL=1 (set by `.ci/run`), where a missing one fails the test.

use std::process::{Command, Stdio};

/// Whether `probe` runs successfully; `what` names the program and how to install it.
pub fn available(what: &str, probe: &mut Command) -> bool {
    let found = probe
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            std::env::var("WXGATE_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
            "{what} is required (WXGATE_REQUIRE_EXTERNAL=1) but not installed"
        );
        eprintln!(
            "skipping: {what} is not installed (set WXGATE_REQUIRE_EXTERNAL=1 to make this fail)"
        );
    }
    found
}

/// Whether python3 can import `modules` (comma-separated, as in an `import` line); `install`
/// says how to get them. See [`available`].
pub fn python_modules(modules: &str, install: &str) -> bool {
    available(
        &format!("python3 with {modules} ({install})"),
        Command::new("python3").args(["-c", &format!("import {modules}")]),
    )
}

/// What a Python `script` prints, as JSON (the scripts that make vectors with pyca/cryptography or
/// wechatpy); panics with its stderr when it fails.
pub fn python_json(script: &str) -> serde_json::Value {
    let output = Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}
