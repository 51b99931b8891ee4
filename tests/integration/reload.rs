//! Config reload on the real binary: SIGHUP adds a route while a steady load runs and not one
//! request fails; a broken config is refused with its reason logged while the old one keeps
//! serving; with `[reload] watch` a file change is enough. Logs here are JSON lines, and every
//! one of them must parse.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::process::{signal, wait_exit, wait_listening, wxgate};
use wxgate::echo::EchoUpstream;
use wxgate::mock_wechat::MockWeChat;

/// Where everything is: the config file, the gateway's addresses and its fakes'.
struct Places {
    config: PathBuf,
    addr: SocketAddr,
    admin: SocketAddr,
    echo: SocketAddr,
    wechat: SocketAddr,
}

/// A gateway process with its places and captured log lines.
struct Running {
    child: Child,
    places: Places,
    logs: Arc<Mutex<Vec<String>>>,
}

impl std::ops::Deref for Running {
    type Target = Places;
    fn deref(&self) -> &Places {
        &self.places
    }
}

impl Running {
    /// Starts the binary on a config with a /public route and `reload` as its `[reload]` lines.
    async fn start(name: &str, reload: &str) -> Running {
        let wechat = crate::common::bind().await;
        let wechat_addr = wechat.local_addr().unwrap();
        tokio::spawn(async move {
            MockWeChat::new()
                .serve(wechat, std::future::pending())
                .await
        });
        let echo = crate::common::bind().await;
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            EchoUpstream::new()
                .serve(echo, std::future::pending())
                .await
        });
        let places = Places {
            config: crate::common::tls::temp_dir(name).join("wxgate.toml"),
            addr: crate::common::closed_port().await,
            admin: crate::common::closed_port().await,
            echo: echo_addr,
            wechat: wechat_addr,
        };
        places.write_config(reload, "");
        let mut child = wxgate(&["run", "--config", places.config.to_str().unwrap()])
            .env_remove("WXGATE_ADMIN__LISTEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let captured = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                captured.lock().unwrap().push(line);
            }
        });
        wait_listening(places.addr).await;
        Running {
            child,
            places,
            logs,
        }
    }

    async fn status(&self, path: &str) -> u16 {
        crate::common::request(self.addr, "GET", path, &[], b"")
            .await
            .status
    }

    /// Waits up to 5 s for `path` to answer `status`.
    async fn wait_status(&self, path: &str, status: u16) {
        for _ in 0..100 {
            if self.status(path).await == status {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{path} never answered {status}");
    }

    /// Waits up to 5 s for a log line containing `text`; returns it parsed.
    async fn wait_log(&self, text: &str) -> serde_json::Value {
        for _ in 0..100 {
            let found = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .find(|line| line.contains(text))
                .cloned();
            if let Some(line) = found {
                return serde_json::from_str(&line).expect("a JSON log line");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no log line with {text:?}: {:?}", self.logs.lock().unwrap());
    }

    /// SIGTERM, exit 0, and every log line was JSON.
    fn stop(self) {
        signal(&self.child, "TERM");
        assert!(wait_exit(self.child).success(), "exit 0 after SIGTERM");
        for line in self.logs.lock().unwrap().iter() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|error| panic!("not a JSON log line ({error}): {line}"));
        }
    }
}

impl Places {
    /// Writes the config file: the base, `reload` lines, and `routes` after the /public route.
    fn write_config(&self, reload: &str, routes: &str) {
        let text = format!(
            r#"
[server]
listen = "{addr}"
shutdown_grace_secs = 5

[admin]
listen = "{admin}"

[log]
format = "json"

[reload]
{reload}

[wechat]
appid = "wxreload000000001"
secret = "reload-app-secret-value"
api_base = "http://{wechat}"

[jwt]
secret = "reload-test-jwt-secret-at-least-32-bytes"

[[routes]]
prefix = "/public"
upstream = "http://{echo}"
auth = "none"

{routes}
"#,
            addr = self.addr,
            admin = self.admin,
            wechat = self.wechat,
            echo = self.echo,
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// A route to the echo upstream.
    fn route(&self, prefix: &str, auth: &str) -> String {
        format!(
            "[[routes]]\nprefix = \"{prefix}\"\nupstream = \"http://{}\"\nauth = \"{auth}\"\n",
            self.echo
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_adds_a_route_under_load_and_a_broken_config_is_refused_while_the_old_serves() {
    let gateway = Running::start("reload-sighup", "").await;
    assert_eq!(gateway.status("/added/x").await, 404);
    let load =
        crate::common::load::SteadyLoad::start(&format!("http://{}/public", gateway.addr), 16);
    tokio::time::sleep(Duration::from_millis(300)).await;

    gateway.write_config("", &gateway.route("/added", "none"));
    signal(&gateway.child, "HUP");
    gateway.wait_status("/added/x", 200).await;
    let applied = gateway.wait_log("config reloaded").await;
    assert_eq!(applied["routes"], 2);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let broken = format!(
        "{}{}",
        gateway.route("/added", "none"),
        gateway.route("/broken", "sometimes")
    );
    gateway.write_config("", &broken);
    signal(&gateway.child, "HUP");
    let refused = gateway.wait_log("config reload refused").await;
    assert_eq!(refused["level"], "ERROR");
    let reason = refused["reason"].as_str().unwrap();
    assert!(reason.contains("routes[2].auth"), "{reason}");
    // The old config keeps serving, every route of it.
    assert_eq!(gateway.status("/added/x").await, 200);
    assert_eq!(gateway.status("/broken/x").await, 404);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (served, failures) = load.finish().await;
    assert!(failures.is_empty(), "failed during reloads: {failures:?}");
    assert!(served >= 50, "steady load: {served}");

    let metrics = crate::common::request(gateway.admin, "GET", "/metrics", &[], b"").await;
    let metrics = metrics.text();
    assert!(metrics.contains(r#"wxgate_config_reloads_total{result="applied"} 1"#));
    assert!(metrics.contains(r#"wxgate_config_reloads_total{result="refused"} 1"#));

    // The request id is a field of the JSON request line.
    let traced = [("X-Request-Id", "json-rid-1")];
    let response = crate::common::request(gateway.addr, "GET", "/added/y", &traced, b"").await;
    assert_eq!(response.upstream_header("x-request-id"), ["json-rid-1"]);
    let line = gateway.wait_log("json-rid-1").await;
    assert_eq!(line["message"], "request");
    assert_eq!(line["request_id"], "json-rid-1");
    assert_eq!(line["status"], 200);
    gateway.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_config_file_reloads_without_a_signal() {
    let watch = "watch = true\ninterval_ms = 100";
    let gateway = Running::start("reload-watch", watch).await;
    assert_eq!(gateway.status("/watched/x").await, 404);
    gateway.write_config(watch, &gateway.route("/watched", "none"));
    gateway.wait_status("/watched/x", 200).await;
    gateway.wait_log("config file changed").await;
    // A change that needs a restart is applied where it can be, and said so.
    let moved = format!("{watch}\n[session]\nttl_secs = 60");
    gateway.write_config(&moved, &gateway.route("/watched", "none"));
    let warning = gateway.wait_log("takes effect only after a restart").await;
    assert_eq!(warning["key"], "session.ttl_secs");
    gateway.stop();
}
