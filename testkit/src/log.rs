//! The lines a child process writes, kept as they come: for a test's assertions on the
//! relay's log, and for a tool's error message when a server misbehaves.

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    /// Keeps every line `output` writes, without terminal colours, from a thread of its
    /// own until the output closes. With `echo`, each line also goes to this process's
    /// stderr after that prefix, where a test shows it when it fails.
    pub fn follow(&self, output: impl Read + Send + 'static, echo: Option<&'static str>) {
        let log = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                if let Some(prefix) = echo {
                    eprintln!("{prefix}{line}");
                }
                log.0.lock().unwrap().push(strip_ansi(&line));
            }
        });
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// The last `n` lines, joined by newlines.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.0.lock().unwrap();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// `line` without ANSI escape sequences (tracing colours its output even into a pipe).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters, ended by a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_kept_without_colours_and_the_tail_is_the_last() {
        let log = Log::default();
        log.follow(
            &b"\x1b[2m2026\x1b[0m \x1b[32m INFO\x1b[0m viewer live\nsecond\nthird\n"[..],
            None,
        );
        assert!(crate::wait::eventually(
            std::time::Duration::from_secs(2),
            || log.lines().len() == 3
        ));
        assert_eq!(log.lines()[0], "2026  INFO viewer live");
        assert_eq!(log.tail(2), "second\nthird");
        assert_eq!(log.tail(9).lines().count(), 3);
    }
}
