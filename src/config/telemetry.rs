//! `[tracing]`: OpenTelemetry spans posted to a collector (`otlp_endpoint`), how many requests
//! are traced (`sample_ratio`) and under which service name.

use serde::Deserialize;

use super::raw::{self, Flex};
use super::ConfigError;

/// `[tracing]`, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct TracingConfig {
    /// The collector's base URL; spans go to `<otlp_endpoint>/v1/traces`. `None`: tracing off.
    pub otlp_endpoint: Option<String>,
    /// The share of requests without a sampled parent that are traced (0 to 1).
    pub sample_ratio: f64,
    /// The `service.name` the spans are exported under.
    pub service_name: String,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: None,
            sample_ratio: 0.01,
            service_name: "wxgate".to_string(),
        }
    }
}

/// `[tracing]` as written.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawTracing {
    otlp_endpoint: Option<String>,
    sample_ratio: Option<Flex<f64>>,
    service_name: Option<String>,
}

impl RawTracing {
    pub(super) fn validate(&self) -> Result<TracingConfig, ConfigError> {
        let defaults = TracingConfig::default();
        let otlp_endpoint = match self.otlp_endpoint.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(url) => Some(endpoint(url)?),
        };
        let sample_ratio = raw::number(
            "tracing.sample_ratio",
            &self.sample_ratio,
            defaults.sample_ratio,
        )?;
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(ConfigError::new(
                "tracing.sample_ratio",
                "must be between 0 and 1",
            ));
        }
        let service_name = match self.service_name.as_deref().map(str::trim) {
            None => defaults.service_name,
            Some("") => {
                return Err(ConfigError::new(
                    "tracing.service_name",
                    "must not be empty",
                ))
            }
            Some(name) => name.to_string(),
        };
        Ok(TracingConfig {
            otlp_endpoint,
            sample_ratio,
            service_name,
        })
    }
}

/// `otlp_endpoint`: an http(s) URL with no credentials, query or fragment; without a trailing
/// slash.
fn endpoint(text: &str) -> Result<String, ConfigError> {
    let key = "tracing.otlp_endpoint";
    let url = reqwest::Url::parse(text)
        .map_err(|error| ConfigError::new(key, format!("{text:?} is not a URL: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::new(
            key,
            format!("{text:?} must be an http:// or https:// URL"),
        ));
    }
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(ConfigError::new(
            key,
            "must not carry credentials, a query or a fragment",
        ));
    }
    Ok(text.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use crate::config::minimal_with;

    #[test]
    fn tracing_is_off_by_default_and_parses() {
        let config = minimal_with("").unwrap();
        assert_eq!(config.tracing.otlp_endpoint, None);
        assert_eq!(config.tracing.sample_ratio, 0.01);
        let config = minimal_with(
            "[tracing]\notlp_endpoint = \"http://collector:4318/\"\nsample_ratio = 0.5\n\
             service_name = \"gw-east\"",
        )
        .unwrap();
        assert_eq!(
            config.tracing.otlp_endpoint.as_deref(),
            Some("http://collector:4318")
        );
        assert_eq!(config.tracing.sample_ratio, 0.5);
        assert_eq!(config.tracing.service_name, "gw-east");
    }

    #[test]
    fn bad_tracing_settings_are_refused_by_key() {
        for (lines, key) in [
            (
                "otlp_endpoint = \"collector:4318\"",
                "tracing.otlp_endpoint",
            ),
            (
                "otlp_endpoint = \"ftp://collector\"",
                "tracing.otlp_endpoint",
            ),
            (
                "otlp_endpoint = \"http://user:pw@collector\"",
                "tracing.otlp_endpoint",
            ),
            ("sample_ratio = 1.5", "tracing.sample_ratio"),
            ("sample_ratio = -0.1", "tracing.sample_ratio"),
            ("service_name = \" \"", "tracing.service_name"),
        ] {
            let error = minimal_with(&format!("[tracing]\n{lines}")).unwrap_err();
            assert_eq!(error.key, key, "{lines}: {error}");
        }
    }
}
