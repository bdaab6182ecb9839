//! What a worker counts. The worker owns its counts and adds them to shared atomics
//! once per turn at most; metrics read the atomics from other threads.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters a worker keeps; metrics read them from other threads.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub datagrams_in: AtomicU64,
    pub unknown_source: AtomicU64,
    pub unknown_ufrag: AtomicU64,
    /// Checks past the claim budget ([`super::stun::ClaimBudget`]).
    pub stun_global_limit: AtomicU64,
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
    pub retransmitted_bytes: AtomicU64,
    pub rtx_packets: AtomicU64,
    pub rtx_bytes: AtomicU64,
    pub retransmit_missing: AtomicU64,
    pub retransmit_limited: AtomicU64,
    pub keyframe_requests: AtomicU64,
    pub report_blocks: AtomicU64,
    pub report_blocks_dropped: AtomicU64,
    pub lagged: AtomicU64,
    pub instant_starts: AtomicU64,
    pub skipped_to_keyframe: AtomicU64,
    pub congestion_skips: AtomicU64,
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
    /// Sealed bytes of those, on the RTX stream or the media stream alike.
    pub retransmitted_bytes: u64,
    /// Resends sent on an RTX stream, and their sealed bytes.
    pub rtx_packets: u64,
    pub rtx_bytes: u64,
    pub retransmit_missing: u64,
    pub retransmit_limited: u64,
    /// Report blocks about no stream of the viewer's, or naming an SR never sent.
    pub report_blocks_dropped: u64,
    /// Packets a slow worker lost to the ring overwriting them.
    pub lagged: u64,
    /// Viewers started on a cached GOP (keyframeCache).
    pub instant_starts: u64,
    /// Viewers too slow to catch up on a cached GOP, sent on to the next keyframe.
    pub skipped_to_keyframe: u64,
    /// Video streams of viewers whose links could not take them, sent on to the next
    /// keyframe.
    pub congestion_skips: u64,
    pub oversized: u64,
}

impl EgressStats {
    pub(crate) fn publish(self, into: &WorkerStats) {
        add(&into.rtp_out, self.packets);
        add(&into.rtp_bytes_out, self.bytes);
        add(&into.rtcp_out, self.reports);
        add(&into.retransmitted, self.retransmitted);
        add(&into.retransmitted_bytes, self.retransmitted_bytes);
        add(&into.rtx_packets, self.rtx_packets);
        add(&into.rtx_bytes, self.rtx_bytes);
        add(&into.report_blocks_dropped, self.report_blocks_dropped);
        add(&into.retransmit_missing, self.retransmit_missing);
        add(&into.retransmit_limited, self.retransmit_limited);
        add(&into.lagged, self.lagged);
        add(&into.instant_starts, self.instant_starts);
        add(&into.skipped_to_keyframe, self.skipped_to_keyframe);
        add(&into.congestion_skips, self.congestion_skips);
        add(&into.oversized, self.oversized);
    }
}
