//! What a worker counts. The worker owns its counts and adds them to shared atomics
//! once per turn at most; metrics read the atomics from other threads.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters a worker keeps; metrics read them from other threads.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub datagrams_in: AtomicU64,
    pub unknown_source: AtomicU64,
    pub unknown_ufrag: AtomicU64,
    /// Checks not signed with the session's ICE password, and datagrams from an
    /// address of a session that never sent one.
    pub unauthenticated: AtomicU64,
    pub malformed: AtomicU64,
    pub forwarded: AtomicU64,
    pub srtcp_failed: AtomicU64,
    pub unexpected_media: AtomicU64,
    pub rtp_out: AtomicU64,
    pub rtp_bytes_out: AtomicU64,
    pub rtcp_out: AtomicU64,
    pub nacks: AtomicU64,
    pub retransmitted: AtomicU64,
    pub retransmit_missing: AtomicU64,
    pub retransmit_limited: AtomicU64,
    pub keyframe_requests: AtomicU64,
    pub lagged: AtomicU64,
    pub oversized: AtomicU64,
    pub sessions: AtomicU64,
    pub send_dropped: AtomicU64,
    pub send_calls: AtomicU64,
}

/// Adds `n` to `counter`; nothing for 0 (most turns move few counters).
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    if n != 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What the egress counts during a turn, published into [`WorkerStats`] at its end.
#[derive(Debug, Default, Clone, Copy)]
pub struct EgressStats {
    pub packets: u64,
    pub bytes: u64,
    pub reports: u64,
    pub retransmitted: u64,
    pub retransmit_missing: u64,
    pub retransmit_limited: u64,
    /// Packets a slow worker lost to the ring overwriting them.
    pub lagged: u64,
    pub oversized: u64,
}

impl EgressStats {
    pub(crate) fn publish(self, into: &WorkerStats) {
        add(&into.rtp_out, self.packets);
        add(&into.rtp_bytes_out, self.bytes);
        add(&into.rtcp_out, self.reports);
        add(&into.retransmitted, self.retransmitted);
        add(&into.retransmit_missing, self.retransmit_missing);
        add(&into.retransmit_limited, self.retransmit_limited);
        add(&into.lagged, self.lagged);
        add(&into.oversized, self.oversized);
    }
}
