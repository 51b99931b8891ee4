//! `docs/*.md` checked like the README: the shell examples of docs/wechat.md run as written (but
//! for the address) with bash and a real curl against a gateway with the `[wechat_api]`
//! listener, and every metric and config table the page names exists; docs/platforms.md's config
//! loads; docs/identity.md's config runs a gateway whose assertions its Python snippet verifies.

use std::process::Command;

use crate::common::external;
use crate::common::metrics::Scrape;
use crate::common::{Harness, Setup};
use wxgate::mock_wechat::MockWeChat;

const WECHAT: &str = include_str!("../../docs/wechat.md");

/// The page's first `sh` block.
fn first_shell_block(page: &str) -> &str {
    let block = page.split_once("```sh\n").expect("a sh block").1;
    block.split_once("```").expect("the block ends").0
}

/// Catches docs/wechat.md drifting from the gateway: an example that no longer works, a metric
/// renamed, a config section it names that the parser does not know.
#[tokio::test]
async fn the_wechat_page_works_as_written() {
    if !external::available("curl", Command::new("curl").arg("--version")) {
        return;
    }
    let gateway = Harness::start_with(Setup {
        sections: "[wechat_api]\nlisten = \"127.0.0.1:0\"\n".into(),
        apps: vec![("shop", "wxshop000000000001", "shop-app-secret")],
        ..Setup::default()
    })
    .await;
    let port = gateway.wechat_api_addr.unwrap().port();
    let dir = crate::common::scratch_dir("docs-wechat");
    let script = first_shell_block(WECHAT).replace("127.0.0.1:9300", &format!("127.0.0.1:{port}"));
    let output = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&dir)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(r#""errcode":0"#), "{stdout}");
    let image = std::fs::read(dir.join("code.png")).unwrap();
    assert_eq!(image, MockWeChat::mock_wxacode("id=42"));
    let sent = gateway.wechat.api_calls();
    assert_eq!(sent[0].path, "/cgi-bin/message/subscribe/send");

    let scrape = Scrape::of(gateway.admin_addr).await;
    for metric in [
        "wxgate_wechat_api_calls_total",
        "wxgate_wechat_api_retries_total",
    ] {
        assert!(WECHAT.contains(metric), "{metric}");
    }
    let labels = [
        ("app", "shop"),
        ("path", "wxa/getwxacodeunlimit"),
        ("errcode", "none"),
    ];
    assert_eq!(scrape.value("wxgate_wechat_api_calls_total", &labels), 1.0);
    for section in ["[wechat_api]", "[wechat.push]", "[wechat.apps.NAME]"] {
        assert!(WECHAT.contains(section), "{section}");
        assert!(
            include_str!("../../config/wxgate.toml").contains(&section.replace("NAME", "shop")),
            "{section} in the example config"
        );
    }
}

/// Catches docs/platforms.md drifting: its config example must load (secrets filled in), and the
/// default API hosts it names must be the config's.
#[test]
fn the_platforms_page_config_loads() {
    const PLATFORMS: &str = include_str!("../../docs/platforms.md");
    let example = PLATFORMS
        .split_once("```toml\n")
        .expect("a toml block")
        .1
        .split_once("```")
        .expect("the block ends")
        .0
        .replace("secret = \"\"", "secret = \"s\"");
    let base = "[wechat]\nappid = \"wx1\"\nsecret = \"s\"\n\
        [jwt]\nsecret = \"a-secret-that-is-at-least-32-bytes-long!\"\n";
    let config = wxgate::config::Config::from_toml(&format!("{base}{example}"), std::iter::empty())
        .expect("the page's example loads");
    // The default hosts the page names are the ones the config uses.
    for name in ["qqshop", "dyshop"] {
        let app = config.wechat.app_named(name).expect(name);
        let host = format!("`{}`", app.api_base.as_str().trim_end_matches('/'));
        assert!(PLATFORMS.contains(&host), "{name}: {host}");
    }
}

const IDENTITY: &str = include_str!("../../docs/identity.md");

/// The first block of `language` on `page`.
fn first_block<'a>(page: &'a str, language: &str) -> &'a str {
    let block = page
        .split_once(&format!("```{language}\n"))
        .unwrap_or_else(|| panic!("a {language} block"))
        .1;
    block.split_once("```").expect("the block ends").0
}

/// Catches docs/identity.md drifting: its config example runs a gateway, and its Python snippet,
/// as written (but for the gateway's address), verifies the assertion a backend receives.
#[tokio::test]
async fn the_identity_page_works_as_written() {
    if !external::python_modules("jwt, cryptography", "pip install 'pyjwt[crypto]'") {
        return;
    }
    let example = first_block(IDENTITY, "toml");
    let (identity, route) = example.split_once("[[routes]]").expect("a route");
    let route = route.replace("http://127.0.0.1:3000", "http://{echo}");
    let (jwt, _) = crate::common::tokens::es256_jwt_section("wxgate");
    let gateway = Harness::start_with(Setup {
        jwt,
        sections: identity.to_string(),
        extra_routes: format!("[[routes]]{route}"),
        ..Setup::default()
    })
    .await;
    let token = gateway.login("ida").await;
    let answer = gateway.get_with_token("/api/orders/7", &token, &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.upstream_header("authorization").is_empty());
    assert_eq!(answer.upstream_header("x-app"), ["default"]);
    let assertion = answer.upstream_header("x-wxgate-assertion")[0].clone();

    let snippet = first_block(IDENTITY, "python").replace(
        "https://gateway.example",
        &format!("http://{}", gateway.addr),
    );
    let script = format!(
        "{snippet}\nimport sys\nfor presented in sys.argv[1:]:\n    try:\n        \
         print(identity(presented)[\"sub\"])\n    except Exception as error:\n        \
         print(\"REJECTED\", type(error).__name__)\n"
    );
    let output = tokio::process::Command::new("python3")
        .args(["-c", &script, &assertion, &token])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["oMock_ida", "REJECTED InvalidTokenError"],
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

const FLEET: &str = include_str!("../../docs/fleet.md");

/// Catches docs/fleet.md drifting: every config block loads, and every metric it names is
/// exported by a gateway with an upstream group.
#[tokio::test]
async fn the_fleet_page_configs_load_and_its_metrics_exist() {
    let base = "[wechat]\nappid = \"wx1\"\nsecret = \"s\"\n\
        [jwt]\nsecret = \"a-secret-that-is-at-least-32-bytes-long!\"\n";
    let blocks: Vec<&str> = FLEET
        .split("```toml\n")
        .skip(1)
        .map(|block| block.split_once("```").expect("the block ends").0)
        .collect();
    assert!(blocks.len() >= 4, "{}", blocks.len());
    for block in blocks {
        wxgate::config::Config::from_toml(&format!("{base}{block}"), std::iter::empty())
            .unwrap_or_else(|error| panic!("{error}\n{block}"));
    }
    let gateway = Harness::start_with(Setup {
        extra_routes: "[[routes]]\nprefix = \"/pair\"\nupstream = [\"http://{echo}\", \"http://127.0.0.1:1\"]\nauth = \"none\"\n".into(),
        ..Setup::default()
    })
    .await;
    let scrape = Scrape::of(gateway.admin_addr).await;
    let named: Vec<&str> = FLEET
        .split('`')
        .filter(|word| word.starts_with("wxgate_"))
        .map(|word| word.split('{').next().unwrap())
        .collect();
    assert!(named.len() >= 4, "{named:?}");
    for metric in named {
        // The per-instance series exist from the start; the others once something was counted,
        // so they are held to the README's metrics table (itself checked against the export).
        let family = metric.trim_end_matches("_total");
        match metric.starts_with("wxgate_upstream_instance") {
            true => assert!(
                scrape.families.contains_key(family),
                "{metric} is not exported"
            ),
            false => assert!(
                include_str!("../../README.md").contains(&format!("`{metric}`")),
                "{metric} is not in the README's metrics table"
            ),
        }
    }
}
