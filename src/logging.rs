//! Logging setup: tracing to the given writer, filtered by `RUST_LOG` or `[log] level`.
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

/// Installs the global subscriber; `RUST_LOG`, when set, wins over `level`.
pub fn init<W>(level: &str, writer: W) -> Result<(), String>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_string());
    tracing_subscriber::fmt()
        .with_env_filter(parse_filter(&directives)?)
        .with_writer(writer)
        .with_ansi(false)
        .try_init()
        .map_err(|error| error.to_string())
}
