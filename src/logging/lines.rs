//! How log lines are laid out, and which request they belong to.
//!
//! The layouts are tracing-subscriber's (its `Full` text format, or JSON lines with the fields at
//! the top level), with timestamps that reuse the text of the current second; the request line
//! is laid out in `request_line.rs`, the same way. The
//! request a line belongs to comes from [`in_request`]: a thread-local set while the request's
//! future is polled, shown as tracing-subscriber showed the span it replaces (`request{id="..."}:`
//! in text, `"span":{"id":"...","name":"request"}` in JSON). A tracing span per request cost
//! about as much as the whole request line.

use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Json, JsonFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use super::LogFormat;
use crate::http::request_id::RequestId;
use crate::telemetry::RequestTrace;

/// The gateway's subscriber: `filter`ed lines in `format`, to `writer`.
pub(super) fn subscriber<W>(
    filter: EnvFilter,
    format: LogFormat,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false);
    match format {
        LogFormat::Text => Box::new(builder.event_format(TextLines::new()).finish()),
        LogFormat::Json => Box::new(builder.json().event_format(JsonLines::new()).finish()),
    }
}

thread_local! {
    /// The request whose future this thread is polling, if any.
    static CURRENT_REQUEST: Cell<Option<RequestId>> = const { Cell::new(None) };
    /// The current second, and its timestamp text up to the fraction: `2026-11-22T01:58:42.`.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Runs `future` as request `id`'s: lines logged while it is polled name the request. A traced
/// request's `trace` is current while it is polled too: the spans made below it are its
/// children, and JSON lines carry its trace id.
pub(crate) fn in_request<F: Future>(
    id: RequestId,
    trace: Option<RequestTrace>,
    future: F,
) -> InRequest<F> {
    InRequest {
        id: Some(id),
        trace,
        future,
    }
}

pin_project_lite::pin_project! {
    /// A future whose polls are request `id`'s (see [`in_request`]).
    pub(crate) struct InRequest<F> {
        id: Option<RequestId>,
        trace: Option<RequestTrace>,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for InRequest<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = this.trace.as_ref().map(RequestTrace::enter);
        let entered = Entered(CURRENT_REQUEST.replace(this.id.take()));
        let polled = this.future.poll(context);
        *this.id = CURRENT_REQUEST.replace(entered.leave());
        polled
    }
}

/// The request that was current before one was entered; put back even if the poll panics.
struct Entered(Option<RequestId>);

impl Entered {
    fn leave(mut self) -> Option<RequestId> {
        self.0.take()
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        if std::thread::panicking() {
            CURRENT_REQUEST.set(self.0.take());
        }
    }
}

/// `f` with the current request's id, if any.
fn with_current_request<R>(f: impl FnOnce(Option<&str>) -> R) -> R {
    let id = CURRENT_REQUEST.take();
    let result = f(id.as_ref().map(RequestId::as_str));
    CURRENT_REQUEST.set(id);
    result
}

/// Timestamps as tracing-subscriber writes them (`2026-11-22T01:58:42.123456Z`, UTC), with the
/// date and time of day computed once per second.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Clock;

impl FormatTime for Clock {
    fn format_time(&self, writer: &mut Writer<'_>) -> fmt::Result {
        write_timestamp(writer)
    }
}

/// The current time as [`Clock`] writes it.
pub(super) fn write_timestamp(out: &mut impl fmt::Write) -> fmt::Result {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != seconds {
            text.clear();
            write_second(text, seconds)?;
            *second = seconds;
        }
        out.write_str(text)
    })?;
    // Six digits of microseconds, zero-padded.
    let micros = since_epoch.subsec_micros();
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + u8::try_from(rest % 10).unwrap_or(0);
        rest /= 10;
    }
    out.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)?;
    out.write_char('Z')
}

/// `YYYY-MM-DDTHH:MM:SS.` for a Unix time (proleptic Gregorian, UTC).
fn write_second(text: &mut String, unix_seconds: u64) -> fmt::Result {
    let days = unix_seconds / 86_400;
    let of_day = unix_seconds % 86_400;
    let (year, month, day) = civil_date(days);
    write!(
        text,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// Year, month and day of the `days`th day after 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// tracing-subscriber's level column: five characters wide, right-aligned.
pub(super) fn level_column(level: Level) -> &'static str {
    match level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

/// Human-readable lines: `{timestamp} {level} [request{id="..."}: ]{target}: {message} {fields}`.
pub(crate) struct TextLines {
    /// Everything after the level and request.
    rest: Format<Full, ()>,
}

impl TextLines {
    pub(crate) fn new() -> Self {
        TextLines {
            rest: Format::default()
                .without_time()
                .with_level(false)
                .with_ansi(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for TextLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        Clock.format_time(&mut writer)?;
        writer.write_char(' ')?;
        writer.write_str(level_column(*meta.level()))?;
        writer.write_char(' ')?;
        with_current_request(|id| match id {
            Some(id) => write!(writer, "request{{id={id:?}}}: "),
            None => Ok(()),
        })?;
        self.rest.format_event(ctx, writer, event)
    }
}

/// A string written as its `Debug` form is, without looking at each character when none needs
/// escaping; for log fields (`path = ?Quoted(path)`).
pub(crate) struct Quoted<'a>(pub(crate) &'a str);

impl Quoted<'_> {
    /// Whether the string is written as it is between the quotes: visible ASCII or spaces, no
    /// quote and no backslash. JSON writes such a string the same way.
    pub(crate) fn plain(&self) -> bool {
        let plain = |byte: u8| (b' '..=b'~').contains(&byte) && byte != b'"' && byte != b'\\';
        crate::ascii::every_byte(self.0.as_bytes(), plain)
    }
}

impl fmt::Debug for Quoted<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.plain() {
            formatter.write_char('"')?;
            formatter.write_str(self.0)?;
            formatter.write_char('"')
        } else {
            fmt::Debug::fmt(self.0, formatter)
        }
    }
}

/// JSON lines, as tracing-subscriber writes them with the fields at the top level, plus
/// `"span":{"id":"...","name":"request"}` on lines logged while answering a request.
pub(crate) struct JsonLines {
    inner: Format<Json, Clock>,
}

impl JsonLines {
    pub(crate) fn new() -> Self {
        JsonLines {
            inner: Format::default()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_timer(Clock),
        }
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        with_current_request(|id| {
            let Some(id) = id else {
                return self.inner.format_event(ctx, writer.by_ref(), event);
            };
            let mut line = String::new();
            self.inner
                .format_event(ctx, Writer::new(&mut line), event)?;
            // The line is one object and a newline: the request goes in before the closing brace.
            let Some(end) = line.trim_end().strip_suffix('}') else {
                return writer.write_str(&line);
            };
            let id = serde_json::to_string(id).map_err(|_| fmt::Error)?;
            match crate::telemetry::current_trace_id() {
                Some(trace) => writeln!(
                    writer,
                    r#"{end},"span":{{"id":{id},"name":"request"}},"trace_id":"{trace}"}}"#
                ),
                None => writeln!(writer, r#"{end},"span":{{"id":{id},"name":"request"}}}}"#),
            }
        })
    }
}

#[cfg(test)]
mod tests;
