//! Where the relay's log and its lines for scripts go: stderr and stdout, whatever they
//! are (a terminal, journald, a file on a disk that fills up, a pipe closed early). A
//! line that cannot be written is dropped, and a log line counted
//! (`relay_log_write_errors_total`): the relay never stops for its output. (std's
//! `println!`/`eprintln!` panic on a failed write, and tracing-subscriber reports its
//! own failed writes with `eprintln!`: on a full disk the first log line of a worker
//! would stop the relay.)

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::fmt::MakeWriter;

static WRITE_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Log lines stderr refused, in whole or in part, since the relay started.
pub fn write_errors() -> u64 {
    WRITE_ERRORS.load(Ordering::Relaxed)
}

/// The log's writer: stderr, counting the lines it refuses. Give it to
/// tracing-subscriber with its own error reports off (`log_internal_errors(false)`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line
    }
}

/// One log line on its way to stderr (tracing-subscriber writes each with one
/// `write_all`).
#[derive(Debug)]
pub struct Line;

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stderr().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        io::stderr().write_all(buf).inspect_err(|_| {
            WRITE_ERRORS.fetch_add(1, Ordering::Relaxed);
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Writes `line` on stdout for scripts and tests (the URLs `relay serve` prints), and
/// goes on if stdout refuses it.
pub fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stdout().lock(), "{line}");
}
