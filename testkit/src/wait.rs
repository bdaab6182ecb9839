//! Waiting for what happens on its own time: a relay's counters, a session's end.

use std::time::{Duration, Instant};

/// Polls `condition` every 100 ms for up to `limit`; whether it held.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    condition()
}
