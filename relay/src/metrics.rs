//! Prometheus metrics, read at scrape time from the counters each stage keeps
//! (per-worker atomics, per-track atomics): nothing on the hot path but a relaxed add.

use std::fmt::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::ingest::{IngestCounters, PathStats};
use crate::io::xdp::XdpProgram;
use crate::paths::ServedPath;
use crate::worker::WorkerStats;

#[derive(Clone)]
pub struct Metrics {
    workers: Vec<Arc<WorkerStats>>,
    paths: Vec<Arc<ServedPath>>,
    ingest: IngestCounters,
    xdp: Option<Arc<Mutex<XdpProgram>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("paths", &self.paths.len())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(
        workers: Vec<Arc<WorkerStats>>,
        mut paths: Vec<Arc<ServedPath>>,
        ingest: IngestCounters,
        xdp: Option<Arc<Mutex<XdpProgram>>>,
    ) -> Metrics {
        paths.sort_by(|a, b| a.name.cmp(&b.name));
        Metrics {
            workers,
            paths,
            ingest,
            xdp,
        }
    }

    pub fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix("relay");
        registry.register_collector(Box::new(self.clone()));
        registry
    }
}

/// Totals for the periodic stats line in the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub sessions: u64,
    pub datagrams_in: u64,
    pub rtp_out: u64,
    pub retransmitted: u64,
    /// XDP program: redirected to AF_XDP, dropped, passed to the kernel.
    pub xdp: Option<(u64, u64, u64)>,
}

impl Metrics {
    pub fn totals(&self) -> Totals {
        let sum = |f: fn(&WorkerStats) -> &AtomicU64| -> u64 {
            self.workers
                .iter()
                .map(|w| f(w).load(Ordering::Relaxed))
                .sum()
        };
        let xdp = self.xdp.as_ref().and_then(|p| {
            let counters = p
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .counters()
                .ok()?;
            let by = |action: &str| -> u64 {
                counters
                    .iter()
                    .filter(|(c, _)| c.action() == action)
                    .map(|(_, n)| n)
                    .sum()
            };
            Some((by("redirected"), by("dropped"), by("passed")))
        });
        Totals {
            sessions: sum(|s| &s.sessions),
            datagrams_in: sum(|s| &s.datagrams_in),
            rtp_out: sum(|s| &s.rtp_out),
            retransmitted: sum(|s| &s.retransmitted),
            xdp,
        }
    }
}

type WorkerCounter = (&'static str, &'static str, fn(&WorkerStats) -> &AtomicU64);

const WORKER_COUNTERS: &[WorkerCounter] = &[
    (
        "datagrams_received",
        "Datagrams received on the media port.",
        |s| &s.datagrams_in,
    ),
    (
        "dropped_unknown_source",
        "Datagrams from addresses no session knows, not STUN for one: dropped.",
        |s| &s.unknown_source,
    ),
    (
        "dropped_unknown_ufrag",
        "STUN checks for an ICE ufrag no session has: dropped.",
        |s| &s.unknown_ufrag,
    ),
    (
        "dropped_unauthenticated",
        "STUN checks not signed with the session's ICE password, and anything else from an address that never sent a valid one: dropped.",
        |s| &s.unauthenticated,
    ),
    (
        "dropped_malformed",
        "Datagrams of known sessions that did not parse: dropped.",
        |s| &s.malformed,
    ),
    (
        "dropped_srtcp_auth",
        "SRTCP that failed authentication or replay checks: dropped.",
        |s| &s.srtcp_failed,
    ),
    (
        "dropped_unexpected_media",
        "Datagrams a viewer has no reason to send: SRTP media (viewers only receive), DTLS other than an alert after the handshake: dropped.",
        |s| &s.unexpected_media,
    ),
    (
        "forwarded_datagrams",
        "Datagrams handed to the worker that owns their session.",
        |s| &s.forwarded,
    ),
    (
        "rtp_packets_sent",
        "SRTP media packets sent to viewers (retransmissions included).",
        |s| &s.rtp_out,
    ),
    (
        "rtp_bytes_sent",
        "Bytes of SRTP media sent to viewers.",
        |s| &s.rtp_bytes_out,
    ),
    ("rtcp_packets_sent", "SRTCP sender reports sent.", |s| {
        &s.rtcp_out
    }),
    (
        "nacks_received",
        "NACK feedback items received from viewers.",
        |s| &s.nacks,
    ),
    (
        "retransmitted_packets",
        "Packets resent from the history ring on NACK.",
        |s| &s.retransmitted,
    ),
    (
        "retransmit_missing",
        "NACKed packets no longer (or never) in the history ring.",
        |s| &s.retransmit_missing,
    ),
    (
        "retransmit_limited",
        "NACKed packets not resent: the viewer's retransmission budget was spent.",
        |s| &s.retransmit_limited,
    ),
    (
        "keyframe_requests",
        "PLI and FIR received from viewers.",
        |s| &s.keyframe_requests,
    ),
    (
        "fanout_lagged_packets",
        "Packets a worker skipped because the ring overwrote them first.",
        |s| &s.lagged,
    ),
    (
        "send_dropped",
        "Datagrams dropped because the socket's send buffer was full.",
        |s| &s.send_dropped,
    ),
    ("send_calls", "Send syscalls (sendmmsg) made.", |s| {
        &s.send_calls
    }),
];

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        for (name, help, field) in WORKER_COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (i, w) in self.workers.iter().enumerate() {
                let labels = [("worker", i.to_string())];
                ConstCounter::new(field(w).load(Ordering::Relaxed))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        let mut sessions = encoder.encode_descriptor(
            "sessions",
            "Viewer sessions owned by each worker.",
            None,
            MetricType::Gauge,
        )?;
        for (i, w) in self.workers.iter().enumerate() {
            let labels = [("worker", i.to_string())];
            ConstGauge::new(w.sessions.load(Ordering::Relaxed) as i64)
                .encode(sessions.encode_family(&labels)?)?;
        }

        let mut readers = encoder.encode_descriptor(
            "path_readers",
            "Viewers of each path, answered or connected.",
            None,
            MetricType::Gauge,
        )?;
        for p in &self.paths {
            let labels = [("path", p.name.clone())];
            ConstGauge::new(p.readers.load(Ordering::Relaxed) as i64)
                .encode(readers.encode_family(&labels)?)?;
        }
        type TrackCounter = (
            &'static str,
            &'static str,
            fn(&crate::track::TrackStats) -> &AtomicU64,
        );
        const TRACK_COUNTERS: &[TrackCounter] = &[
            (
                "track_packets_received",
                "RTP packets stored in each track's history ring.",
                |s| &s.packets,
            ),
            (
                "track_bytes_received",
                "Payload bytes stored in each track's history ring.",
                |s| &s.bytes,
            ),
            (
                "track_duplicates",
                "Duplicate packets the track dropped.",
                |s| &s.duplicates,
            ),
            (
                "track_source_restarts",
                "Source restarts (new SSRC, sequence jumps) the track smoothed over.",
                |s| &s.restarts,
            ),
        ];
        for (name, help, field) in TRACK_COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for p in &self.paths {
                for (i, t) in p.tracks.iter().enumerate() {
                    let labels = [
                        ("path", p.name.clone()),
                        ("track", i.to_string()),
                        ("codec", format!("{:?}", t.info.codec)),
                    ];
                    ConstCounter::new(field(&t.stats).load(Ordering::Relaxed))
                        .encode(family.encode_family(&labels)?)?;
                }
            }
        }
        type IngestCounter = (&'static str, &'static str, fn(&PathStats) -> u64);
        const INGEST_COUNTERS: &[IngestCounter] = &[
            (
                "ingest_packets",
                "RTP packets a source delivered to its path's tracks.",
                |s| s.received,
            ),
            (
                "ingest_dropped_malformed",
                "Datagrams on a source port that were not RTP or RTCP.",
                |s| s.malformed,
            ),
            (
                "ingest_dropped_unknown_payload_type",
                "RTP packets whose payload type rtpSDP does not announce.",
                |s| s.unknown_payload_type,
            ),
            (
                "ingest_rtcp_ignored",
                "RTCP packets on a source's RTP port (ignored).",
                |s| s.rtcp,
            ),
        ];
        let stats = self.ingest.stats();
        for (name, help, field) in INGEST_COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for p in &stats.paths {
                let labels = [("path", p.path.clone())];
                ConstCounter::new(field(p)).encode(family.encode_family(&labels)?)?;
            }
        }
        if let Some(xdp) = &self.xdp {
            // A failed read leaves the XDP counters out of this scrape, nothing more.
            let counters = xdp
                .lock()
                .map(|p| p.counters())
                .unwrap_or_else(|e| e.into_inner().counters());
            if let Ok(counters) = counters {
                let mut family = encoder.encode_descriptor(
                    "xdp_packets",
                    "Packets the XDP program saw on the media port's interface, by what it did and why.",
                    None,
                    MetricType::Counter,
                )?;
                for (counter, n) in counters {
                    let labels = [("action", counter.action()), ("reason", counter.reason())];
                    ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}
