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
use crate::state::{AppState, Origin};

mod restart_only;
use restart_only::RestartOnly;

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
        .and_then(|config| AppState::build(config, Origin::Reload(&running)));
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
            state.routes.start_health_checks();
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
    RestartOnly::of(old).changed_keys(&RestartOnly::of(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid config, shared with `restart_only`'s tests.
    pub(super) const BASE: &str = r#"
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
        assert_eq!(
            restart_only_changes(&old, &moved),
            ["server.listen", "log.format"]
        );
    }
}
