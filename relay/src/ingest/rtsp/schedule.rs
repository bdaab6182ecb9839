//! When an RTSP source connects, retries and closes: pure policies over the instants
//! they are given, so that tests drive time.

use std::time::{Duration, Instant};

/// Waits between failed attempts: 1 s, doubling to 30 s. A connection that stayed up
/// for [`Backoff::STABLE`] starts the series again, so that a camera that reboots once
/// a day is retried after 1 s, not 30.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    connected_at: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Backoff::FIRST,
            connected_at: None,
        }
    }
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_secs(1);
    pub const MAX: Duration = Duration::from_secs(30);
    pub const STABLE: Duration = Duration::from_secs(30);

    /// The source delivered media from `now` on.
    pub fn connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// The source failed at `now`: how long to wait before the next attempt.
    pub fn failed(&mut self, now: Instant) -> Duration {
        if let Some(up) = self.connected_at.take() {
            if now.saturating_duration_since(up) >= Backoff::STABLE {
                self.next = Backoff::FIRST;
            }
        }
        let wait = self.next;
        self.next = (wait * 2).min(Backoff::MAX);
        wait
    }
}

/// `sourceOnDemandCloseAfter`: when an on-demand source with no viewers closes.
#[derive(Debug)]
pub struct CloseAfter {
    after: Duration,
    unwatched_since: Option<Instant>,
}

impl CloseAfter {
    pub fn new(after: Duration) -> CloseAfter {
        CloseAfter {
            after,
            unwatched_since: None,
        }
    }

    /// The path has `readers` viewers at `now`: when to close, if it should.
    pub fn readers(&mut self, readers: usize, now: Instant) -> Option<Instant> {
        if readers > 0 {
            self.unwatched_since = None;
            return None;
        }
        let since = *self.unwatched_since.get_or_insert(now);
        Some(since + self.after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn failures_wait_longer_up_to_the_cap() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..8).map(|_| b.failed(t0).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn a_connection_that_stayed_up_starts_the_series_again() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        for _ in 0..4 {
            b.failed(t0);
        }
        // Up for 5 s only: the camera flaps, keep backing off.
        b.connected(t0);
        assert_eq!(b.failed(t0 + secs(5)), secs(16));
        b.connected(t0 + secs(10));
        assert_eq!(b.failed(t0 + secs(10) + Backoff::STABLE), Backoff::FIRST);
        assert_eq!(b.failed(t0 + secs(100)), secs(2));
    }

    #[test]
    fn an_unwatched_source_closes_after_the_delay_unless_a_viewer_comes() {
        let t0 = Instant::now();
        let mut c = CloseAfter::new(secs(10));
        assert_eq!(c.readers(1, t0), None);
        assert_eq!(c.readers(0, t0 + secs(3)), Some(t0 + secs(13)));
        // Asked again later without viewers: the first moment counts.
        assert_eq!(c.readers(0, t0 + secs(8)), Some(t0 + secs(13)));
        assert_eq!(c.readers(2, t0 + secs(9)), None);
        assert_eq!(c.readers(0, t0 + secs(20)), Some(t0 + secs(30)));
    }
}
