//! Logging setup: tracing to the given writer, filtered by `RUST_LOG` or `[log] level`, as text
//! or JSON lines (`[log] format`).
//!
//! Deliberately no bridge from the `log` crate: dependencies that log through it (reqwest logs
//! whole request URLs at debug level, and the code2session URL carries the AppSecret) stay silent
//! at every level.

use std::io::{BufWriter, Stderr, Write};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

#[cfg(test)]
mod captured;
mod lines;
mod request_line;
pub(crate) use lines::in_request;
pub(crate) use request_line::RequestLine;

/// Longest a log line waits in memory before it is written out.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Bytes of log lines gathered before they are written out at once.
const BATCH_BYTES: usize = 64 * 1024;

/// The gateway's log output: stderr, written in batches. A busy gateway would otherwise make one
/// write system call per request for its request line; here lines gather in a buffer that is
/// written out when it is full, at least every 100 ms by a small flusher thread, and whenever a
/// handle is dropped (so the lines of a clean exit are all out). Lines are never split nor
/// interleaved: each is appended whole under the lock.
#[derive(Clone)]
pub struct BatchedStderr {
    buffer: Arc<Mutex<BufWriter<Stderr>>>,
}

impl BatchedStderr {
    /// Starts the flusher thread, which ends once every handle is gone.
    pub fn start() -> BatchedStderr {
        let buffer = Arc::new(Mutex::new(BufWriter::with_capacity(
            BATCH_BYTES,
            std::io::stderr(),
        )));
        let weak: Weak<Mutex<BufWriter<Stderr>>> = Arc::downgrade(&buffer);
        let flusher = std::thread::Builder::new()
            .name("wxgate-log-flush".into())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_EVERY);
                let Some(buffer) = weak.upgrade() else { return };
                let _ = lock(&buffer).flush();
            });
        if flusher.is_err() {
            // Without the thread, lines still go out whenever the buffer fills and at exit;
            // write through instead so none waits indefinitely.
            return BatchedStderr {
                buffer: Arc::new(Mutex::new(BufWriter::with_capacity(0, std::io::stderr()))),
            };
        }
        BatchedStderr { buffer }
    }
}

impl Drop for BatchedStderr {
    /// Writes out what is buffered: the installed subscriber keeps its handle forever, so the
    /// caller's handle going away is what marks the end.
    fn drop(&mut self) {
        let _ = lock(&self.buffer).flush();
    }
}

/// The buffer, even if a thread panicked while holding it (a log line is not worth a crash).
fn lock(buffer: &Mutex<BufWriter<Stderr>>) -> MutexGuard<'_, BufWriter<Stderr>> {
    buffer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One event's access to the buffer: the formatter writes the whole line while holding it.
pub struct BatchedLine<'a>(MutexGuard<'a, BufWriter<Stderr>>);

impl Write for BatchedLine<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.write(bytes)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        // Flushing is the flusher thread's job; a per-line flush would undo the batching.
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = BatchedLine<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        BatchedLine(lock(&self.buffer))
    }
}

pub use crate::config::{parse_filter, LogFormat};

/// Installs the global subscriber; `RUST_LOG`, when set, wins over `level`. Request lines go to
/// the same writer, laid out the same way, but without the cost of a `tracing` event.
pub fn init<W>(level: &str, format: LogFormat, writer: W) -> Result<(), String>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_string());
    let writer = Shared(Arc::new(writer));
    let subscriber = lines::subscriber(parse_filter(&directives)?, format, writer.clone());
    tracing::subscriber::set_global_default(subscriber).map_err(|error| error.to_string())?;
    request_line::install(
        format,
        Box::new(move |line| {
            let _ = writer.make_writer().write_all(line);
        }),
    );
    Ok(())
}

/// One writer for the subscriber and the request lines.
struct Shared<W>(Arc<W>);

impl<W> Clone for Shared<W> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for Shared<W> {
    type Writer = W::Writer;
    fn make_writer(&'a self) -> Self::Writer {
        self.0.make_writer()
    }
}
