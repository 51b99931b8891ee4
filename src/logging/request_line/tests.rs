//! The request line laid out directly against the `tracing` event it stands for, as the gateway's
//! subscriber writes that event.

use super::*;
use crate::logging::captured::Captured;
use tracing_subscriber::EnvFilter;

/// Sample lines: plain, and every field that can need escaping doing so.
fn samples() -> Vec<RequestLine<'static>> {
    let get = &Method::GET;
    let line = |path, status, micros, openid| RequestLine {
        request_id: "0123456789abcdef0123456789abcdef",
        method: get,
        path,
        status,
        latency: Duration::from_micros(micros),
        openid,
        trace_id: None,
    };
    let traced = RequestLine {
        trace_id: crate::telemetry::TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").ok(),
        ..line("/api/traced", 200, 250, Some("o-2"))
    };
    vec![
        line("/api/hello", 200, 168, Some("o-1")),
        line("/api/\"q\"", 502, 1000, None),
        line("/api/a\\b\tc", 404, 0, Some("o \"x\"")),
        line("/api/ünïcode\u{7f}", 401, 12_345_678, Some("o\\1")),
        line("/", 101, 999_999_999, Some("")),
        traced,
    ]
}

/// The event the line stands for, as the gateway's subscriber writes it in `format`.
fn as_event(line: &RequestLine<'_>, format: LogFormat) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber =
        super::super::lines::subscriber(EnvFilter::new("info"), format, move || writer.clone());
    // No output is installed in unit tests: `log` logs the event.
    assert!(OUTPUT.get().is_none());
    tracing::subscriber::with_default(subscriber, || line.log());
    let lines = captured.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0].clone()
}

/// The line laid out directly in `format`, timestamp cut out as `Captured` cuts it.
fn direct(line: &RequestLine<'_>, format: LogFormat) -> String {
    let mut text = String::new();
    let openid = line.openid.unwrap_or("-");
    match format {
        LogFormat::Text => line.write_text(&mut text, openid),
        LogFormat::Json => line.write_json(&mut text, openid),
    }
    .unwrap();
    let captured = Captured::default();
    std::io::Write::write_all(&mut captured.clone(), text.as_bytes()).unwrap();
    let lines = captured.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0].clone()
}

#[test]
fn text_lines_are_the_events_line() {
    for line in samples() {
        assert_eq!(
            direct(&line, LogFormat::Text),
            as_event(&line, LogFormat::Text)
        );
    }
    let plain = direct(&samples()[0], LogFormat::Text);
    assert_eq!(
        plain,
        r#"  INFO wxgate::server::dispatch: request request_id="0123456789abcdef0123456789abcdef" method=GET path="/api/hello" status=200 latency_ms=0.168 openid="o-1""#
    );
}

#[test]
fn json_lines_are_the_events_line() {
    for line in samples() {
        assert_eq!(
            direct(&line, LogFormat::Json),
            as_event(&line, LogFormat::Json)
        );
        let mut raw = String::new();
        line.write_json(&mut raw, "o").unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&raw).expect("one JSON object");
        assert_eq!(parsed["path"], format!("{:?}", Quoted(line.path)));
    }
}

#[test]
fn latencies_are_logged_to_the_microsecond() {
    assert_eq!(
        latency_ms(Duration::from_nanos(167_595)).to_string(),
        "0.167"
    );
    assert_eq!(
        latency_ms(Duration::from_micros(12_345)).to_string(),
        "12.345"
    );
    assert_eq!(latency_ms(Duration::ZERO).to_string(), "0");
}

#[test]
fn numbers_are_their_digits() {
    for number in [0, 7, 42, 100, 200, 599, 999, u64::from(u16::MAX), u64::MAX] {
        let mut text = String::new();
        push_number(&mut text, number);
        assert_eq!(text, number.to_string());
    }
}

#[test]
fn latencies_are_written_as_debug_writes_the_events_float() {
    let micros = (0_u64..200_000)
        .chain([999_999, 1_000_000, 999_999_999, 123_456_789_012])
        .chain([LONGEST_PLAIN_MICROS - 1, LONGEST_PLAIN_MICROS, u64::MAX]);
    for micros in micros {
        let latency = Duration::from_micros(micros);
        let mut text = String::new();
        push_latency_ms(&mut text, latency).unwrap();
        assert_eq!(text, format!("{:?}", latency_ms(latency)), "{micros}");
    }
}

#[test]
fn quoted_text_is_its_debug_form() {
    for text in [
        "/api/hello",
        "",
        "a\"b",
        "a\\b",
        "tab\there",
        "ünï",
        "\u{7f}",
        "o 1",
    ] {
        let mut quoted = String::new();
        push_quoted(&mut quoted, text).unwrap();
        assert_eq!(quoted, format!("{text:?}"));
    }
}
