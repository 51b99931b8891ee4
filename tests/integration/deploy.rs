//! deploy/: every YAML file parses, and every file's wiring (ports, paths, header names, secret
//! variables, timeouts) agrees with the wxgate config it ships with, loaded by wxgate's own config
//! loader. A drifting port or a renamed header fails here, not in a cluster.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use wxgate::config::{Config, StoreKind};
use yaml_rust2::{Yaml, YamlLoader};

const JWKS_PATH: &str = "/.well-known/jwks.json";

fn deploy_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(deploy_path(relative))
        .unwrap_or_else(|error| panic!("{relative}: {error}"))
}

fn documents(relative: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(relative)).unwrap_or_else(|error| panic!("{relative}: {error}"))
}

fn text(value: &Yaml) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value:?}"))
}

fn list(value: &Yaml) -> &Vec<Yaml> {
    value
        .as_vec()
        .unwrap_or_else(|| panic!("expected a list, got {value:?}"))
}

/// The document of `kind` named `name`.
fn object<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|doc| {
            doc["kind"].as_str() == Some(kind) && doc["metadata"]["name"].as_str() == Some(name)
        })
        .unwrap_or_else(|| panic!("no {kind} named {name}"))
}

fn named<'a>(items: &'a Yaml, name: &str) -> &'a Yaml {
    list(items)
        .iter()
        .find(|item| item["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("nothing named {name} in {items:?}"))
}

/// The identity header names wxgate sets, as an ingress must copy them: the identity, the
/// platform and the signed assertion.
fn identity_headers() -> BTreeSet<String> {
    use wxgate::headers::{X_OPENID, X_PLATFORM, X_UNIONID, X_WXGATE_ASSERTION};
    [X_OPENID, X_UNIONID, X_PLATFORM, X_WXGATE_ASSERTION]
        .iter()
        .map(|name| name.as_str().to_string())
        .collect()
}

fn lowercase<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    names
        .into_iter()
        .map(|name| name.trim().to_ascii_lowercase())
        .collect()
}

/// Checks a wxgate container against its ConfigMap and returns the config it runs with: the
/// `--config` path is the mounted ConfigMap key, the secret variables are exactly what the config
/// lacks (it loads with them, and only with them), the named port is the listen port, and the pod
/// outlives the shutdown grace period.
fn wxgate_container(docs: &[Yaml], deployment: &str) -> Config {
    let pod = &pod_template(docs, deployment)["spec"];
    assert_eq!(
        pod["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true),
        "{deployment}"
    );
    let container = named(&pod["containers"], "wxgate");
    let args: Vec<&str> = list(&container["args"]).iter().map(text).collect();
    let config_path = args[args.iter().position(|arg| *arg == "--config").unwrap() + 1];
    let mount = &list(&container["volumeMounts"])[0];
    let (dir, file) = config_path.rsplit_once('/').unwrap();
    assert_eq!(text(&mount["mountPath"]), dir);
    let volume = named(&pod["volumes"], text(&mount["name"]));
    let config_map = object(docs, "ConfigMap", text(&volume["configMap"]["name"]));
    let toml = text(&config_map["data"][file]);

    let secrets: Vec<(String, String)> = list(&container["env"])
        .iter()
        .filter(|var| !var["valueFrom"]["secretKeyRef"].is_badvalue())
        .map(|var| {
            let name = text(&var["name"]).to_string();
            let value = if name == "WXGATE_SESSION__REDIS_URL" {
                "redis://:password@redis.example:6379/0".to_string()
            } else {
                "s".repeat(48)
            };
            (name, value)
        })
        .collect();
    assert!(!secrets.is_empty());
    let config = Config::from_toml(toml, secrets.clone()).expect("the shipped config loads");
    for missing in 0..secrets.len() {
        let mut fewer = secrets.clone();
        let (name, _) = fewer.remove(missing);
        assert!(
            Config::from_toml(toml, fewer).is_err(),
            "{name} is not needed"
        );
    }

    // Replicas share logouts only through Redis; one replica alone may keep its file on a volume.
    let replicas = object(docs, "Deployment", deployment)["spec"]["replicas"]
        .as_i64()
        .unwrap_or(1);
    match &config.session.store {
        StoreKind::Redis(_) => {}
        StoreKind::Memory => panic!("{deployment}: the memory store forgets logouts"),
        StoreKind::Embedded { path } => {
            assert_eq!(
                replicas, 1,
                "{deployment}: several replicas need store = \"redis\""
            );
            let dir = path.parent().unwrap().display().to_string();
            let mounts = list(&container["volumeMounts"]);
            let state = mounts
                .iter()
                .find(|mount| text(&mount["mountPath"]) == dir)
                .unwrap_or_else(|| panic!("{deployment}: nothing mounted at {dir}"));
            let volume = named(&pod["volumes"], text(&state["name"]));
            assert!(
                volume["emptyDir"].is_badvalue(),
                "{deployment}: an emptyDir is lost with the pod"
            );
        }
    }

    let port = named(&container["ports"], "http");
    assert_eq!(
        port["containerPort"].as_i64(),
        Some(i64::from(config.server.listen.port()))
    );
    // Probes go to the admin listener: liveness to /healthz, readiness to /readyz.
    let admin = named(&container["ports"], "admin");
    assert!(config.admin.enabled);
    assert_eq!(
        admin["containerPort"].as_i64(),
        Some(i64::from(config.admin.listen.port()))
    );
    assert!(
        config.admin.listen.ip().is_unspecified(),
        "the kubelet probes the pod IP"
    );
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!((text(&get["path"]), text(&get["port"])), (path, "admin"));
    }
    let annotations = &pod_template(docs, deployment)["metadata"]["annotations"];
    assert_eq!(
        text(&annotations["prometheus.io/port"]),
        config.admin.listen.port().to_string()
    );
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
    assert!(
        grace > config.server.shutdown_grace.as_secs() as i64,
        "{deployment}: grace {grace}"
    );
    config
}

/// A deployment's pod template.
fn pod_template<'a>(docs: &'a [Yaml], deployment: &str) -> &'a Yaml {
    &object(docs, "Deployment", deployment)["spec"]["template"]
}

/// The Service in front of a deployment's wxgate port: `host:port` as other objects address it.
fn service_address(docs: &[Yaml], service: &str) -> String {
    let service = object(docs, "Service", service);
    let ports = list(&service["spec"]["ports"]);
    assert_eq!(
        ports.len(),
        1,
        "only the public port: the admin listener stays in the pod"
    );
    let port = &ports[0];
    assert_eq!(text(&port["targetPort"]), "http");
    let namespace = service["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let name = text(&service["metadata"]["name"]);
    format!(
        "{name}.{namespace}.svc.cluster.local:{}",
        port["port"].as_i64().unwrap()
    )
}

#[test]
fn every_yaml_file_parses() {
    let mut seen = 0;
    for dir in ["kubernetes", "envoy"] {
        for entry in std::fs::read_dir(deploy_path(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path
                .extension()
                .is_some_and(|extension| extension == "yaml")
            {
                let relative = format!("{dir}/{}", path.file_name().unwrap().to_string_lossy());
                assert!(!documents(&relative).is_empty(), "{relative}");
                seen += 1;
            }
        }
    }
    assert!(seen >= 5, "only {seen} YAML files");
}

#[test]
fn sidecar_exposes_only_wxgate_and_keeps_the_app_on_localhost() {
    let docs = documents("kubernetes/sidecar.yaml");
    let config = wxgate_container(&docs, "shop");
    service_address(&docs, "shop");
    let pod = &object(&docs, "Deployment", "shop")["spec"]["template"]["spec"];
    let app = named(&pod["containers"], "app");
    assert!(app["ports"].is_badvalue(), "the app declares no ports");
    assert_eq!(text(&named(&app["env"], "HOST")["value"]), "127.0.0.1");
    let app_port: u16 = text(&named(&app["env"], "PORT")["value"]).parse().unwrap();
    assert!(!config.routes.is_empty());
    for route in &config.routes {
        let upstream = route.upstream.as_ref().expect("sidecar routes proxy");
        assert_eq!(
            upstream.instances[0].host(),
            "127.0.0.1",
            "{}",
            route.prefix
        );
        assert_eq!(
            upstream.instances[0].port_u16(),
            Some(app_port),
            "{}",
            route.prefix
        );
    }
}

/// The companion's config, and the URL an ingress reaches its forward-auth endpoint at.
fn companion() -> (Config, String) {
    let docs = documents("kubernetes/ingress-companion.yaml");
    let config = wxgate_container(&docs, "wxgate");
    assert!(config.forward_auth.enabled);
    assert!(
        config.server.trusted_proxies.networks().count() > 0,
        "ingress pods are trusted"
    );
    let address = service_address(&docs, "wxgate");
    (config, address)
}

#[test]
fn ingress_nginx_asks_the_companion_and_copies_the_identity_headers() {
    let (config, address) = companion();
    let docs = documents("kubernetes/ingress-nginx.yaml");
    let annotations = &object(&docs, "Ingress", "shop-api")["metadata"]["annotations"];
    let auth_url = text(&annotations["nginx.ingress.kubernetes.io/auth-url"]);
    assert_eq!(
        auth_url,
        format!("http://{address}{}", config.forward_auth.path)
    );
    let copied = text(&annotations["nginx.ingress.kubernetes.io/auth-response-headers"]);
    assert_eq!(lowercase(copied.split(',')), identity_headers());

    let public = object(&docs, "Ingress", "wxgate-public");
    let paths = list(&list(&public["spec"]["rules"])[0]["http"]["paths"]);
    let served: BTreeSet<&str> = paths.iter().map(|path| text(&path["path"])).collect();
    assert_eq!(
        served,
        BTreeSet::from([config.login.path.as_str(), JWKS_PATH])
    );
    for path in paths {
        let backend = &path["backend"]["service"];
        let target = format!(
            "{}.wxgate.svc.cluster.local:{}",
            text(&backend["name"]),
            backend["port"]["number"].as_i64().unwrap()
        );
        assert_eq!(target, address);
    }
}

#[test]
fn traefik_asks_the_companion_and_copies_the_identity_headers() {
    let (config, address) = companion();
    let docs = documents("kubernetes/traefik.yaml");
    let forward_auth = &object(&docs, "Middleware", "wxgate-auth")["spec"]["forwardAuth"];
    assert_eq!(
        text(&forward_auth["address"]),
        format!("http://{address}{}", config.forward_auth.path)
    );
    assert_eq!(forward_auth["trustForwardHeader"].as_bool(), Some(false));
    assert_eq!(
        lowercase(list(&forward_auth["authResponseHeaders"]).iter().map(text)),
        identity_headers()
    );

    let api = &list(&object(&docs, "IngressRoute", "shop-api")["spec"]["routes"])[0];
    assert_eq!(text(&list(&api["middlewares"])[0]["name"]), "wxgate-auth");
    let public = &list(&object(&docs, "IngressRoute", "wxgate-public")["spec"]["routes"])[0];
    for path in [config.login.path.as_str(), JWKS_PATH] {
        assert!(
            text(&public["match"]).contains(&format!("Path(`{path}`)")),
            "{path}"
        );
    }
    let service = &list(&public["services"])[0];
    let (host, port) = address.split_once(':').unwrap();
    assert!(host.starts_with(&format!("{}.", text(&service["name"]))));
    assert_eq!(service["port"].as_i64().unwrap().to_string(), port);
}

#[test]
fn envoy_strips_client_identity_then_asks_the_companion() {
    let (config, address) = companion();
    let docs = documents("envoy/envoy.yaml");
    let resources = &docs[0]["static_resources"];
    let manager = &list(&list(&list(&resources["listeners"])[0]["filter_chains"])[0]["filters"])[0]
        ["typed_config"];
    assert_eq!(manager["normalize_path"].as_bool(), Some(true));
    assert_eq!(
        text(&manager["common_http_protocol_options"]["headers_with_underscores_action"]),
        "REJECT_REQUEST"
    );

    let filters: Vec<&str> = list(&manager["http_filters"])
        .iter()
        .map(|filter| text(&filter["name"]))
        .collect();
    assert_eq!(
        filters,
        [
            "envoy.filters.http.header_mutation",
            "envoy.filters.http.ext_authz",
            "envoy.filters.http.router"
        ]
    );
    let mutation = &named(&manager["http_filters"], filters[0])["typed_config"];
    let removed = list(&mutation["mutations"]["request_mutations"])
        .iter()
        .map(|rule| text(&rule["remove"]));
    assert_eq!(lowercase(removed), identity_headers());

    let ext_authz = &named(&manager["http_filters"], filters[1])["typed_config"];
    assert_eq!(ext_authz["failure_mode_allow"].as_bool(), Some(false));
    let service = &ext_authz["http_service"];
    assert_eq!(text(&service["path_prefix"]), config.forward_auth.path);
    assert_eq!(
        text(&service["server_uri"]["uri"]),
        format!("http://{address}")
    );
    let exact =
        |patterns: &Yaml| lowercase(list(patterns).iter().map(|pattern| text(&pattern["exact"])));
    assert_eq!(
        exact(&service["authorization_response"]["allowed_upstream_headers"]["patterns"]),
        identity_headers()
    );
    assert!(
        exact(&service["authorization_request"]["allowed_headers"]["patterns"])
            .contains("authorization")
    );

    let cluster = named(
        &resources["clusters"],
        text(&service["server_uri"]["cluster"]),
    );
    let endpoint = &list(&list(&cluster["load_assignment"]["endpoints"])[0]["lb_endpoints"])[0]
        ["endpoint"]["address"]["socket_address"];
    assert_eq!(
        format!(
            "{}:{}",
            text(&endpoint["address"]),
            endpoint["port_value"].as_i64().unwrap()
        ),
        address
    );

    let routes = list(&list(&manager["route_config"]["virtual_hosts"])[0]["routes"]);
    for path in [config.login.path.as_str(), JWKS_PATH] {
        let route = routes
            .iter()
            .find(|route| route["match"]["path"].as_str() == Some(path))
            .unwrap();
        assert_eq!(text(&route["route"]["cluster"]), text(&cluster["name"]));
        let per_filter = &route["typed_per_filter_config"]["envoy.filters.http.ext_authz"];
        assert_eq!(per_filter["disabled"].as_bool(), Some(true), "{path}");
    }
}

#[test]
fn dockerfile_builds_in_stages_and_runs_the_shipped_config_as_non_root() {
    let dockerfile = read("Dockerfile");
    let instructions: Vec<&str> = dockerfile
        .lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .collect();
    let stages = instructions
        .iter()
        .filter(|line| line.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "multi-stage");
    let last_stage = &instructions[instructions
        .iter()
        .rposition(|line| line.starts_with("FROM "))
        .unwrap()..];
    let value = |keyword: &str| -> &str {
        let line = last_stage
            .iter()
            .rev()
            .find(|line| line.starts_with(keyword))
            .unwrap_or_else(|| panic!("no {keyword}"));
        line[keyword.len()..].trim()
    };
    let user = value("USER ");
    assert!(!["root", "0", "0:0"].contains(&user), "runs as {user}");
    // The embedded store's file on a declared volume, owned by that user.
    let state = value("ENV ")
        .strip_prefix("WXGATE_SESSION__PATH=")
        .expect("the image points session.path at its volume");
    let state_dir = Path::new(state).parent().unwrap().display().to_string();
    assert!(value("VOLUME ").contains(&format!("\"{state_dir}\"")));
    assert!(last_stage.iter().any(
        |line| line.starts_with("RUN ") && line.contains(&format!("chown {user} {state_dir}"))
    ));

    let shipped = Config::from_toml(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/wxgate.toml"))
            .unwrap(),
        [
            ("WXGATE_WECHAT__SECRET".to_string(), "s".into()),
            ("WXGATE_JWT__SECRET".to_string(), "s".repeat(48)),
        ],
    )
    .unwrap();
    assert_eq!(value("EXPOSE "), shipped.server.listen.port().to_string());
    let copies: Vec<(&str, &str)> = last_stage
        .iter()
        .filter_map(|line| line.strip_prefix("COPY "))
        .map(|rest| {
            rest.split_whitespace()
                .filter(|word| !word.starts_with("--"))
                .collect::<Vec<_>>()
        })
        .map(|words| (words[0], words[1]))
        .collect();
    let config_copy = copies
        .iter()
        .find(|(source, _)| *source == "config/wxgate.toml")
        .unwrap()
        .1;
    assert!(value("CMD ").contains(&format!("\"--config\", \"{config_copy}\"")));
    let binary = last_stage
        .iter()
        .filter(|line| line.starts_with("COPY --from="))
        .filter_map(|line| line.split_whitespace().last())
        .find(|destination| destination.ends_with("/wxgate"))
        .expect("the binary is copied from the build stage");
    assert!(value("ENTRYPOINT ").contains(binary));
    for line in instructions
        .iter()
        .filter(|line| line.starts_with("COPY ") && !line.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(
                Path::new(env!("CARGO_MANIFEST_DIR")).join(source).exists(),
                "{source}"
            );
        }
    }
}

/// The build stage copies every file the manifest names: cargo reads them all (a missing bench
/// fails the build) even when it builds only the binary.
#[test]
fn dockerfile_build_stage_copies_every_target_the_manifest_names() {
    let dockerfile = read("Dockerfile");
    let build_stage: Vec<&str> = dockerfile
        .lines()
        .skip_while(|line| !line.starts_with("FROM "))
        .skip(1)
        .take_while(|line| !line.starts_with("FROM "))
        .collect();
    let copied: Vec<&str> = build_stage
        .iter()
        .filter_map(|line| line.strip_prefix("COPY "))
        .flat_map(|rest| {
            let words: Vec<&str> = rest.split_whitespace().collect();
            words[..words.len() - 1].to_vec()
        })
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let mut needed = vec!["Cargo.toml".to_string(), "Cargo.lock".to_string()];
    for (kind, directory) in [
        ("bin", "src/bin"),
        ("bench", "benches"),
        ("example", "examples"),
    ] {
        for target in manifest
            .get(kind)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            let name = target["name"].as_str().unwrap();
            needed.push(match target.get("path").and_then(|path| path.as_str()) {
                Some(path) => path.to_string(),
                None => format!("{directory}/{name}.rs"),
            });
        }
    }
    for path in needed {
        assert!(root.join(&path).exists(), "{path} is named but missing");
        assert!(
            copied
                .iter()
                .any(|source| Path::new(&path).starts_with(source.trim_end_matches('/'))),
            "the build stage does not copy {path}"
        );
    }
}

#[test]
fn systemd_unit_matches_its_config() {
    let unit = read("systemd/wxgate.service");
    let setting = |key: &str| -> &str {
        unit.lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}"))
    };
    assert!(setting("ExecStart").ends_with("run --config /etc/wxgate/wxgate.toml"));
    assert!(unit.contains("deploy/systemd/wxgate.toml /etc/wxgate/wxgate.toml"));
    assert!(setting("ExecReload").contains("-HUP"));
    assert_eq!(setting("KillSignal"), "SIGTERM");
    assert_ne!(setting("User"), "root");

    // The config, with its certificate paths pointed at a real test certificate.
    let dir = crate::common::tls::temp_dir("systemd");
    let ca = wxgate::tls::dev::DevCa::new("deploy test CA").unwrap();
    let (cert, key) = crate::common::tls::write_cert(
        &ca,
        &dir,
        "host",
        &["localhost"],
        wxgate::tls::dev::KeyType::Ecdsa,
    );
    let toml = read("systemd/wxgate.toml")
        .replace("/etc/wxgate/tls/fullchain.pem", &cert.display().to_string())
        .replace("/etc/wxgate/tls/privkey.pem", &key.display().to_string());
    let secrets: Vec<(String, String)> = unit
        .lines()
        .filter_map(|line| line.trim_start_matches(['#', ' ']).split_once('='))
        .filter(|(name, _)| name.starts_with("WXGATE_"))
        .map(|(name, _)| (name.to_string(), "s".repeat(48)))
        .collect();
    assert_eq!(
        secrets.len(),
        2,
        "the secrets.env lines in the unit's comment"
    );
    let config = Config::from_toml(&toml, secrets).expect("the shipped config loads");
    assert!(config.server.tls.is_some());
    // The embedded store's file in the unit's state directory, writable under ProtectSystem.
    let StoreKind::Embedded { path } = &config.session.store else {
        panic!("a single host keeps its sessions in the embedded store");
    };
    let state_dir = format!("/var/lib/{}", setting("StateDirectory"));
    assert_eq!(path.parent().unwrap(), Path::new(&state_dir));
    let stop: u64 = setting("TimeoutStopSec").parse().unwrap();
    assert!(stop > config.server.shutdown_grace.as_secs());
    if config.server.listen.port() < 1024 {
        assert!(setting("AmbientCapabilities").contains("CAP_NET_BIND_SERVICE"));
    }
}
