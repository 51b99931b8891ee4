//! The request line, logged once per answered request. Where the gateway's own subscriber is
//! installed (`logging::init`), the line is laid out here and handed straight to the log output,
//! exactly as that subscriber lays out the `tracing` event it stands for: recording an event's
//! fields one by one through `tracing` cost about a tenth of a proxied request. Without it (other
//! subscribers, tests), the event itself is logged.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::sync::OnceLock;
use std::time::Duration;

use http::Method;
use tracing::Level;

use super::lines::{level_column, write_timestamp, Quoted};
use super::LogFormat;

/// What the request line tells about one answered request: never the query (it may carry
/// credentials) nor any header but the request id.
pub(crate) struct RequestLine<'a> {
    /// The request id (`X-Request-Id`).
    pub(crate) request_id: &'a str,
    pub(crate) method: &'a Method,
    /// The normalized path (the raw one when it could not be normalized).
    pub(crate) path: &'a str,
    pub(crate) status: u16,
    pub(crate) latency: Duration,
    /// Who the request was answered for, if anyone.
    pub(crate) openid: Option<&'a str>,
    /// The request's trace, when tracing is on (`[tracing]`).
    pub(crate) trace_id: Option<crate::telemetry::TraceId>,
}

/// The target the request line is logged under, as filters name it (`wxgate::server::dispatch=warn`
/// silences it).
pub(crate) const REQUEST_LINE_TARGET: &str = "wxgate::server::dispatch";

/// Writes one whole line to the installed subscriber's output.
pub(super) type WriteLine = Box<dyn Fn(&[u8]) + Send + Sync>;

/// The installed subscriber's output and layout.
struct Output {
    format: LogFormat,
    write: WriteLine,
}

static OUTPUT: OnceLock<Output> = OnceLock::new();

/// Sends request lines, laid out in `format`, to `write` (the installed subscriber's output).
pub(super) fn install(format: LogFormat, write: WriteLine) {
    let _ = OUTPUT.set(Output { format, write });
}

thread_local! {
    /// The line being laid out, its room reused by the thread's next line.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

impl RequestLine<'_> {
    /// Logs the line, when the log filter lets INFO lines of the request-line target through.
    pub(crate) fn log(&self) {
        if !tracing::enabled!(target: REQUEST_LINE_TARGET, Level::INFO) {
            return;
        }
        let openid = self.openid.unwrap_or("-");
        let Some(output) = OUTPUT.get() else {
            let latency_ms = latency_ms(self.latency);
            match self.trace_id {
                None => tracing::info!(
                    target: REQUEST_LINE_TARGET,
                    request_id = self.request_id,
                    method = %self.method,
                    path = ?Quoted(self.path),
                    status = self.status,
                    latency_ms,
                    openid,
                    "request"
                ),
                Some(trace_id) => tracing::info!(
                    target: REQUEST_LINE_TARGET,
                    request_id = self.request_id,
                    method = %self.method,
                    path = ?Quoted(self.path),
                    status = self.status,
                    latency_ms,
                    openid,
                    trace_id = %trace_id,
                    "request"
                ),
            }
            return;
        };
        LINE.with_borrow_mut(|line| {
            line.clear();
            let laid_out = match output.format {
                LogFormat::Text => self.write_text(line, openid),
                LogFormat::Json => self.write_json(line, openid),
            };
            if laid_out.is_ok() {
                (output.write)(line.as_bytes());
            }
        });
    }

    /// tracing-subscriber's text line: `{time}  INFO {target}: request request_id="..." ...`.
    fn write_text(&self, line: &mut String, openid: &str) -> fmt::Result {
        write_timestamp(line)?;
        line.push(' ');
        line.push_str(level_column(Level::INFO));
        line.push(' ');
        line.push_str(REQUEST_LINE_TARGET);
        line.push_str(": request request_id=");
        push_quoted(line, self.request_id)?;
        line.push_str(" method=");
        line.push_str(self.method.as_str());
        line.push_str(" path=");
        push_quoted(line, self.path)?;
        line.push_str(" status=");
        push_number(line, u64::from(self.status));
        line.push_str(" latency_ms=");
        push_latency_ms(line, self.latency)?;
        line.push_str(" openid=");
        push_quoted(line, openid)?;
        if let Some(trace_id) = self.trace_id {
            line.push_str(" trace_id=");
            push_trace_id(line, trace_id);
        }
        line.push('\n');
        Ok(())
    }

    /// tracing-subscriber's JSON line, the fields at the top level in the event's order. The path
    /// is its quoted `Debug` form, as the event records it.
    fn write_json(&self, line: &mut String, openid: &str) -> fmt::Result {
        line.push_str(r#"{"timestamp":""#);
        write_timestamp(line)?;
        line.push_str(r#"","level":"INFO","message":"request","request_id":"#);
        push_json_string(line, self.request_id)?;
        line.push_str(r#","method":"#);
        push_json_string(line, self.method.as_str())?;
        line.push_str(r#","path":"#);
        match Quoted(self.path).plain() {
            true => {
                line.push_str(r#""\""#);
                line.push_str(self.path);
                line.push_str(r#"\"""#);
            }
            false => push_json_string(line, &format!("{:?}", Quoted(self.path)))?,
        }
        line.push_str(r#","status":"#);
        push_number(line, u64::from(self.status));
        line.push_str(r#","latency_ms":"#);
        push_latency_ms(line, self.latency)?;
        line.push_str(r#","openid":"#);
        push_json_string(line, openid)?;
        if let Some(trace_id) = self.trace_id {
            line.push_str(r#","trace_id":""#);
            push_trace_id(line, trace_id);
            line.push('"');
        }
        line.push_str(r#","target":""#);
        line.push_str(REQUEST_LINE_TARGET);
        line.push_str("\"}\n");
        Ok(())
    }
}

/// A latency in milliseconds to the microsecond, so the log shows `0.168`, not `0.16759500000000002`.
fn latency_ms(took: Duration) -> f64 {
    // Whole microseconds are exact in an f64 for any latency a request can have.
    #[allow(clippy::cast_precision_loss)]
    let micros = took.as_micros() as f64;
    micros / 1000.0
}

/// A latency in milliseconds to the microsecond, as `Debug` writes the [`latency_ms`] the event
/// records (`0.168`, `12.0`): the whole milliseconds, a point, and the microseconds without
/// trailing zeros (one kept).
fn push_latency_ms(line: &mut String, latency: Duration) -> fmt::Result {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    if micros >= LONGEST_PLAIN_MICROS {
        return write!(line, "{:?}", latency_ms(latency));
    }
    push_number(line, micros / 1000);
    let fraction = micros % 1000;
    let digit = |value: u64| b'0' + u8::try_from(value % 10).unwrap_or(0);
    let point = [
        b'.',
        digit(fraction / 100),
        digit(fraction / 10),
        digit(fraction),
    ];
    let zeros = point[1..]
        .iter()
        .rev()
        .take_while(|&&byte| byte == b'0')
        .count();
    let kept = (4 - zeros).max(2);
    // ASCII: always UTF-8.
    line.push_str(std::str::from_utf8(&point[..kept]).unwrap_or_default());
    Ok(())
}

/// From about 1e16 ms, `Debug` writes an `f64` with an exponent; far beyond any latency.
const LONGEST_PLAIN_MICROS: u64 = 1_000_000_000_000_000;

/// A number's decimal digits.
fn push_number(line: &mut String, number: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = number;
    loop {
        start -= 1;
        digits[start] = b'0' + u8::try_from(rest % 10).unwrap_or(0);
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    // ASCII digits: always UTF-8.
    line.push_str(std::str::from_utf8(&digits[start..]).unwrap_or_default());
}

/// `text` in quotes, escaped as its `Debug` form is (the event records it so).
fn push_quoted(line: &mut String, text: &str) -> fmt::Result {
    if Quoted(text).plain() {
        line.push('"');
        line.push_str(text);
        line.push('"');
        return Ok(());
    }
    write!(line, "{text:?}")
}

/// `text` as a JSON string, as serde_json writes it.
fn push_json_string(line: &mut String, text: &str) -> fmt::Result {
    if Quoted(text).plain() {
        line.push('"');
        line.push_str(text);
        line.push('"');
        return Ok(());
    }
    let quoted = serde_json::to_string(text).map_err(|_| fmt::Error)?;
    line.push_str(&quoted);
    Ok(())
}

#[cfg(test)]
mod tests;

/// A trace id in hex (as `Display` writes it, without the formatting machinery).
fn push_trace_id(line: &mut String, trace_id: crate::telemetry::TraceId) {
    let hex = crate::telemetry::trace_id_hex(trace_id);
    // Hex digits are ASCII: always valid UTF-8, copied at once rather than a char at a time.
    line.push_str(std::str::from_utf8(&hex).unwrap_or_default());
}
