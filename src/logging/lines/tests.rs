//! The log lines against tracing-subscriber's own, and the request scope.

use super::*;
use crate::logging::captured::Captured;
use crate::logging::request_line::REQUEST_LINE_TARGET;
use std::pin::pin;
use std::task::Waker;

/// The request line and two warnings, one while a request is answered, as logged by
/// `subscriber` into `captured`.
fn log_sample(subscriber: impl Subscriber + Send + Sync + 'static) {
    tracing::subscriber::with_default(subscriber, || {
        let id = RequestId::for_request(&crate::http::headers::tests::headers(&[(
            "x-request-id",
            "req-7",
        )]));
        poll_once(in_request(id, None, async {
            tracing::warn!(error = "refused", "upstream unreachable");
        }));
        tracing::info!(
            target: REQUEST_LINE_TARGET,
            request_id = "req-7",
            method = %http::Method::GET,
            path = ?"/api/\"q\"",
            status = 502_u16,
            latency_ms = 1.0,
            openid = "o-1",
            "request"
        );
        tracing::warn!("outside");
    });
}

/// The sample's lines as the gateway's subscriber writes them in `format`.
fn ours(format: LogFormat) -> Vec<String> {
    let captured = Captured::default();
    let writer = captured.clone();
    log_sample(subscriber(EnvFilter::new("info"), format, move || {
        writer.clone()
    }));
    captured.lines()
}

/// The sample's lines as a tracing-subscriber subscriber `build` makes around a writer writes them.
fn theirs<S: Subscriber + Send + Sync + 'static>(build: impl FnOnce(Captured) -> S) -> Vec<String> {
    let captured = Captured::default();
    log_sample(build(captured.clone()));
    captured.lines()
}

#[test]
fn lines_are_tracing_subscribers_with_the_request_shown_as_its_span_was() {
    let ours = ours(LogFormat::Text);
    let theirs = theirs(|writer| {
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish()
    });
    assert_eq!(
        ours[0],
        r#"  WARN request{id="req-7"}: wxgate::logging::lines::tests: upstream unreachable error="refused""#
    );
    assert_eq!(ours[0].replace(r#"request{id="req-7"}: "#, ""), theirs[0]);
    assert_eq!(ours[1..], theirs[1..]);
    assert!(ours[1].ends_with(r#"path="/api/\"q\"" status=502 latency_ms=1.0 openid="o-1""#));
}

#[test]
fn json_lines_are_tracing_subscribers_with_the_request_as_its_span_was() {
    let ours = ours(LogFormat::Json);
    let theirs = theirs(|writer| {
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .finish()
    });
    assert_eq!(
        ours[0],
        theirs[0].replace('}', r#","span":{"id":"req-7","name":"request"}}"#)
    );
    assert_eq!(ours[1..], theirs[1..]);
}

/// The future's output if it completes on its first poll.
fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

#[test]
fn dates_are_the_proleptic_gregorian_calendar() {
    assert_eq!(civil_date(0), (1970, 1, 1));
    assert_eq!(civil_date(59), (1970, 3, 1));
    assert_eq!(civil_date(11_016), (2000, 2, 29));
    assert_eq!(civil_date(20_779), (2026, 11, 22));
    assert_eq!(civil_date(2_932_896), (9999, 12, 31));
}

#[test]
fn a_second_is_written_as_tracing_subscriber_writes_it() {
    let mut text = String::new();
    write_second(&mut text, 1_795_312_434).unwrap();
    assert_eq!(text, "2026-11-22T01:53:54.");
}

#[test]
fn timestamps_match_tracing_subscriber_to_the_second() {
    let stamp = |clock: &dyn FormatTime| {
        let mut text = String::new();
        clock.format_time(&mut Writer::new(&mut text)).unwrap();
        text
    };
    // Three tries: a second may turn between the two readings.
    let agree = (0..3).any(|_| {
        let ours = stamp(&Clock);
        let theirs = stamp(&tracing_subscriber::fmt::time::SystemTime);
        assert_eq!(ours.len(), theirs.len(), "{ours} vs {theirs}");
        ours[..20] == theirs[..20]
    });
    assert!(agree);
}

#[test]
fn the_request_is_current_only_while_its_future_is_polled() {
    let id = RequestId::for_request(&crate::http::headers::tests::headers(&[(
        "x-request-id",
        "req-7",
    )]));
    let seen = poll_once(in_request(id, None, async {
        with_current_request(|id| id.map(str::to_owned))
    }));
    assert_eq!(seen, Some(Some("req-7".to_owned())));
    assert_eq!(with_current_request(|id| id.map(str::to_owned)), None);
}

#[test]
fn quoted_strings_are_their_debug_form() {
    for text in [
        "/api/hello",
        "",
        "a\"b",
        "back\\slash",
        "tab\there",
        "é",
        "\u{1b}[31m",
        "~ !",
    ] {
        assert_eq!(format!("{:?}", Quoted(text)), format!("{text:?}"));
    }
}

/// The JSON lines logged inside and then outside a request traced at `sample_ratio` with
/// `headers`, parsed (`Captured` cuts the timestamp out), and the request's trace id.
fn traced_json_lines(
    sample_ratio: f64,
    headers: &[(&str, &str)],
) -> (serde_json::Value, serde_json::Value, String) {
    let config = crate::config::TracingConfig {
        otlp_endpoint: Some("http://127.0.0.1:9".into()),
        sample_ratio,
        service_name: "wxgate".into(),
    };
    let tracing = crate::telemetry::Tracing::start(&config).unwrap().unwrap();
    let headers = crate::http::headers::tests::headers(headers);
    let trace = tracing.request(&http::Method::GET, "/api", &headers);
    let trace_id = trace.trace_id().expect("a trace id").to_string();
    let captured = Captured::default();
    let writer = captured.clone();
    let json = subscriber(EnvFilter::new("info"), LogFormat::Json, move || {
        writer.clone()
    });
    tracing::subscriber::with_default(json, || {
        let id = RequestId::for_request(&headers);
        poll_once(in_request(id, Some(trace), async {
            tracing::warn!("inside");
        }));
        tracing::warn!("outside");
    });
    let lines = captured.lines();
    let parse = |line: &str| -> serde_json::Value {
        serde_json::from_str(&line.replacen("{,", "{", 1)).unwrap()
    };
    (parse(&lines[0]), parse(&lines[1]), trace_id)
}

#[test]
fn json_lines_of_a_traced_request_carry_its_trace_id() {
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (inside, outside, _) = traced_json_lines(1.0, &[("traceparent", traceparent)]);
    assert_eq!(inside["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(outside.get("trace_id").is_none(), "{outside}");
}

#[test]
fn json_lines_of_an_unsampled_request_carry_its_trace_id_too() {
    let (inside, outside, trace_id) = traced_json_lines(0.0, &[]);
    assert_eq!(trace_id.len(), 32);
    assert_eq!(inside["trace_id"], trace_id.as_str());
    assert!(outside.get("trace_id").is_none(), "{outside}");
}
