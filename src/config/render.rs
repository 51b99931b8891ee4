//! The resolved configuration as TOML for `wxgate check`: every default filled in, every secret
//! replaced by `<redacted>`.

use std::time::Duration;

use toml::{Table, Value};

use super::Config;

const REDACTED: &str = "<redacted>";

/// Renders the whole configuration; secrets never leave as anything but `<redacted>`.
pub(crate) fn redacted_toml(config: &Config) -> String {
    let mut root = Table::new();
    root.insert("server".into(), server_table(config));
    root.insert(
        "upstream".into(),
        table([
            ("connect_timeout_ms", ms(config.upstream.connect_timeout)),
            ("timeout_ms", ms(config.upstream.timeout)),
            (
                "pool_idle_timeout_secs",
                int(config.upstream.pool_idle_timeout.as_secs()),
            ),
            (
                "pool_max_idle_per_host",
                int(config.upstream.pool_max_idle_per_host),
            ),
            ("max_in_flight", int(config.upstream.max_in_flight)),
        ]),
    );
    let wechat = &config.wechat;
    let mut wechat_table = Table::new();
    wechat_table.insert("appid".into(), text(&wechat.default_app().appid));
    wechat_table.insert("secret".into(), text(REDACTED));
    wechat_table.insert("api_base".into(), text(&wechat.api_base));
    wechat_table.insert("timeout_ms".into(), ms(wechat.timeout));
    wechat_table.insert("retry_backoff_ms".into(), ms(wechat.retry_backoff));
    wechat_table.insert("breaker_threshold".into(), int(wechat.breaker_threshold));
    wechat_table.insert("breaker_open_ms".into(), ms(wechat.breaker_open));
    if let Some(push) = &wechat.default_app().push {
        wechat_table.insert("push".into(), push_table(push));
    }
    // WeChat apps on [wechat]'s API base are [wechat.apps.NAME]; every other app is [apps.NAME].
    let on_wechat = |app: &&super::WeChatApp| {
        app.platform == super::Platform::WeChat && app.api_base == wechat.api_base
    };
    let others: Table = wechat.apps[1..]
        .iter()
        .filter(|app| !on_wechat(app))
        .map(|app| {
            let mut entry = table([
                ("platform", text(app.platform.name())),
                ("appid", text(&app.appid)),
                ("api_base", text(&app.api_base)),
            ]);
            if let Value::Table(entry) = &mut entry {
                match &app.alipay {
                    Some(alipay) => {
                        let file = |path: &std::path::Path| text(path.display());
                        entry.insert("private_key_file".into(), file(&alipay.private_key_file));
                        let public = file(&alipay.alipay_public_key_file);
                        entry.insert("alipay_public_key_file".into(), public);
                        if alipay.aes_key.is_some() {
                            entry.insert("aes_key".into(), text(REDACTED));
                        }
                    }
                    None => {
                        entry.insert("secret".into(), text(REDACTED));
                    }
                }
                if let Some(baidu) = &app.baidu {
                    entry.insert("openapi_base".into(), text(&baidu.openapi_base));
                    entry.insert("fetch_unionid".into(), Value::Boolean(baidu.fetch_unionid));
                }
                if let Some(push) = &app.push {
                    entry.insert("push".into(), push_table(push));
                }
            }
            (app.name.clone(), entry)
        })
        .collect();
    let apps: Table = wechat.apps[1..]
        .iter()
        .filter(on_wechat)
        .map(|app| {
            let mut entry = table([("appid", text(&app.appid)), ("secret", text(REDACTED))]);
            if let (Some(push), Value::Table(entry)) = (&app.push, &mut entry) {
                entry.insert("push".into(), push_table(push));
            }
            (app.name.clone(), entry)
        })
        .collect();
    wechat_table.insert("apps".into(), Value::Table(apps));
    root.insert("wechat".into(), Value::Table(wechat_table));
    if !others.is_empty() {
        root.insert("apps".into(), Value::Table(others));
    }
    let jwt = &config.jwt;
    let mut jwt_table = table([
        ("algorithm", text(format!("{:?}", jwt.algorithm))),
        ("issuer", text(&jwt.issuer)),
        ("ttl_secs", int(jwt.ttl_secs)),
        ("leeway_secs", int(jwt.leeway_secs)),
    ]);
    if let Value::Table(jwt_table) = &mut jwt_table {
        let (field, value) = key_source(&jwt.signing.source);
        jwt_table.insert(field.into(), value);
        if let Some(audience) = &jwt.audience {
            jwt_table.insert("audience".into(), text(audience));
        }
        if let Some(kid) = &jwt.signing.kid {
            jwt_table.insert("kid".into(), text(kid));
        }
        jwt_table.insert("refresh_window_secs".into(), int(jwt.refresh_window_secs));
        let verify_keys = jwt.verify_keys.iter().map(verify_key).collect();
        jwt_table.insert("verify_keys".into(), Value::Array(verify_keys));
    }
    root.insert("jwt".into(), jwt_table);
    let login = &config.login;
    root.insert(
        "login".into(),
        table([
            ("path", text(&login.path)),
            ("refresh_path", text(&login.refresh_path)),
            ("logout_path", text(&login.logout_path)),
            ("rate_limit", rate_limit(login.rate_limit)),
            ("refresh_rate_limit", rate_limit(login.refresh_rate_limit)),
        ]),
    );
    root.insert("session".into(), session_table(&config.session));
    let format = match config.log.format {
        super::LogFormat::Text => "text",
        super::LogFormat::Json => "json",
    };
    root.insert(
        "log".into(),
        table([("level", text(&config.log.level)), ("format", text(format))]),
    );
    root.insert(
        "admin".into(),
        table([
            ("enabled", Value::Boolean(config.admin.enabled)),
            ("listen", text(config.admin.listen)),
        ]),
    );
    root.insert("wechat_api".into(), wechat_api_table(&config.wechat_api));
    root.insert(
        "reload".into(),
        table([
            ("watch", Value::Boolean(config.reload.watch)),
            ("interval_ms", ms(config.reload.interval)),
        ]),
    );
    let mut websocket = Table::new();
    if let Some(param) = &config.websocket.token_query_param {
        websocket.insert("token_query_param".into(), text(param));
    }
    websocket.insert(
        "idle_timeout_secs".into(),
        int(config.websocket.idle_timeout.as_secs()),
    );
    root.insert("websocket".into(), Value::Table(websocket));
    let mut tracing = Table::new();
    if let Some(endpoint) = &config.tracing.otlp_endpoint {
        tracing.insert("otlp_endpoint".into(), text(endpoint));
    }
    tracing.insert(
        "sample_ratio".into(),
        Value::Float(config.tracing.sample_ratio),
    );
    tracing.insert("service_name".into(), text(&config.tracing.service_name));
    root.insert("tracing".into(), Value::Table(tracing));
    root.insert(
        "forward_auth".into(),
        table([
            ("enabled", Value::Boolean(config.forward_auth.enabled)),
            ("path", text(&config.forward_auth.path)),
        ]),
    );
    let routes = config
        .routes
        .iter()
        .map(|route| {
            let mut entry = Table::new();
            entry.insert("prefix".into(), text(&route.prefix));
            if let Some(upstream) = &route.upstream {
                upstream_group(&mut entry, upstream);
            }
            entry.insert("auth".into(), text(route.auth.as_str()));
            entry.insert("strip_prefix".into(), Value::Boolean(route.strip_prefix));
            entry.insert("preserve_host".into(), Value::Boolean(route.preserve_host));
            entry.insert("timeout_ms".into(), ms(route.timeout));
            if route.rate_limit.is_some() {
                entry.insert("rate_limit".into(), rate_limit(route.rate_limit));
            }
            if let Some(appids) = &route.apps {
                let names = config
                    .wechat
                    .apps
                    .iter()
                    .filter(|app| appids.contains(&app.appid))
                    .map(|app| text(&app.name))
                    .collect();
                entry.insert("apps".into(), Value::Array(names));
            }
            Value::Table(entry)
        })
        .collect();
    root.insert("routes".into(), Value::Array(routes));
    toml::to_string_pretty(&root).unwrap_or_else(|error| format!("# cannot render: {error}\n"))
}

/// A rate limit; `per_minute = 0` for none.
fn rate_limit(limit: Option<super::RateLimit>) -> Value {
    match limit {
        Some(limit) => {
            let mut entries = Table::new();
            entries.insert("per_minute".into(), int(limit.per_minute));
            entries.insert("burst".into(), int(limit.burst));
            if let super::LimitScope::Fleet(fallback) = limit.scope {
                let fallback = match fallback {
                    super::FleetFallback::Local => "local",
                    super::FleetFallback::Refuse => "refuse",
                };
                entries.insert("scope".into(), text("fleet"));
                entries.insert("on_store_error".into(), text(fallback));
            }
            Value::Table(entries)
        }
        None => table([("per_minute", int(0))]),
    }
}

fn table<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Table(
        entries
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect(),
    )
}

fn text(value: impl std::fmt::Display) -> Value {
    Value::String(value.to_string())
}

fn int(value: impl TryInto<i64>) -> Value {
    Value::Integer(value.try_into().unwrap_or(i64::MAX))
}

fn ms(duration: Duration) -> Value {
    int(duration.as_millis())
}

/// `[server]`, with `[server.tls]` when configured.
fn server_table(config: &Config) -> Value {
    let server = &config.server;
    let mut entries = Table::new();
    entries.insert("listen".into(), text(server.listen));
    entries.insert("max_body_bytes".into(), int(server.max_body_bytes));
    entries.insert("max_connections".into(), int(server.max_connections));
    entries.insert(
        "header_read_timeout_ms".into(),
        ms(server.header_read_timeout),
    );
    entries.insert("body_read_timeout_ms".into(), ms(server.body_read_timeout));
    entries.insert(
        "http2_max_concurrent_streams".into(),
        int(server.http2_max_concurrent_streams),
    );
    entries.insert(
        "endpoint_max_in_flight".into(),
        int(server.endpoint_max_in_flight),
    );
    entries.insert("keepalive_timeout_ms".into(), ms(server.keepalive_timeout));
    entries.insert("workers".into(), int(server.workers));
    entries.insert(
        "shutdown_grace_secs".into(),
        int(server.shutdown_grace.as_secs()),
    );
    entries.insert("max_header_bytes".into(), int(server.max_header_bytes));
    entries.insert("http2".into(), Value::Boolean(server.http2));
    entries.insert("h2c".into(), Value::Boolean(server.h2c));
    if let Some(address) = server.redirect_http_listen {
        entries.insert("redirect_http_listen".into(), text(address));
    }
    let trusted = server.trusted_proxies.networks().map(text).collect();
    entries.insert("trusted_proxies".into(), Value::Array(trusted));
    if let Some(tls) = &server.tls {
        let mut tls_entries = Table::new();
        if let Some((default, extra)) = tls.certificates.split_first() {
            tls_entries.insert("cert_file".into(), text(default.cert_file.display()));
            tls_entries.insert("key_file".into(), text(default.key_file.display()));
            let extra = extra.iter().map(|files| {
                table([
                    ("cert_file", text(files.cert_file.display())),
                    ("key_file", text(files.key_file.display())),
                ])
            });
            tls_entries.insert("certificates".into(), Value::Array(extra.collect()));
        }
        tls_entries.insert("handshake_timeout_ms".into(), ms(tls.handshake_timeout));
        tls_entries.insert("reload_interval_ms".into(), ms(tls.reload_interval));
        entries.insert("tls".into(), Value::Table(tls_entries));
    }
    Value::Table(entries)
}

/// One `[[jwt.verify_keys]]` entry, its secret hidden; the kid when configured (`wxgate check`
/// shows the derived ones after loading the keys).
fn verify_key(key: &super::JwtKeyInfo) -> Value {
    let (field, value) = key_source(&key.source);
    let mut entry = table([
        ("algorithm", text(format!("{:?}", key.algorithm))),
        (field, value),
    ]);
    if let (Value::Table(entry), Some(kid)) = (&mut entry, &key.kid) {
        entry.insert("kid".into(), text(kid));
    }
    entry
}

/// Where a key is, a secret hidden.
fn key_source(source: &super::KeySource) -> (&'static str, Value) {
    let value = match source {
        super::KeySource::Secret(_) => text(REDACTED),
        super::KeySource::PrivateKeyFile(file) | super::KeySource::PublicKeyFile(file) => {
            text(file.display())
        }
    };
    (source.field(), value)
}

/// `[session]`; the Redis URL is redacted whole (it may carry a password).
fn session_table(session: &super::SessionConfig) -> Value {
    let mut entries = Table::new();
    entries.insert("ttl_secs".into(), int(session.ttl.as_secs()));
    entries.insert("max_entries".into(), int(session.max_entries));
    let policy = match session.on_store_error {
        super::StoreErrorPolicy::Refuse => "refuse",
        super::StoreErrorPolicy::Signature => "signature",
    };
    entries.insert("on_store_error".into(), text(policy));
    match &session.store {
        super::StoreKind::Redis(redis) => {
            entries.insert("store".into(), text("redis"));
            redis_target(&mut entries, redis);
            entries.insert("redis_key_prefix".into(), text(&redis.key_prefix));
            entries.insert("redis_timeout_ms".into(), ms(redis.timeout));
        }
        super::StoreKind::Embedded { path } => {
            entries.insert("store".into(), text("embedded"));
            entries.insert("path".into(), text(path.display()));
        }
        super::StoreKind::Memory => {
            entries.insert("store".into(), text("memory"));
        }
    }
    Value::Table(entries)
}

fn wechat_api_table(api: &super::WeChatApiConfig) -> Value {
    let mut entries = Table::new();
    if let Some(listen) = api.listen {
        entries.insert("listen".into(), text(listen));
    }
    let allow = api.allow.networks().map(text).collect();
    entries.insert("allow".into(), Value::Array(allow));
    entries.insert("max_retry_body_bytes".into(), int(api.max_retry_body_bytes));
    entries.insert("max_body_bytes".into(), int(api.max_body_bytes));
    entries.insert("timeout_ms".into(), ms(api.timeout));
    entries.insert("max_in_flight".into(), int(api.max_in_flight));
    Value::Table(entries)
}

fn push_table(push: &super::PushConfig) -> Value {
    let mode = match push.mode {
        super::PushMode::Safe => "safe",
        super::PushMode::Compatible => "compatible",
        super::PushMode::Plain => "plain",
    };
    let format = match push.format {
        super::PushFormat::Json => "json",
        super::PushFormat::Xml => "xml",
    };
    let mut entries = Table::new();
    entries.insert("path".into(), text(&push.path));
    entries.insert("token".into(), text(REDACTED));
    if push.aes_key.is_some() {
        entries.insert("encoding_aes_key".into(), text(REDACTED));
    }
    entries.insert("mode".into(), text(mode));
    entries.insert("format".into(), text(format));
    entries.insert("upstream".into(), text(&push.upstream));
    entries.insert("timeout_ms".into(), ms(push.timeout));
    entries.insert("max_age_secs".into(), int(push.max_age.as_secs()));
    Value::Table(entries)
}

/// A route's `upstream` (a URL, or a list for several instances), `ca_file`, `balance` and
/// `[routes.health]`.
fn upstream_group(entry: &mut Table, upstream: &crate::config::UpstreamGroupConfig) {
    let mut urls = upstream.instances.iter().map(|authority| {
        text(format!(
            "{}://{authority}{}",
            upstream.scheme, upstream.base_path
        ))
    });
    let value = match upstream.instances.len() {
        1 => urls.next().unwrap_or_else(|| text("")),
        _ => Value::Array(urls.collect()),
    };
    entry.insert("upstream".into(), value);
    if let Some(ca_file) = &upstream.ca_file {
        entry.insert("ca_file".into(), text(ca_file.display()));
    }
    entry.insert("balance".into(), text(upstream.balance.as_str()));
    let health = &upstream.health;
    let mut table = Table::new();
    table.insert(
        "unhealthy_after".into(),
        Value::Integer(i64::from(health.unhealthy_after)),
    );
    table.insert("retry_after_ms".into(), ms(health.retry_after));
    if let Some(path) = &health.path {
        table.insert("path".into(), text(path));
        table.insert("interval_ms".into(), ms(health.interval));
        table.insert("timeout_ms".into(), ms(health.timeout));
    }
    entry.insert("health".into(), Value::Table(table));
}

/// Where the Redis store is, secrets redacted (the URL whole: it may carry a password).
fn redis_target(entries: &mut Table, redis: &super::RedisConfig) {
    match &redis.target {
        super::RedisTarget::Url(_) => {
            entries.insert("redis_url".into(), text(REDACTED));
        }
        super::RedisTarget::Sentinel {
            sentinels,
            master,
            password,
        } => {
            let list = sentinels
                .iter()
                .map(|(host, port)| text(format!("{host}:{port}")))
                .collect();
            entries.insert("redis_sentinels".into(), Value::Array(list));
            entries.insert("redis_sentinel_master".into(), text(master));
            entries.insert("redis_tls".into(), Value::Boolean(redis.tls.is_some()));
            if password.is_some() {
                entries.insert("redis_sentinel_password".into(), text(REDACTED));
            }
        }
    }
    if redis.password.is_some() {
        entries.insert("redis_password".into(), text(REDACTED));
    }
    if let Some(tls) = &redis.tls {
        if let Some(ca_file) = &tls.ca_file {
            entries.insert("redis_ca_file".into(), text(ca_file.display()));
        }
        if let Some((cert, key)) = &tls.client_cert {
            entries.insert("redis_client_cert_file".into(), text(cert.display()));
            entries.insert("redis_client_key_file".into(), text(key.display()));
        }
    }
}
