//! The TLS gateway as a real third-party client sees it: curl over HTTP/2 and HTTP/1.1, trusting
//! a development CA written by `wxgate gen-cert`. Skips (saying why) when curl is missing, unless
//! WXGATE_REQUIRE_EXTERNAL=1, where a missing curl fails the test.

use std::process::Command;

use crate::common::tokens::{claims, hs256};
use crate::common::{Harness, Setup};

fn curl_available() -> bool {
    crate::common::external::available("curl", Command::new("curl").arg("--version"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reaches_the_upstream_over_http2_and_http1_with_the_gen_cert_ca() {
    if !curl_available() {
        return;
    }
    let dir = crate::common::tls::temp_dir("curl");
    let output = Command::new(env!("CARGO_BIN_EXE_wxgate"))
        .args([
            "gen-cert",
            "--out",
            dir.to_str().unwrap(),
            "--hosts",
            "localhost,127.0.0.1",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let gateway = Harness::start_with(Setup {
        server: crate::common::tls::tls_section(
            &dir.join("server.pem"),
            &dir.join("server-key.pem"),
            "",
        ),
        ..Setup::default()
    })
    .await;
    let authorization = format!("Authorization: Bearer {}", hs256(&claims("o-curl")));
    let url = format!("https://localhost:{}/api/hello", gateway.addr.port());
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let output = tokio::process::Command::new("curl")
            .args(["-sS", flag, "--cacert"])
            .arg(dir.join("dev-ca.pem"))
            .args([
                "-H",
                &authorization,
                "-H",
                "X-OpenId: o-spoofed",
                "-w",
                "\n%{http_version} %{http_code}",
                &url,
            ])
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (body, summary) = stdout.rsplit_once('\n').unwrap();
        assert_eq!(summary, format!("{version} 200"));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["headers"]["x-openid"], serde_json::json!(["o-curl"]));
    }
    // TLS 1.2 and 1.3 only.
    for (flags, accepted) in [
        (["--tlsv1.2", "--tls-max", "1.2"], true),
        (["--tlsv1.1", "--tls-max", "1.1"], false),
    ] {
        let output = tokio::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "--cacert"])
            .arg(dir.join("dev-ca.pem"))
            .args(flags)
            .arg(&url)
            .output()
            .await
            .unwrap();
        assert_eq!(
            output.status.success(),
            accepted,
            "{flags:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
