//! The README's quickstart run as written: its first command (`cargo run -- demo`, here the built
//! binary) and then its shell block of curl lines, verbatim but for the address, through bash and
//! a real curl. A newcomer who follows the README gets what it promises.

use std::process::Command;

use crate::common::external;
use crate::common::process::{signal, spawn_with_first_line, wait_exit, wxgate};

const README: &str = include_str!("../../README.md");

/// The `sh` block that follows the quickstart's "In another terminal" line.
fn quickstart_lines() -> &'static str {
    let after = README
        .split_once("While it runs, in another terminal:")
        .expect("the README's quickstart")
        .1;
    let block = after.split_once("```sh\n").expect("a sh block").1;
    block.split_once("```").expect("the block ends").0
}

/// Catches a README whose quickstart no longer works: a changed demo port or route, a login
/// answer the sed line cannot read, a missing identity header.
#[tokio::test]
async fn the_readme_quickstart_works_as_written() {
    if !external::available("curl", Command::new("curl").arg("--version")) {
        return;
    }
    assert!(README.contains("cargo run -- demo"), "the first command");
    let (demo, line) = spawn_with_first_line(wxgate(&["demo", "--listen", "127.0.0.1:0"]));
    let address = line
        .split("gateway on http://")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no gateway address in {line:?}"))
        .to_string();
    let script = quickstart_lines().replace("localhost:8080", &address);
    assert!(script.contains("curl"), "{script}");
    let output = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .output()
        .await
        .unwrap();
    signal(&demo, "TERM");
    assert!(wait_exit(demo).success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Step 2: the echo backend saw alice's openid; step 3: 401 without a token, and the forged
    // X-OpenId on the public path never reached the backend.
    assert!(stdout.contains(r#""x-openid":["oMock_alice"]"#), "{stdout}");
    assert!(stdout.contains("HTTP/1.1 401"), "{stdout}");
    let public = stdout.lines().last().unwrap_or_default();
    assert!(public.contains(r#""uri":"/public/hello""#), "{public}");
    assert!(!public.contains("admin"), "{public}");
}

/// Catches a benchmark command in the README that no longer starts: a script renamed or moved,
/// or one whose shared helpers (bench/harness.py) it can no longer import.
#[test]
fn the_readme_benchmark_scripts_start() {
    let scripts: std::collections::BTreeSet<&str> = README
        .lines()
        .filter_map(|line| line.strip_prefix("bench/"))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    for expected in ["run", "shapes", "scale"] {
        assert!(scripts.contains(expected), "bench/{expected} in the README");
    }
    let bench = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench");
    for script in scripts {
        let output = Command::new(bench.join(script))
            .arg("--help")
            .output()
            .unwrap_or_else(|error| panic!("bench/{script}: {error}"));
        let usage = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && usage.contains("usage:"),
            "bench/{script} --help: {usage} {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
