//! Logging setup: tracing to the given writer, filtered by `RUST_LOG` or `[log] level`, as text
//! or JSON lines (`[log] format`).
//!
//! Deliberately no bridge from the `log` crate: dependencies that log through it (reqwest logs
//! whole request URLs at debug level, and the code2session URL carries the AppSecret) stay silent
//! at every level.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Checks a filter directive such as `info` or `wxgate=debug,hyper=warn`.
pub fn parse_filter(directives: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(directives).map_err(|error| format!("{directives:?}: {error}"))
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line, fields at the top level, for log collectors.
    Json,
}

/// Installs the global subscriber; `RUST_LOG`, when set, wins over `level`.
pub fn init<W>(level: &str, format: LogFormat, writer: W) -> Result<(), String>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_string());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(parse_filter(&directives)?)
        .with_writer(writer)
        .with_ansi(false);
    match format {
        LogFormat::Text => builder.try_init(),
        // The request span (its id) rides along on every line logged while answering.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    }
    .map_err(|error| error.to_string())
}
