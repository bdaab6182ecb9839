//! What every load tool prints: the machine, progress lines on stderr, tables; and the
//! growth of its counters over a measured window.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The machine, as docs/benchmarks.md quotes it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Host {
    pub cores: usize,
    pub kernel: String,
    pub cpu: String,
}

pub fn host() -> Host {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim())
        })
        .unwrap_or("unknown")
        .to_string();
    Host {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        cpu,
    }
}

/// Sleeps `seconds`, showing `line(elapsed)` about once a second.
pub fn sleep_with_progress(seconds: f64, mut line: impl FnMut(f64) -> String) {
    let start = Instant::now();
    let total = Duration::from_secs_f64(seconds);
    while start.elapsed() < total {
        let left = total - start.elapsed();
        std::thread::sleep(left.min(Duration::from_secs(1)));
        progress(&line(start.elapsed().as_secs_f64()));
    }
}

/// One progress line on stderr, rewritten in place on a terminal.
pub fn progress(line: &str) {
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = write!(err, "\r\x1b[K{line}");
        let _ = err.flush();
    } else {
        let _ = writeln!(err, "{line}");
    }
}

/// Ends the line `progress` rewrites, before the results.
pub fn progress_done() {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}

/// How much each counter grew from `before` to `after`, two readings of the same
/// counters.
pub fn growth(after: &[u64], before: &[u64]) -> Vec<u64> {
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

/// Prints a table's header of two lines, each cell right-aligned in `width`.
pub fn print_header(header: &[(&str, &str)], width: usize) {
    for line in [0, 1] {
        let cells: Vec<String> = header
            .iter()
            .map(|h| format!("{:>width$}", if line == 0 { h.0 } else { h.1 }))
            .collect();
        println!("{}", cells.join(" "));
    }
}

/// Prints a table with right-aligned columns as wide as their widest cell.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect();
        println!("{}", cells.join("  "));
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}
