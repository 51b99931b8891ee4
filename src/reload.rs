//! Config reload: on SIGHUP, and on a change of the config file's content when `[reload] watch`
//! is on. The file is read and validated exactly as at start; a config that does not validate is
//! refused, the reason logged, and the running one keeps serving. A valid one becomes a new
//! [`AppState`] swapped in atomically: routes, upstreams, keys, limits, login and WeChat settings
//! apply to the next request, while in-flight requests finish on the state they started with.
//!
//! Settings of the listeners themselves (addresses, TLS files, connection limits), of logging and
//! of the session store need a restart; a reload that changes them says so in the log.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::state::AppState;

/// Reloads on SIGHUP and, when watched, on file changes, until the returned future is dropped.
/// The SIGHUP handler is installed right away, before the listener accepts anything, so an
/// early SIGHUP cannot hit the default action (terminating the process).
pub(crate) fn watch(current: Arc<ArcSwap<AppState>>) -> impl std::future::Future<Output = ()> {
    // Built from text (tests, embedding): nothing to read again, SIGHUP left alone.
    let source = current.load().config.source.clone();
    #[cfg(unix)]
    let mut hangups = source.as_ref().and_then(|_| {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|error| {
                tracing::warn!(%error, "cannot listen for SIGHUP; config reloads need [reload] watch");
            })
            .ok()
    });
    async move {
        let Some(source) = source else {
            return std::future::pending().await;
        };
        let mut seen = std::fs::read(&source).ok();
        loop {
            let settings = current.load().config.reload.clone();
            let hangup = async {
                #[cfg(unix)]
                if let Some(signal) = hangups.as_mut() {
                    signal.recv().await;
                    return;
                }
                std::future::pending::<()>().await
            };
            tokio::select! {
                () = hangup => tracing::info!(file = %source.display(), "SIGHUP: reloading the config"),
                () = tokio::time::sleep(settings.interval), if settings.watch => {
                    let now = std::fs::read(&source).ok();
                    if now == seen {
                        continue;
                    }
                    tracing::info!(file = %source.display(), "config file changed: reloading");
                }
            }
            seen = std::fs::read(&source).ok();
            apply(&current, &source);
        }
    }
}

/// Reads the config at `source` and swaps it in, or logs why not. Returns whether it applied.
pub(crate) fn apply(current: &ArcSwap<AppState>, source: &Path) -> bool {
    let running = current.load_full();
    let outcome = Config::load(source)
        .map_err(|error| format!("invalid config: {error}"))
        .and_then(|config| running.reloaded(config));
    running.metrics.count_reload(outcome.is_ok());
    match outcome {
        Ok(state) => {
            for key in restart_only_changes(&running.config, &state.config) {
                tracing::warn!(
                    key,
                    "changed in the file, but takes effect only after a restart"
                );
            }
            tracing::info!(routes = state.config.routes.len(), "config reloaded");
            current.store(Arc::new(state));
            true
        }
        Err(reason) => {
            tracing::error!(%reason, "config reload refused; the running config keeps serving");
            false
        }
    }
}

/// The changed settings a reload cannot apply, by key.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let (server, next) = (&old.server, &new.server);
    let tls_files = |config: &Config| {
        config
            .server
            .tls
            .as_ref()
            .map(|tls| (tls.certificates.clone(), tls.handshake_timeout))
    };
    let session_store = |config: &Config| {
        let session = &config.session;
        (session.ttl, session.max_entries, session.store.clone())
    };
    [
        ("server.listen", server.listen != next.listen),
        ("server.tls", tls_files(old) != tls_files(new)),
        (
            "server.max_connections",
            server.max_connections != next.max_connections,
        ),
        (
            "server.header_read_timeout_ms",
            server.header_read_timeout != next.header_read_timeout,
        ),
        (
            "server.keepalive_timeout_ms",
            server.keepalive_timeout != next.keepalive_timeout,
        ),
        ("server.workers", server.workers != next.workers),
        (
            "server.max_header_bytes",
            server.max_header_bytes != next.max_header_bytes,
        ),
        (
            "server.http2 / server.h2c",
            (server.http2, server.h2c) != (next.http2, next.h2c),
        ),
        (
            "server.http2_max_concurrent_streams",
            server.http2_max_concurrent_streams != next.http2_max_concurrent_streams,
        ),
        (
            "server.shutdown_grace_secs",
            server.shutdown_grace != next.shutdown_grace,
        ),
        (
            "server.redirect_http_listen",
            server.redirect_http_listen != next.redirect_http_listen,
        ),
        (
            "admin",
            (old.admin.enabled, old.admin.listen) != (new.admin.enabled, new.admin.listen),
        ),
        (
            "log",
            (&old.log.level, old.log.format) != (&new.log.level, new.log.format),
        ),
        ("session", session_store(old) != session_store(new)),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[wechat]
appid = "wx1"
secret = "s"
[jwt]
secret = "a-secret-that-is-at-least-32-bytes-long!"
[[routes]]
prefix = "/api"
upstream = "http://127.0.0.1:9"
auth = "required"
"#;

    fn config(extra: &str) -> Config {
        Config::from_toml(&format!("{extra}\n{BASE}"), std::iter::empty()).unwrap()
    }

    #[test]
    fn listener_settings_are_flagged_routes_are_not() {
        let old = config("");
        assert!(restart_only_changes(&old, &config("")).is_empty());
        let more_routes = config("[login]\npath = \"/signin\"");
        assert!(restart_only_changes(&old, &more_routes).is_empty());
        let moved = config("[server]\nlisten = \"0.0.0.0:9999\"\n[log]\nformat = \"json\"");
        assert_eq!(restart_only_changes(&old, &moved), ["server.listen", "log"]);
    }
}
