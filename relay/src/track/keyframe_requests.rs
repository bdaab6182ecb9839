//! Viewers' keyframe requests (PLI/FIR), coalesced per track on their way to the source.
//!
//! A track's viewers live on any worker, its publisher's session on one. A viewer's
//! request only marks the track pending and, if it was not already, wakes the
//! publisher's worker; that worker, the only one that clears the mark, forwards at most
//! one request per interval (`keyframeRequestInterval`). So a thousand viewers joining
//! at once cost the publisher one PLI, and a request made during the quiet interval is
//! still forwarded when it ends.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct KeyframeRequests {
    /// Bit of the worker whose session publishes the track; 0 while no source that can
    /// answer feeds it (an RTP push cannot be asked).
    source_worker: AtomicU64,
    pending: AtomicBool,
    /// When a request last went to the source: nanoseconds since `origin`, plus one
    /// (0: never).
    last_forwarded: AtomicU64,
    /// The first instant the source's worker looked: the zero of `last_forwarded`.
    origin: OnceLock<Instant>,
}

/// What the source's worker should do about pending requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    Nothing,
    /// Ask the source for a keyframe now.
    Now,
    /// A request waits for the interval to end at this instant.
    At(Instant),
}

impl KeyframeRequests {
    /// A source on worker `worker` can answer requests from now on.
    pub fn attach(&self, worker: usize) {
        self.source_worker.store(1 << worker, Ordering::Release);
    }

    /// The source left: requests are only counted until another comes.
    pub fn detach(&self) {
        self.source_worker.store(0, Ordering::Release);
        self.pending.store(false, Ordering::Release);
    }

    /// A viewer needs a keyframe. Returns the workers to wake (the source's), or 0 when
    /// a request is already waiting or no source can answer.
    pub fn ask(&self) -> u64 {
        let source = self.source_worker.load(Ordering::Acquire);
        if source == 0 || self.pending.swap(true, Ordering::AcqRel) {
            return 0;
        }
        source
    }

    /// For the source's worker only: whether to forward a request at `now`, given at
    /// most one per `interval`.
    pub fn take(&self, now: Instant, interval: Duration) -> Forward {
        if !self.pending.load(Ordering::Acquire) {
            return Forward::Nothing;
        }
        let origin = *self.origin.get_or_init(|| now);
        let last = self.last_forwarded.load(Ordering::Acquire);
        if let Some(since) = last.checked_sub(1) {
            let due = origin + Duration::from_nanos(since) + interval;
            if now < due {
                return Forward::At(due);
            }
        }
        // A viewer marking it between the load above and this store is answered by
        // the request forwarded now.
        self.pending.store(false, Ordering::Release);
        let since = now.saturating_duration_since(origin).as_nanos() as u64;
        self.last_forwarded.store(since + 1, Ordering::Release);
        Forward::Now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(1);

    #[test]
    fn many_requests_in_one_interval_are_one_and_a_late_one_waits_for_its_end() {
        let t0 = Instant::now();
        let k = KeyframeRequests::default();
        assert_eq!(k.ask(), 0, "no source attached: nobody to wake");
        assert_eq!(k.take(t0, INTERVAL), Forward::Nothing);
        k.attach(3);
        assert_eq!(
            k.ask(),
            1 << 3,
            "the first request wakes the source's worker"
        );
        for _ in 0..49 {
            assert_eq!(k.ask(), 0, "the others only join it");
        }
        assert_eq!(k.take(t0, INTERVAL), Forward::Now);
        assert_eq!(k.take(t0, INTERVAL), Forward::Nothing, "one for fifty");

        let t1 = t0 + Duration::from_millis(300);
        assert_eq!(k.ask(), 1 << 3);
        assert_eq!(k.take(t1, INTERVAL), Forward::At(t0 + INTERVAL));
        assert_eq!(k.ask(), 0, "still pending: no second wake");
        assert_eq!(k.take(t0 + INTERVAL, INTERVAL), Forward::Now);
        assert_eq!(k.take(t0 + INTERVAL * 3, INTERVAL), Forward::Nothing);
    }

    #[test]
    fn a_detached_source_drops_what_was_pending() {
        let t0 = Instant::now();
        let k = KeyframeRequests::default();
        k.attach(0);
        assert_eq!(k.ask(), 1);
        k.detach();
        assert_eq!(k.take(t0, INTERVAL), Forward::Nothing);
        k.attach(1);
        assert_eq!(k.ask(), 2, "the next source is woken afresh");
    }
}
