//! Reading /metrics the way Prometheus would: through the Prometheus project's own Python client
//! parser (`tests/support/parse_metrics.py`), never with a hand-written one.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

const PARSER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/parse_metrics.py"
);

/// Whether the parser (python3 with prometheus_client) is installed; see `external::available`.
pub fn parser_available() -> bool {
    super::external::python_modules("prometheus_client.parser", "pip install prometheus-client")
}

/// Every sample of a scrape, as the parser read it.
pub struct Scrape {
    /// Metric family name -> type (counter, gauge, histogram...).
    pub families: serde_json::Map<String, serde_json::Value>,
    samples: Vec<(String, serde_json::Map<String, serde_json::Value>, f64)>,
}

impl Scrape {
    /// GETs /metrics from the admin listener at `admin` and parses it; panics if the parser
    /// refuses the text.
    pub async fn of(admin: SocketAddr) -> Scrape {
        let response = super::request(admin, "GET", "/metrics", &[], b"").await;
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        Scrape::parse(&response.text())
    }

    /// Parses exposition text.
    pub fn parse(text: &str) -> Scrape {
        let mut child = Command::new("python3")
            .arg(PARSER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run python3");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "the Prometheus parser refused /metrics: {}\n{text}",
            String::from_utf8_lossy(&output.stderr)
        );
        let parsed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let samples = parsed["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|sample| {
                (
                    sample[0].as_str().unwrap().to_string(),
                    sample[1].as_object().unwrap().clone(),
                    sample[2].as_f64().unwrap(),
                )
            })
            .collect();
        Scrape {
            families: parsed["families"].as_object().unwrap().clone(),
            samples,
        }
    }

    /// The value of the sample `name` with exactly `labels`; 0 when absent (a counter not yet
    /// touched).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .find(|(sample, sample_labels, _)| {
                sample == name
                    && sample_labels.len() == labels.len()
                    && labels.iter().all(|(key, value)| {
                        sample_labels.get(*key).and_then(|v| v.as_str()) == Some(value)
                    })
            })
            .map_or(0.0, |(_, _, value)| *value)
    }
}
