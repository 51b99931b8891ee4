//! The resolved configuration as TOML for `wxgate check`: every default filled in, every secret
//! replaced by `<redacted>`.

use std::time::Duration;

use toml::{Table, Value};

use super::Config;

const REDACTED: &str = "<redacted>";

/// Renders the whole configuration; secrets never leave as anything but `<redacted>`.
pub(crate) fn redacted_toml(config: &Config) -> String {
    let mut root = Table::new();
    root.insert(
        "server".into(),
        table([
            ("listen", text(config.server.listen)),
            ("max_body_bytes", int(config.server.max_body_bytes)),
            ("max_connections", int(config.server.max_connections)),
            (
                "header_read_timeout_ms",
                ms(config.server.header_read_timeout),
            ),
            (
                "shutdown_grace_secs",
                int(config.server.shutdown_grace.as_secs()),
            ),
        ]),
    );
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
        ]),
    );
    root.insert(
        "wechat".into(),
        table([
            ("appid", text(&config.wechat.appid)),
            ("secret", text(REDACTED)),
            ("api_base", text(&config.wechat.api_base)),
            ("timeout_ms", ms(config.wechat.timeout)),
        ]),
    );
    let jwt = &config.jwt;
    let mut jwt_table = table([
        ("algorithm", text(format!("{:?}", jwt.algorithm))),
        ("issuer", text(&jwt.issuer)),
        ("ttl_secs", int(jwt.ttl_secs)),
        ("leeway_secs", int(jwt.leeway_secs)),
    ]);
    if let Value::Table(jwt_table) = &mut jwt_table {
        match &jwt.private_key_file {
            Some(file) => jwt_table.insert("private_key_file".into(), text(file.display())),
            None => jwt_table.insert("secret".into(), text(REDACTED)),
        };
        if let Some(audience) = &jwt.audience {
            jwt_table.insert("audience".into(), text(audience));
        }
    }
    root.insert("jwt".into(), jwt_table);
    root.insert("login".into(), table([("path", text(&config.login.path))]));
    root.insert(
        "session".into(),
        table([
            ("ttl_secs", int(config.session.ttl.as_secs())),
            ("max_entries", int(config.session.max_entries)),
        ]),
    );
    root.insert("log".into(), table([("level", text(&config.log.level))]));
    let routes = config
        .routes
        .iter()
        .map(|route| {
            let upstream = &route.upstream;
            table([
                ("prefix", text(&route.prefix)),
                (
                    "upstream",
                    text(format!(
                        "{}://{}{}",
                        upstream.scheme, upstream.authority, upstream.base_path
                    )),
                ),
                ("auth", text(route.auth.as_str())),
                ("strip_prefix", Value::Boolean(route.strip_prefix)),
                ("preserve_host", Value::Boolean(route.preserve_host)),
                ("timeout_ms", ms(route.timeout)),
            ])
        })
        .collect();
    root.insert("routes".into(), Value::Array(routes));
    toml::to_string_pretty(&root).unwrap_or_else(|error| format!("# cannot render: {error}\n"))
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
