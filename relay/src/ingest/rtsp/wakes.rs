//! The RTSP sources' wake-ups of the workers, gathered: each camera's task reads its
//! frames on its own, so left to themselves 64 cameras at 30 fps wake the workers ~2,000
//! times a second, for a frame of one stream each time (as the RTP ingest did before its
//! [`Spacing`]). Here the tasks mark the workers to wake, and one task wakes them, at
//! most once per `ingestBatchWindow` while they keep it busy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::ingest::Spacing;
use crate::io::wake::Wakers;

pub struct SpacedWakes {
    /// Workers marked since the last wake-up, a bit each.
    pending: AtomicU64,
    marked: Notify,
    wakers: Arc<Wakers>,
    window: Duration,
}

impl SpacedWakes {
    /// Wakes through `wakers`, at most once per `window` while busy; with a window of 0,
    /// at once.
    pub fn new(wakers: Arc<Wakers>, window: Duration) -> Arc<SpacedWakes> {
        Arc::new(SpacedWakes {
            pending: AtomicU64::new(0),
            marked: Notify::new(),
            wakers,
            window,
        })
    }

    /// The workers in `mask` have packets to send.
    pub fn wake(&self, mask: u64) {
        if self.window.is_zero() {
            self.wakers.wake(mask);
        } else if self.pending.fetch_or(mask, Ordering::AcqRel) == 0 {
            self.marked.notify_one();
        }
    }

    /// Wakes the marked workers, spaced, for as long as the runtime runs it.
    pub async fn run(self: Arc<Self>) {
        let mut spacing = Spacing::new(self.window);
        loop {
            self.marked.notified().await;
            let started = tokio::time::Instant::now();
            self.wakers.wake(self.pending.swap(0, Ordering::AcqRel));
            if let Some(until) = spacing.after_pass(started.into_std()) {
                tokio::time::sleep_until(until.into()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each worker's wake-ups so far (reading an eventfd takes its count).
    fn woken(wakers: &Wakers, worker: usize) -> u64 {
        let mut count = [0u8; 8];
        // SAFETY: reads 8 bytes into a live buffer; EAGAIN (no wake-up) leaves it 0.
        unsafe { libc::read(wakers.fd(worker), count.as_mut_ptr().cast(), 8) };
        u64::from_ne_bytes(count)
    }

    #[tokio::test(start_paused = true)]
    async fn marks_within_a_window_of_the_last_wake_up_wake_each_worker_once() {
        let wakers = Arc::new(Wakers::new(2).unwrap());
        // tokio's timer counts whole milliseconds: a window of 10 ms, marks 1 ms apart.
        let wakes = SpacedWakes::new(wakers.clone(), Duration::from_millis(10));
        tokio::spawn(wakes.clone().run());
        let step = |ms| tokio::time::sleep(Duration::from_millis(ms));
        let woken_now = || (woken(&wakers, 0), woken(&wakers, 1));
        // A frame after a quiet while wakes its worker at once, and so does the next.
        wakes.wake(0b01);
        step(1).await;
        assert_eq!(woken_now(), (1, 0));
        wakes.wake(0b10);
        step(1).await;
        assert_eq!(woken_now(), (0, 1));
        // From then on, while they come within a window of the last wake-up, marks wait
        // for its end and wake each worker once.
        for mask in [0b01, 0b10, 0b01, 0b11] {
            wakes.wake(mask);
            step(1).await;
        }
        assert_eq!(woken_now(), (0, 0), "within the window");
        step(10).await;
        assert_eq!(woken_now(), (1, 1));
        // A frame long after is not held back.
        step(100).await;
        wakes.wake(0b10);
        step(1).await;
        assert_eq!(woken_now(), (0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn no_window_wakes_at_once() {
        let wakers = Arc::new(Wakers::new(1).unwrap());
        let wakes = SpacedWakes::new(wakers.clone(), Duration::ZERO);
        wakes.wake(1);
        wakes.wake(1);
        assert_eq!(woken(&wakers, 0), 2);
    }
}
