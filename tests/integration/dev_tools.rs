//! The developer commands: `wxgate token` mints what a gateway with the same config accepts,
//! refuses what it would not, and `wxgate completions` and `--help` cover every subcommand.

use crate::common::process::{wxgate, SUBCOMMANDS};
use crate::common::tokens::payload;
use crate::common::{Harness, ISSUER, JWT_SECRET};

const EXAMPLE_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/wxgate.toml");

/// `wxgate token args...` with the harness's JWT secret and issuer over the example config.
fn token(args: &[&str]) -> std::process::Output {
    let mut all = vec!["token", "--config", EXAMPLE_CONFIG];
    all.extend_from_slice(args);
    wxgate(&all)
        .env("WXGATE_WECHAT__SECRET", "any-app-secret")
        .env("WXGATE_JWT__SECRET", JWT_SECRET)
        .env("WXGATE_JWT__ISSUER", ISSUER)
        .output()
        .unwrap()
}

/// Catches a minted token the gateway would refuse, or one carrying a login it does not have.
#[tokio::test]
async fn a_minted_token_passes_a_gateway_with_the_same_key() {
    let output = token(&["--openid", "o-cli", "--unionid", "u-cli", "--ttl", "2m"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let minted = String::from_utf8(output.stdout).unwrap();
    let minted = minted.trim();
    assert_eq!(
        minted.split('.').count(),
        3,
        "only the token on stdout: {minted:?}"
    );
    let claims = payload(minted);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        120
    );
    assert!(claims["sid"].is_null(), "no login behind it");

    let gateway = Harness::start().await;
    let response = gateway.get_with_token("/api/x", minted, &[]).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.upstream_header("x-openid"), ["o-cli"]);
    assert_eq!(response.upstream_header("x-unionid"), ["u-cli"]);
    // Not a login: it cannot be refreshed.
    assert_eq!(
        gateway
            .post_with_token("/token/refresh", minted)
            .await
            .status,
        401
    );
}

/// Catches a command that prints a token the gateway would refuse, or exits 0 on bad input.
#[test]
fn token_refuses_what_the_gateway_would() {
    for (args, complaint) in [
        (vec!["--openid", ""], "empty subject"),
        (vec!["--openid", "o1", "--ttl", "0"], "--ttl"),
        (vec!["--openid", "o1", "--ttl", "5 weeks"], "--ttl"),
        (vec!["--openid", "o1", "--app", "nope"], "--app"),
    ] {
        let output = token(&args);
        assert!(!output.status.success(), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(complaint), "{args:?}: {stderr}");
    }
}

#[test]
fn completions_and_help_cover_every_subcommand() {
    for (shell, marker) in [
        ("bash", "_wxgate()"),
        ("zsh", "#compdef wxgate"),
        ("fish", "complete -c wxgate"),
        ("elvish", "edit:completion:arg-completer[wxgate]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let output = wxgate(&["completions", shell]).output().unwrap();
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {script}");
        for subcommand in SUBCOMMANDS {
            assert!(
                script.contains(subcommand),
                "{shell} completes {subcommand}"
            );
        }
    }
    for subcommand in SUBCOMMANDS {
        let output = wxgate(&[subcommand, "--help"]).output().unwrap();
        assert!(output.status.success(), "{subcommand} --help");
        assert!(String::from_utf8_lossy(&output.stdout).contains("Usage: wxgate"));
    }
}
