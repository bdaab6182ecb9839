//! What the control plane (metrics, the API) can see of a session while a worker owns
//! it. The worker is the only writer: inbound counts are published as each datagram is
//! handled, outbound ones at each report tick (`rtcpSenderReportInterval`) from the
//! viewer's own plain counters, so the fan-out touches no shared memory per packet.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// A viewer reads a path, a publisher publishes to it (MediaMTX's session states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Read,
    Publish,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Publish => "publish",
        }
    }
}

#[derive(Debug)]
pub struct SessionInfo {
    pub id: String,
    pub path: String,
    pub role: Role,
    pub created: SystemTime,
    /// The query string of the WHEP or WHIP request that made it, as sent (hooks'
    /// `MTX_QUERY`, the API's `query`).
    pub query: String,
    /// The peer's address once its connectivity check was authenticated.
    remote: Mutex<Option<SocketAddr>>,
    inbound_bytes: AtomicU64,
    inbound_rtp_packets: AtomicU64,
    inbound_rtcp_packets: AtomicU64,
    outbound_bytes: AtomicU64,
    outbound_rtp_packets: AtomicU64,
    outbound_rtcp_packets: AtomicU64,
    /// What the viewer reported lost of what we sent (RTCP receiver reports), summed
    /// over its streams.
    outbound_rtp_packets_lost: AtomicU64,
    /// The viewer's reported jitter, the worst of its streams, in microseconds.
    jitter_us: AtomicU64,
    /// The latest round trip measured, in microseconds; 0: none yet.
    rtt_us: AtomicU64,
    /// Times its video skipped to the next keyframe because its link could not take it.
    congestion_skips: AtomicU64,
}

/// Counts at one instant, for metrics and the API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounts {
    pub inbound_bytes: u64,
    pub inbound_rtp_packets: u64,
    pub inbound_rtcp_packets: u64,
    pub outbound_bytes: u64,
    pub outbound_rtp_packets: u64,
    pub outbound_rtcp_packets: u64,
    pub outbound_rtp_packets_lost: u64,
    pub jitter: Duration,
    pub rtt: Option<Duration>,
    pub congestion_skips: u64,
}

/// A single writer adds with a load and a store: no locked instruction.
fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

impl SessionInfo {
    pub fn new(id: String, path: String, role: Role, query: String) -> SessionInfo {
        SessionInfo {
            id,
            path,
            role,
            created: SystemTime::now(),
            query,
            remote: Mutex::new(None),
            inbound_bytes: AtomicU64::new(0),
            inbound_rtp_packets: AtomicU64::new(0),
            inbound_rtcp_packets: AtomicU64::new(0),
            outbound_bytes: AtomicU64::new(0),
            outbound_rtp_packets: AtomicU64::new(0),
            outbound_rtcp_packets: AtomicU64::new(0),
            outbound_rtp_packets_lost: AtomicU64::new(0),
            jitter_us: AtomicU64::new(0),
            rtt_us: AtomicU64::new(0),
            congestion_skips: AtomicU64::new(0),
        }
    }

    pub fn remote(&self) -> Option<SocketAddr> {
        *self.remote.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn set_remote(&self, remote: SocketAddr) {
        *self.remote.lock().unwrap_or_else(|e| e.into_inner()) = Some(remote);
    }

    /// Datagrams the session took from its peer: `bytes` in all, of which `rtp` RTP
    /// packets and `rtcp` RTCP packets.
    pub(super) fn received(&self, bytes: u64, rtp: u64, rtcp: u64) {
        add(&self.inbound_bytes, bytes);
        add(&self.inbound_rtp_packets, rtp);
        add(&self.inbound_rtcp_packets, rtcp);
    }

    /// What the viewer's egress counted so far, and what it last reported.
    pub(super) fn publish_outbound(&self, totals: &SessionCounts) {
        let set = |counter: &AtomicU64, value: u64| counter.store(value, Ordering::Relaxed);
        set(&self.outbound_bytes, totals.outbound_bytes);
        set(&self.outbound_rtp_packets, totals.outbound_rtp_packets);
        set(&self.outbound_rtcp_packets, totals.outbound_rtcp_packets);
        set(
            &self.outbound_rtp_packets_lost,
            totals.outbound_rtp_packets_lost,
        );
        set(&self.jitter_us, totals.jitter.as_micros() as u64);
        set(
            &self.rtt_us,
            totals.rtt.map_or(0, |r| r.as_micros().max(1) as u64),
        );
        set(&self.congestion_skips, totals.congestion_skips);
    }

    pub fn counts(&self) -> SessionCounts {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SessionCounts {
            inbound_bytes: get(&self.inbound_bytes),
            inbound_rtp_packets: get(&self.inbound_rtp_packets),
            inbound_rtcp_packets: get(&self.inbound_rtcp_packets),
            outbound_bytes: get(&self.outbound_bytes),
            outbound_rtp_packets: get(&self.outbound_rtp_packets),
            outbound_rtcp_packets: get(&self.outbound_rtcp_packets),
            outbound_rtp_packets_lost: get(&self.outbound_rtp_packets_lost),
            jitter: Duration::from_micros(get(&self.jitter_us)),
            rtt: Some(get(&self.rtt_us))
                .filter(|&us| us > 0)
                .map(Duration::from_micros),
            congestion_skips: get(&self.congestion_skips),
        }
    }
}
