//! The settings a running gateway takes only at start, in one struct: the listeners and their
//! TLS, the worker threads, the limits every connection is served with, the admin listener,
//! logging, the session store and `[tracing]`. A reload compares the old and new struct field by field and
//! names every key that changed: it takes effect only after a restart.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{Config, StoreKind, TracingConfig};
use crate::logging::LogFormat;
use crate::tls::CertificateFiles;

/// Every restart-only setting of one config.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RestartOnly {
    listen: SocketAddr,
    max_connections: usize,
    header_read_timeout: Duration,
    keepalive_timeout: Duration,
    workers: usize,
    shutdown_grace: Duration,
    max_header_bytes: usize,
    http2: bool,
    h2c: bool,
    http2_max_concurrent_streams: u32,
    redirect_http_listen: Option<SocketAddr>,
    tls_certificates: Option<Vec<CertificateFiles>>,
    tls_handshake_timeout: Option<Duration>,
    tls_reload_interval: Option<Duration>,
    admin_enabled: bool,
    admin_listen: SocketAddr,
    wechat_api_listen: Option<SocketAddr>,
    wechat_api_max_in_flight: usize,
    log_level: String,
    log_format: LogFormat,
    session_ttl: Duration,
    session_max_entries: u64,
    session_store: StoreKind,
    tracing: TracingConfig,
}

impl RestartOnly {
    /// The restart-only settings of `config`.
    pub(crate) fn of(config: &Config) -> Self {
        let (server, tls) = (&config.server, config.server.tls.as_ref());
        RestartOnly {
            listen: server.listen,
            max_connections: server.max_connections,
            header_read_timeout: server.header_read_timeout,
            keepalive_timeout: server.keepalive_timeout,
            workers: server.workers,
            shutdown_grace: server.shutdown_grace,
            max_header_bytes: server.max_header_bytes,
            http2: server.http2,
            h2c: server.h2c,
            http2_max_concurrent_streams: server.http2_max_concurrent_streams,
            redirect_http_listen: server.redirect_http_listen,
            tls_certificates: tls.map(|tls| tls.certificates.clone()),
            tls_handshake_timeout: tls.map(|tls| tls.handshake_timeout),
            tls_reload_interval: tls.map(|tls| tls.reload_interval),
            admin_enabled: config.admin.enabled,
            admin_listen: config.admin.listen,
            wechat_api_listen: config.wechat_api.listen,
            wechat_api_max_in_flight: config.wechat_api.max_in_flight,
            log_level: config.log.level.clone(),
            log_format: config.log.format,
            session_ttl: config.session.ttl,
            session_max_entries: config.session.max_entries,
            session_store: config.session.store.clone(),
            tracing: config.tracing.clone(),
        }
    }

    /// Each setting's key and whether it differs in `next`. Both structs are taken apart whole,
    /// so a field added above without a key here does not compile.
    fn compared(&self, next: &Self) -> [(&'static str, bool); 24] {
        let RestartOnly {
            listen,
            max_connections,
            header_read_timeout,
            keepalive_timeout,
            workers,
            shutdown_grace,
            max_header_bytes,
            http2,
            h2c,
            http2_max_concurrent_streams,
            redirect_http_listen,
            tls_certificates,
            tls_handshake_timeout,
            tls_reload_interval,
            admin_enabled,
            admin_listen,
            wechat_api_listen,
            wechat_api_max_in_flight,
            log_level,
            log_format,
            session_ttl,
            session_max_entries,
            session_store,
            tracing,
        } = self;
        [
            ("server.listen", *listen != next.listen),
            (
                "server.max_connections",
                *max_connections != next.max_connections,
            ),
            (
                "server.header_read_timeout_ms",
                *header_read_timeout != next.header_read_timeout,
            ),
            (
                "server.keepalive_timeout_ms",
                *keepalive_timeout != next.keepalive_timeout,
            ),
            ("server.workers", *workers != next.workers),
            (
                "server.shutdown_grace_secs",
                *shutdown_grace != next.shutdown_grace,
            ),
            (
                "server.max_header_bytes",
                *max_header_bytes != next.max_header_bytes,
            ),
            ("server.http2", *http2 != next.http2),
            ("server.h2c", *h2c != next.h2c),
            (
                "server.http2_max_concurrent_streams",
                *http2_max_concurrent_streams != next.http2_max_concurrent_streams,
            ),
            (
                "server.redirect_http_listen",
                *redirect_http_listen != next.redirect_http_listen,
            ),
            ("server.tls", *tls_certificates != next.tls_certificates),
            (
                "server.tls.handshake_timeout_ms",
                both_and_unequal(tls_handshake_timeout, &next.tls_handshake_timeout),
            ),
            (
                "server.tls.reload_interval_ms",
                both_and_unequal(tls_reload_interval, &next.tls_reload_interval),
            ),
            ("admin.enabled", *admin_enabled != next.admin_enabled),
            ("admin.listen", *admin_listen != next.admin_listen),
            (
                "wechat_api.listen",
                *wechat_api_listen != next.wechat_api_listen,
            ),
            (
                "wechat_api.max_in_flight",
                *wechat_api_max_in_flight != next.wechat_api_max_in_flight,
            ),
            ("log.level", *log_level != next.log_level),
            ("log.format", *log_format != next.log_format),
            ("session.ttl_secs", *session_ttl != next.session_ttl),
            (
                "session.max_entries",
                *session_max_entries != next.session_max_entries,
            ),
            ("session.store", *session_store != next.session_store),
            ("tracing", *tracing != next.tracing),
        ]
    }

    /// The keys whose settings differ in `next`.
    pub(crate) fn changed_keys(&self, next: &Self) -> Vec<&'static str> {
        self.compared(next)
            .into_iter()
            .filter_map(|(key, changed)| changed.then_some(key))
            .collect()
    }

    /// Every restart-only key.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> Vec<&'static str> {
        self.compared(self)
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    }
}

/// A `[server.tls]` setting changed within a TLS section both configs have (TLS added or
/// removed is `server.tls` itself).
fn both_and_unequal<T: PartialEq>(old: &Option<T>, new: &Option<T>) -> bool {
    matches!((old, new), (Some(old), Some(new)) if old != new)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ops::reload::tests::BASE;

    /// A value unlike the base config's for each key, as environment overrides. A key of the
    /// struct missing here fails the test below.
    fn another_value(key: &str, certificate: &(String, String)) -> Vec<(String, String)> {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect()
        };
        let tls = [
            ("WXGATE_SERVER__TLS__CERT_FILE", certificate.0.as_str()),
            ("WXGATE_SERVER__TLS__KEY_FILE", certificate.1.as_str()),
        ];
        let with_tls = |extra: (&str, &str)| {
            let mut pairs = tls.to_vec();
            pairs.push(extra);
            env(&pairs)
        };
        match key {
            "server.listen" => env(&[("WXGATE_SERVER__LISTEN", "127.0.0.1:8181")]),
            "server.max_connections" => env(&[("WXGATE_SERVER__MAX_CONNECTIONS", "7")]),
            "server.header_read_timeout_ms" => {
                env(&[("WXGATE_SERVER__HEADER_READ_TIMEOUT_MS", "1234")])
            }
            "server.keepalive_timeout_ms" => {
                env(&[("WXGATE_SERVER__KEEPALIVE_TIMEOUT_MS", "1234")])
            }
            "server.workers" => env(&[("WXGATE_SERVER__WORKERS", "13")]),
            "server.shutdown_grace_secs" => env(&[("WXGATE_SERVER__SHUTDOWN_GRACE_SECS", "3")]),
            "server.max_header_bytes" => env(&[("WXGATE_SERVER__MAX_HEADER_BYTES", "65536")]),
            "server.http2" => env(&[("WXGATE_SERVER__HTTP2", "false")]),
            "server.h2c" => env(&[("WXGATE_SERVER__H2C", "true")]),
            "server.http2_max_concurrent_streams" => {
                env(&[("WXGATE_SERVER__HTTP2_MAX_CONCURRENT_STREAMS", "7")])
            }
            "server.redirect_http_listen" => {
                with_tls(("WXGATE_SERVER__REDIRECT_HTTP_LISTEN", "127.0.0.1:8180"))
            }
            "server.tls" => env(&tls),
            "server.tls.handshake_timeout_ms" => {
                with_tls(("WXGATE_SERVER__TLS__HANDSHAKE_TIMEOUT_MS", "1234"))
            }
            "server.tls.reload_interval_ms" => {
                with_tls(("WXGATE_SERVER__TLS__RELOAD_INTERVAL_MS", "1234"))
            }
            "admin.enabled" => env(&[("WXGATE_ADMIN__ENABLED", "false")]),
            "admin.listen" => env(&[("WXGATE_ADMIN__LISTEN", "127.0.0.1:9191")]),
            "wechat_api.listen" => env(&[("WXGATE_WECHAT_API__LISTEN", "127.0.0.1:9393")]),
            "wechat_api.max_in_flight" => env(&[("WXGATE_WECHAT_API__MAX_IN_FLIGHT", "3")]),
            "log.level" => env(&[("WXGATE_LOG__LEVEL", "debug")]),
            "log.format" => env(&[("WXGATE_LOG__FORMAT", "json")]),
            "session.ttl_secs" => env(&[("WXGATE_SESSION__TTL_SECS", "60")]),
            "session.max_entries" => env(&[("WXGATE_SESSION__MAX_ENTRIES", "7")]),
            "session.store" => env(&[("WXGATE_SESSION__STORE", "memory")]),
            "tracing" => env(&[("WXGATE_TRACING__SAMPLE_RATIO", "0.5")]),
            other => panic!("no other value for the restart-only key {other}: add one here"),
        }
    }

    /// Driven from the struct: each restart-only key in turn changed, alone (or, for the TLS
    /// settings, beside a TLS section the base config lacks), is named; nothing else changes.
    #[test]
    fn every_restart_only_setting_is_named_when_it_changes() {
        let dir = std::env::temp_dir().join(format!("wxgate-restart-only-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = crate::tls::dev::DevCa::new("restart-only test").unwrap();
        let issued = ca
            .issue(&["localhost".to_string()], crate::tls::dev::KeyType::Ecdsa)
            .unwrap();
        let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_file, issued.chain_pem).unwrap();
        std::fs::write(&key_file, issued.key_pem).unwrap();
        let certificate = (
            cert_file.display().to_string(),
            key_file.display().to_string(),
        );
        let load = |env: Vec<(String, String)>| Config::from_toml(BASE, env).unwrap();
        let base = RestartOnly::of(&load(Vec::new()));
        let with_tls = RestartOnly::of(&load(another_value("server.tls", &certificate)));
        assert!(base.changed_keys(&base).is_empty());
        for key in base.keys() {
            let changed = RestartOnly::of(&load(another_value(key, &certificate)));
            let mut named = base.changed_keys(&changed);
            if key.starts_with("server.tls.") || key == "server.redirect_http_listen" {
                // Compared with a config that has TLS too, only this setting differs.
                named = with_tls.changed_keys(&changed);
            }
            assert_eq!(named, [key], "changing {key}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
