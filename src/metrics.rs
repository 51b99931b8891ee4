//! The gateway's Prometheus metrics, served as text (format 0.0.4) on the admin listener.
//!
//! One registry per gateway (not the process-global one), created at start and kept across config
//! reloads, so counters never go back. Label values are bounded: route prefixes from the config,
//! endpoint names, status codes, WeChat errcodes and fixed reason strings; never a path, an openid
//! or anything a client chose.

use std::cell::RefCell;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::per_thread::{FastMap, OwnerId, Stamped};

/// Latency buckets in seconds: 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

thread_local! {
    /// This thread's handles on the per-route metrics, by route label. Finding a label's metric
    /// in its family hashes the labels and takes a lock every thread shares, on every request;
    /// a handle is the metric itself. Bounded like the labels: routes and endpoint names.
    static ROUTE_HANDLES: RefCell<FastMap<Box<str>, Stamped<RouteHandles>>> =
        RefCell::new(FastMap::default());
}

/// One route's metrics, for one thread, each made when first used (a route label's series
/// appear in the export once something was counted in them); stamped with the [`Metrics`] they
/// belong to.
struct RouteHandles {
    request_duration: Option<Histogram>,
    upstream_duration: Option<Histogram>,
    /// The request counters by status, as statuses come.
    requests: Vec<(http::StatusCode, IntCounter)>,
}

impl RouteHandles {
    fn new() -> Self {
        RouteHandles {
            request_duration: None,
            upstream_duration: None,
            requests: Vec::new(),
        }
    }

    /// The counter of `route`'s requests answered with `status`.
    fn requests(
        &mut self,
        metrics: &Metrics,
        route: &str,
        status: http::StatusCode,
    ) -> &IntCounter {
        let index = match self.requests.iter().position(|(known, _)| *known == status) {
            Some(index) => index,
            None => {
                let counter = metrics
                    .requests
                    .with_label_values(&[route, status.as_str()]);
                self.requests.push((status, counter));
                self.requests.len() - 1
            }
        };
        &self.requests[index].1
    }
}

/// One upstream instance's metrics, resolved once per state (handles, not label lookups).
#[derive(Debug)]
pub(crate) struct InstanceMetrics {
    /// 1 while the instance takes requests, 0 while it is taken out.
    pub(crate) healthy: IntGauge,
    /// Requests it answered (counted for groups of more than one instance).
    pub(crate) answered: IntCounter,
    /// Requests no connection to it could be made for.
    pub(crate) connect_failed: IntCounter,
    /// Requests whose exchange failed after they were sent.
    pub(crate) failed: IntCounter,
    /// Requests it did not answer within the route's timeout.
    pub(crate) timed_out: IntCounter,
}

/// Every metric the gateway exports.
pub(crate) struct Metrics {
    /// Tells registries apart in the threads' [`RouteHandles`].
    id: OwnerId,
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    upstream_duration: HistogramVec,
    logins: IntCounterVec,
    wechat_duration: HistogramVec,
    wechat_retries: IntCounterVec,
    pub(crate) wechat_circuit_open: IntGauge,
    wechat_circuit_rejections: IntCounterVec,
    token_rejections: IntCounterVec,
    pub(crate) open_connections: IntGauge,
    pub(crate) idle_connections: IntGauge,
    pub(crate) connections: IntCounter,
    pub(crate) session_store_errors: IntCounter,
    rate_limited: IntCounterVec,
    config_reloads: IntCounterVec,
    upstream_instance_healthy: IntGaugeVec,
    upstream_instance_requests: IntCounterVec,
    wechat_api_calls: IntCounterVec,
    wechat_api_retries: IntCounterVec,
    /// The WeChat API paths counted so far under their own label (at most
    /// [`MAX_WECHAT_API_PATHS`]; any other is counted as `other`).
    wechat_api_paths: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// The most WeChat API paths the `[wechat_api]` metrics name: backends choose the paths, so the
/// label is bounded like every other.
const MAX_WECHAT_API_PATHS: usize = 100;

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub(crate) fn new() -> Self {
        let registry = Registry::new();
        let counters = |name: &str, help: &str, labels: &[&str]| {
            let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(vec.clone())).expect("unique");
            vec
        };
        let histograms = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
            let vec = HistogramVec::new(opts, labels).expect("valid metric");
            registry.register(Box::new(vec.clone())).expect("unique");
            vec
        };
        let gauge = |name: &str, help: &str| {
            let gauge = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(gauge.clone())).expect("unique");
            gauge
        };
        let counter = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(counter.clone()))
                .expect("unique");
            counter
        };
        Metrics {
            id: OwnerId::new(),
            requests: counters(
                "wxgate_http_requests_total",
                "Requests answered, by route (prefix or endpoint) and status.",
                &["route", "status"],
            ),
            request_duration: histograms(
                "wxgate_http_request_duration_seconds",
                "Time to answer a request (until the response head), by route.",
                &["route"],
            ),
            upstream_duration: histograms(
                "wxgate_upstream_duration_seconds",
                "Time an upstream took to send its response head, by route.",
                &["route"],
            ),
            logins: counters(
                "wxgate_logins_total",
                "Logins by outcome (success or the error code) and WeChat errcode (0: success, none: WeChat not asked or no answer).",
                &["outcome", "errcode"],
            ),
            wechat_duration: histograms(
                "wxgate_wechat_request_duration_seconds",
                "Time of each WeChat API call (each attempt), by API.",
                &["api"],
            ),
            wechat_retries: counters(
                "wxgate_wechat_retries_total",
                "WeChat calls retried after errcode -1 or a connection error, by API.",
                &["api"],
            ),
            wechat_circuit_open: gauge(
                "wxgate_wechat_circuit_open",
                "1 while the WeChat circuit breaker is open or probing, 0 when closed.",
            ),
            wechat_circuit_rejections: counters(
                "wxgate_wechat_circuit_rejections_total",
                "WeChat calls answered 503 at once because the circuit breaker was open, by API.",
                &["api"],
            ),
            token_rejections: counters(
                "wxgate_token_rejections_total",
                "Requests refused for their bearer token, by reason.",
                &["reason"],
            ),
            open_connections: gauge(
                "wxgate_open_connections",
                "Client connections currently open on the public listener.",
            ),
            idle_connections: gauge(
                "wxgate_idle_connections",
                "Open HTTP/1.1 connections waiting for their next request (parked: no HTTP buffers held).",
            ),
            connections: counter(
                "wxgate_connections_total",
                "Client connections accepted on the public listener.",
            ),
            session_store_errors: counter(
                "wxgate_session_store_errors_total",
                "Session store operations that failed (unreachable, timed out, unreadable).",
            ),
            rate_limited: counters(
                "wxgate_rate_limited_total",
                "Requests refused with 429 by a gateway rate limit, by limit (login_ip or the route).",
                &["limit"],
            ),
            config_reloads: counters(
                "wxgate_config_reloads_total",
                "Config reloads, by result (applied or refused).",
                &["result"],
            ),
            upstream_instance_healthy: {
                let opts = Opts::new(
                    "wxgate_upstream_instance_healthy",
                    "1 while an upstream instance takes requests, 0 while it is taken out, by route and instance.",
                );
                let vec = IntGaugeVec::new(opts, &["route", "instance"]).expect("valid metric");
                registry.register(Box::new(vec.clone())).expect("unique");
                vec
            },
            upstream_instance_requests: counters(
                "wxgate_upstream_instance_requests_total",
                "Requests sent to an upstream instance, by route, instance and outcome (answered: routes with several instances only; connect_failed, failed, timed_out).",
                &["route", "instance", "outcome"],
            ),
            wechat_api_calls: counters(
                "wxgate_wechat_api_calls_total",
                "Backend calls through the [wechat_api] listener, by app, WeChat path (the first 100 seen; then other) and errcode (0: success, none: not JSON or not read).",
                &["app", "path", "errcode"],
            ),
            wechat_api_retries: counters(
                "wxgate_wechat_api_retries_total",
                "[wechat_api] calls sent again after WeChat called the access_token stale, by app and WeChat path.",
                &["app", "path"],
            ),
            wechat_api_paths: std::sync::Mutex::default(),
            registry,
        }
    }

    /// Counts an answered request and its latency.
    pub(crate) fn observe_request(&self, route: &str, status: http::StatusCode, took: Duration) {
        self.with_route(route, |handles| {
            handles.requests(self, route, status).inc();
            handles
                .request_duration
                .get_or_insert_with(|| self.request_duration.with_label_values(&[route]))
                .observe(took.as_secs_f64());
        });
    }

    /// Records how long an upstream took to answer.
    pub(crate) fn observe_upstream(&self, route: &str, took: Duration) {
        self.with_route(route, |handles| {
            handles
                .upstream_duration
                .get_or_insert_with(|| self.upstream_duration.with_label_values(&[route]))
                .observe(took.as_secs_f64());
        });
    }

    /// `f` with this thread's handles on `route`'s metrics, made on first use.
    fn with_route(&self, route: &str, f: impl FnOnce(&mut RouteHandles)) {
        ROUTE_HANDLES.with_borrow_mut(|handles| {
            match handles
                .get_mut(route)
                .and_then(|known| known.get_mut(self.id))
            {
                Some(known) => f(known),
                None => {
                    let mut made = RouteHandles::new();
                    f(&mut made);
                    handles.insert(route.into(), Stamped::new(self.id, made));
                }
            }
        });
    }

    /// The metrics of a route's upstream instance (`instance`: its host and port).
    pub(crate) fn upstream_instance(&self, route: &str, instance: &str) -> InstanceMetrics {
        let requests = |outcome| {
            self.upstream_instance_requests
                .with_label_values(&[route, instance, outcome])
        };
        InstanceMetrics {
            healthy: self
                .upstream_instance_healthy
                .with_label_values(&[route, instance]),
            answered: requests("answered"),
            connect_failed: requests("connect_failed"),
            failed: requests("failed"),
            timed_out: requests("timed_out"),
        }
    }

    /// Counts a login by outcome and WeChat errcode.
    pub(crate) fn count_login(&self, outcome: &str, errcode: Option<i64>) {
        let errcode = errcode.map_or_else(|| "none".to_string(), |code| code.to_string());
        self.logins.with_label_values(&[outcome, &errcode]).inc();
    }

    /// Records one WeChat API call attempt.
    pub(crate) fn observe_wechat(&self, api: &str, took: Duration) {
        self.wechat_duration
            .with_label_values(&[api])
            .observe(took.as_secs_f64());
    }

    /// Counts a backend's call through the `[wechat_api]` listener.
    pub(crate) fn count_wechat_api_call(&self, app: &str, path: &str, errcode: Option<i64>) {
        let path = self.wechat_api_path_label(path);
        let errcode = errcode.map_or_else(|| "none".to_string(), |code| code.to_string());
        self.wechat_api_calls
            .with_label_values(&[app, &path, &errcode])
            .inc();
    }

    /// Counts a `[wechat_api]` call sent again with a fresh access_token.
    pub(crate) fn count_wechat_api_retry(&self, app: &str, path: &str) {
        let path = self.wechat_api_path_label(path);
        self.wechat_api_retries
            .with_label_values(&[app, &path])
            .inc();
    }

    /// `path` as a label value while fewer than [`MAX_WECHAT_API_PATHS`] are named, `other` after.
    fn wechat_api_path_label(&self, path: &str) -> String {
        let plain = path
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'/' | b'-' | b'.'));
        let Ok(mut known) = self.wechat_api_paths.lock() else {
            return "other".to_string();
        };
        if plain && (known.contains(path) || known.len() < MAX_WECHAT_API_PATHS) {
            known.insert(path.to_string());
            path.to_string()
        } else {
            "other".to_string()
        }
    }

    /// Counts a retried WeChat call.
    pub(crate) fn count_wechat_retry(&self, api: &str) {
        self.wechat_retries.with_label_values(&[api]).inc();
    }

    /// Counts a WeChat call refused by the open circuit.
    pub(crate) fn count_circuit_rejection(&self, api: &str) {
        self.wechat_circuit_rejections
            .with_label_values(&[api])
            .inc();
    }

    /// Counts a refused bearer token.
    pub(crate) fn count_token_rejection(&self, reason: &str) {
        self.token_rejections.with_label_values(&[reason]).inc();
    }

    /// Counts a request refused by a rate limit.
    pub(crate) fn count_rate_limited(&self, limit: &str) {
        self.rate_limited.with_label_values(&[limit]).inc();
    }

    /// Counts a config reload attempt.
    pub(crate) fn count_reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "refused" };
        self.config_reloads.with_label_values(&[result]).inc();
    }

    /// Everything, in the Prometheus text format.
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut buffer = Vec::new();
        // Encoding into a Vec only fails for invalid metric families, which `new` cannot make.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "metrics could not be encoded");
        }
        buffer
    }
}

/// The Content-Type of [`Metrics::render`]'s output.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_their_labels() {
        let metrics = Metrics::new();
        metrics.observe_request("/api", http::StatusCode::OK, Duration::from_millis(3));
        metrics.count_login("invalid_code", Some(40029));
        metrics.count_login("success", Some(0));
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(text.contains(r#"wxgate_http_requests_total{route="/api",status="200"} 1"#));
        assert!(text.contains(r#"wxgate_logins_total{errcode="40029",outcome="invalid_code"} 1"#));
        assert!(text.contains("# TYPE wxgate_http_request_duration_seconds histogram"));
        assert!(text.contains("wxgate_open_connections 0"));
    }

    #[test]
    fn each_registry_counts_its_own_requests_on_one_thread() {
        let (first, second) = (Metrics::new(), Metrics::new());
        for _ in 0..3 {
            first.observe_request("/api", http::StatusCode::OK, Duration::from_millis(1));
        }
        second.observe_request("/api", http::StatusCode::OK, Duration::from_millis(1));
        second.observe_request(
            "/api",
            http::StatusCode::NOT_FOUND,
            Duration::from_millis(1),
        );
        first.observe_upstream("/api", Duration::from_millis(1));
        let text = |metrics: &Metrics| String::from_utf8(metrics.render()).unwrap();
        let (first, second) = (text(&first), text(&second));
        assert!(first.contains(r#"wxgate_http_requests_total{route="/api",status="200"} 3"#));
        assert!(!first.contains(r#"status="404""#));
        assert!(first.contains(r#"wxgate_upstream_duration_seconds_count{route="/api"} 1"#));
        assert!(second.contains(r#"wxgate_http_requests_total{route="/api",status="200"} 1"#));
        assert!(second.contains(r#"wxgate_http_requests_total{route="/api",status="404"} 1"#));
        assert!(second.contains(r#"wxgate_http_request_duration_seconds_count{route="/api"} 2"#));
        assert!(!second.contains("wxgate_upstream_duration_seconds_count"));
    }
}
