use super::*;
use jsonwebtoken::Algorithm;

const JWT_SECRET: &str = "unit-test-jwt-secret-at-least-32-bytes";

/// A minimal valid config plus `extra` TOML.
fn config_text(extra: &str) -> String {
    format!(
        "[wechat]\nappid = \"wx1\"\nsecret = \"app-secret\"\n[jwt]\nsecret = \"{JWT_SECRET}\"\n{extra}"
    )
}

fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env = env
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()));
    Config::from_toml(text, env.collect::<Vec<_>>())
}

/// Extra TOML, environment overrides, and the key the error must name.
type RefusalCase<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

fn error_key(text: &str, env: &[(&str, &str)]) -> String {
    load(text, env).expect_err("config should be refused").key
}

#[test]
fn defaults_fill_every_optional_key() {
    let config = load(&config_text(""), &[]).unwrap();
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(config.server.max_body_bytes, 1 << 20);
    assert_eq!(
        config.wechat.api_base.as_str(),
        "https://api.weixin.qq.com/"
    );
    assert_eq!(config.wechat.timeout, Duration::from_millis(5000));
    assert_eq!(config.jwt.algorithm, Algorithm::HS256);
    assert_eq!((config.jwt.ttl_secs, config.jwt.leeway_secs), (7200, 30));
    assert_eq!(config.jwt.issuer, "wxgate");
    assert_eq!(config.login.path, "/login");
    assert!(config.routes.is_empty());
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(config.server.workers, cpus);
}

#[test]
fn the_shipped_example_config_is_valid_with_secrets_from_the_environment() {
    let example = include_str!("../../config/wxgate.toml");
    let config = load(
        example,
        &[
            ("WXGATE_WECHAT__SECRET", "s"),
            ("WXGATE_JWT__SECRET", JWT_SECRET),
        ],
    )
    .unwrap();
    assert!(
        config.upstream.max_in_flight >= 64,
        "from the open-files limit, at least 64"
    );
    assert_eq!(config.routes.len(), 2);
    assert_eq!(
        error_key(example, &[("WXGATE_JWT__SECRET", JWT_SECRET)]),
        "wechat.secret"
    );
}

#[test]
fn environment_overrides_any_key_with_string_values() {
    let text = config_text(
        "[[routes]]\nprefix = \"/api\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"required\"\n",
    );
    let config = load(
        &text,
        &[
            ("WXGATE_WECHAT__SECRET", "from-env"),
            ("WXGATE_SERVER__MAX_BODY_BYTES", "4096"),
            ("wxgate_upstream__timeout_ms", "not a prefix match"),
            ("WXGATE_ROUTES__0__AUTH", "optional"),
            ("WXGATE_ROUTES__0__STRIP_PREFIX", "true"),
            ("WXGATE_LOG__LEVEL", "debug"),
            ("WXGATE_CONFIG", "ignored: no double underscore"),
        ],
    )
    .unwrap();
    assert_eq!(config.wechat.default_app().secret.expose(), "from-env");
    assert_eq!(config.server.max_body_bytes, 4096);
    assert_eq!(config.routes[0].auth, AuthMode::Optional);
    assert!(config.routes[0].strip_prefix);
    assert_eq!(config.log.level, "debug");
}

#[test]
fn errors_name_the_key_at_fault() {
    let cases: [RefusalCase; 17] = [
        ("[server]\nlisten = \"nope\"", &[], "server.listen"),
        ("[server]\nworkers = 1025", &[], "server.workers"),
        ("[server]\nworkers = -1", &[], "server.workers"),
        ("[server]\nlisen = \"0.0.0.0:1\"", &[], "server"),
        ("[server]\nmax_body_bytes = 0", &[], "server.max_body_bytes"),
        (
            "",
            &[("WXGATE_SERVER__MAX_BODY_BYTES", "lots")],
            "server.max_body_bytes",
        ),
        (
            "",
            &[("WXGATE_WECHAT__API_BASE", "ftp://x")],
            "wechat.api_base",
        ),
        ("", &[("WXGATE_JWT__ALGORITHM", "HS512")], "jwt.algorithm"),
        ("[login]\npath = \"/a/../login\"", &[], "login.path"),
        ("[log]\nlevel = \"[[[\"", &[], "log.level"),
        (
            "[[routes]]\nprefix = \"/a\"\nupstream = \"http://h:1\"",
            &[],
            "routes[0].auth",
        ),
        (
            "[[routes]]\nprefix = \"/a\"\nupstream = \"ftp://h:1\"\nauth = \"none\"",
            &[],
            "routes[0].upstream",
        ),
        (
            "[[routes]]\nprefix = \"/a\"\nupstream = \"http://h:1\"\nauth = \"none\"\nca_file = \"x.pem\"",
            &[],
            "routes[0].ca_file",
        ),
        ("[server]\nredirect_http_listen = \"127.0.0.1:80\"", &[], "server.redirect_http_listen"),
        ("[server.tls]\ncert_file = \"/nonexistent.pem\"", &[], "server.tls.key_file"),
        (
            "[[routes]]\nprefix = \"a\"\nupstream = \"http://h:1\"\nauth = \"none\"",
            &[],
            "routes[0].prefix",
        ),
        (
            "",
            &[("WXGATE_ROUTES__3__AUTH", "none")],
            "WXGATE_ROUTES__3__AUTH",
        ),
    ];
    for (extra, env, key) in cases {
        let text = config_text(extra);
        let got = error_key(&text, env);
        assert!(got.starts_with(key), "{extra:?}: expected {key}, got {got}");
    }
}

#[test]
fn duplicate_prefixes_and_bad_auth_modes_are_refused() {
    let route = |prefix: &str, auth: &str| {
        format!("[[routes]]\nprefix = \"{prefix}\"\nupstream = \"http://h:1\"\nauth = \"{auth}\"\n")
    };
    let text = config_text(&(route("/api", "none") + &route("/api/", "none")));
    assert_eq!(error_key(&text, &[]), "routes[1].prefix");
    let text = config_text(&route("/api", "sometimes"));
    assert_eq!(error_key(&text, &[]), "routes[0].auth");
}

#[test]
fn a_key_that_is_neither_given_nor_fits_its_algorithm_is_refused() {
    let missing = "[wechat]\nappid = \"wx1\"\nsecret = \"s\"\n[jwt]\nalgorithm = \"ES256\"\n";
    assert_eq!(error_key(missing, &[]), "jwt.private_key_file");
    let both = format!("{missing}private_key_file = \"k.pem\"\nsecret = \"x\"\n");
    assert_eq!(error_key(&both, &[]), "jwt.private_key_file");
}

#[test]
fn debug_and_check_output_never_show_secrets() {
    let config = load(&config_text(""), &[]).unwrap();
    for rendered in [format!("{config:?}"), config.to_redacted_toml()] {
        assert!(!rendered.contains("app-secret"), "{rendered}");
        assert!(!rendered.contains(JWT_SECRET), "{rendered}");
        assert!(rendered.contains("<redacted>"));
    }
}

#[test]
fn route_prefixes_and_upstream_base_paths_are_normalized_forms() {
    let text = config_text(
        "[[routes]]\nprefix = \"/api/\"\nupstream = \"http://127.0.0.1:9/base/\"\nauth = \"none\"\ntimeout_ms = 250\n",
    );
    let route = &load(&text, &[]).unwrap().routes[0];
    assert_eq!(route.prefix, "/api");
    assert_eq!(route.upstream.as_ref().unwrap().base_path, "/base");
    assert_eq!(route.timeout, Duration::from_millis(250));
}

#[test]
fn verify_keys_come_from_the_file_or_the_environment() {
    let old_secret = "the-previous-jwt-secret-of-32-bytes!!";
    let config = load(
        &config_text("kid = \"current\"\n"),
        &[
            ("WXGATE_JWT__VERIFY_KEYS__0__SECRET", old_secret),
            ("WXGATE_JWT__VERIFY_KEYS__0__KID", "previous"),
        ],
    )
    .unwrap();
    assert_eq!(config.jwt.signing.kid.as_deref(), Some("current"));
    assert_eq!(config.jwt.verify_keys.len(), 1);
    assert_eq!(config.jwt.verify_keys[0].kid.as_deref(), Some("previous"));
    for rendered in [format!("{config:?}"), config.to_redacted_toml()] {
        assert!(!rendered.contains(old_secret), "{rendered}");
    }
    assert!(config.to_redacted_toml().contains("previous"));
}

#[test]
fn bad_verify_keys_are_refused_naming_the_entry() {
    let cases: &[RefusalCase] = &[
        (
            "[[jwt.verify_keys]]\nkid = \"x\"",
            &[],
            "jwt.verify_keys[0].secret",
        ),
        (
            "[[jwt.verify_keys]]\nalgorithm = \"ES256\"\nsecret = \"x\"",
            &[],
            "jwt.verify_keys[0].secret",
        ),
        (
            "[[jwt.verify_keys]]\nalgorithm = \"PS256\"",
            &[],
            "jwt.verify_keys[0].algorithm",
        ),
        (
            "",
            &[("WXGATE_JWT__VERIFY_KEYS__1__SECRET", "x")],
            "WXGATE_JWT__VERIFY_KEYS__1__SECRET",
        ),
    ];
    for (extra, env, key) in cases {
        let text = config_text(extra);
        let got = error_key(&text, env);
        assert_eq!(&got, key, "{extra:?}");
    }
}

#[test]
fn forward_auth_and_trusted_proxies() {
    let config = load(&config_text(""), &[]).unwrap();
    assert!(config.forward_auth.covers("/auth"));
    assert!(config.forward_auth.covers("/auth/api/x"));
    assert!(!config.forward_auth.covers("/authx"));
    assert!(!config
        .server
        .trusted_proxies
        .contains("127.0.0.1".parse().unwrap()));

    let config = load(
        &config_text(
            "[forward_auth]\nenabled = false\n[[routes]]\nprefix = \"/\"\nauth = \"required\"\n",
        ),
        &[("WXGATE_SERVER__TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")],
    )
    .unwrap();
    assert!(!config.forward_auth.covers("/auth"));
    assert!(config
        .server
        .trusted_proxies
        .contains("10.1.2.3".parse().unwrap()));
    assert!(config
        .server
        .trusted_proxies
        .contains("127.0.0.1".parse().unwrap()));
    assert!(
        config.routes[0].upstream.is_none(),
        "a forward-auth-only rule"
    );
    let rendered = config.to_redacted_toml();
    assert!(rendered.contains("\"127.0.0.1/32\""), "{rendered}");
}

#[test]
fn forward_auth_conflicts_are_refused() {
    let cases: &[RefusalCase] = &[
        ("[forward_auth]\npath = \"/\"", &[], "forward_auth.path"),
        (
            "[forward_auth]\npath = \"/login\"",
            &[],
            "forward_auth.path",
        ),
        (
            "[forward_auth]\npath = \"/.well-known\"",
            &[],
            "forward_auth.path",
        ),
        (
            "[forward_auth]\npath = \"/a/../auth\"",
            &[],
            "forward_auth.path",
        ),
        (
            "[[routes]]\nprefix = \"/auth/x\"\nauth = \"none\"",
            &[],
            "routes[0].prefix",
        ),
        (
            "[[routes]]\nprefix = \"/x\"\nauth = \"none\"\nca_file = \"/nonexistent.pem\"",
            &[],
            "routes[0].ca_file",
        ),
        (
            "[server]\ntrusted_proxies = [\"everyone\"]",
            &[],
            "server.trusted_proxies",
        ),
    ];
    for (extra, env, key) in cases {
        let got = error_key(&config_text(extra), env);
        assert_eq!(&got, key, "{extra:?}");
    }
}

#[test]
fn several_apps_and_route_restrictions() {
    let config = load(
        &config_text(
            "[wechat.apps.shop]\nappid = \"wx2\"\n[[routes]]\nprefix = \"/shop\"\nauth = \"required\"\napps = [\"shop\"]\n",
        ),
        &[("WXGATE_WECHAT__APPS__SHOP__SECRET", "shop-secret")],
    )
    .unwrap();
    let names: Vec<&str> = config
        .wechat
        .apps
        .iter()
        .map(|app| app.name.as_str())
        .collect();
    assert_eq!(names, ["default", "shop"]);
    assert_eq!(config.wechat.default_app().appid, "wx1");
    assert_eq!(
        config.wechat.app_named("shop").unwrap().secret.expose(),
        "shop-secret"
    );
    assert_eq!(
        config.routes[0].apps.as_deref(),
        Some(&["wx2".to_string()][..])
    );
    let rendered = config.to_redacted_toml();
    assert!(!rendered.contains("shop-secret"), "{rendered}");
    assert!(config.login.covers("/login/shop") && !config.login.covers("/login/a/b"));

    let cases: &[RefusalCase] = &[
        (
            "[wechat.apps.default]\nappid = \"wx2\"\nsecret = \"s\"",
            &[],
            "wechat.apps.default",
        ),
        (
            "[wechat.apps.Shop]\nappid = \"wx2\"\nsecret = \"s\"",
            &[],
            "wechat.apps.Shop",
        ),
        (
            "[wechat.apps.shop]\nappid = \"wx1\"\nsecret = \"s\"",
            &[],
            "wechat.apps.shop.appid",
        ),
        (
            "[wechat.apps.shop]\nappid = \"wx2\"",
            &[],
            "wechat.apps.shop.secret",
        ),
        (
            "[[routes]]\nprefix = \"/x\"\nauth = \"none\"\napps = [\"nope\"]",
            &[],
            "routes[0].apps",
        ),
        (
            "[[routes]]\nprefix = \"/x\"\nauth = \"none\"\napps = []",
            &[],
            "routes[0].apps",
        ),
    ];
    for (extra, env, key) in cases {
        assert_eq!(&error_key(&config_text(extra), env), key, "{extra:?}");
    }
}
