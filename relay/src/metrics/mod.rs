//! Prometheus metrics, read at scrape time from the counters each stage keeps
//! (per-worker atomics, per-track atomics): nothing on the hot path but a relaxed add.
//! MediaMTX's families of paths and sessions come first, under its names
//! ([`mediamtx`]); relay's own follow, prefixed `relay_`.

mod mediamtx;

use std::fmt::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::http::connections::Listeners;
use crate::ingest::{IngestCounters, PathStats};
use crate::io::xdp::XdpProgram;
use crate::paths::Paths;
use crate::worker::registry::Registry as Sessions;
use crate::worker::viewer::Reception;
use crate::worker::WorkerStats;

pub use mediamtx::Filter;
pub(crate) use mediamtx::{inbound_bytes, outbound_bytes};

/// A histogram kept in atomics, its buckets fixed: workers observe it without a lock,
/// a scrape reads it. (prometheus_client's own takes a lock per observation.)
#[derive(Debug)]
pub struct AtomicHistogram {
    /// Upper bounds, ascending; +Inf follows.
    bounds: &'static [f64],
    /// Per bucket, not cumulative; the last is +Inf.
    counts: Box<[AtomicU64]>,
    /// The sum of observations, in millionths.
    sum_micros: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: &'static [f64]) -> AtomicHistogram {
        AtomicHistogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        let i = self.bounds.partition_point(|&b| b < value);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    /// How many observations, and their sum.
    pub fn totals(&self) -> (u64, f64) {
        let count = self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        (count, self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6)
    }

    fn encode(&self, encoder: prometheus_client::encoding::MetricEncoder) -> Result<(), Error> {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(self.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let (count, sum) = self.totals();
        let mut encoder = encoder;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

/// What viewers of a path report receiving, one observation per report block, and how
/// long they took to start: how a path's audience fares without a time series per
/// viewer.
#[derive(Debug)]
pub struct ReceptionHistograms {
    pub rtt: AtomicHistogram,
    pub jitter: AtomicHistogram,
    pub fraction_lost: AtomicHistogram,
    /// From the WHEP answer to the viewer's DTLS done, one observation per viewer.
    pub setup: AtomicHistogram,
}

impl Default for ReceptionHistograms {
    fn default() -> Self {
        ReceptionHistograms {
            rtt: AtomicHistogram::new(&[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
            jitter: AtomicHistogram::new(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25]),
            fraction_lost: AtomicHistogram::new(&[0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]),
            setup: AtomicHistogram::new(&[
                0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        }
    }
}

impl ReceptionHistograms {
    pub fn observe(&self, r: &Reception) {
        self.fraction_lost
            .observe(f64::from(r.fraction_lost) / 256.0);
        self.jitter.observe(r.jitter.as_secs_f64());
        if let Some(rtt) = r.rtt {
            self.rtt.observe(rtt.as_secs_f64());
        }
    }
}

#[derive(Clone)]
pub struct Metrics {
    workers: Vec<Arc<WorkerStats>>,
    paths: Arc<Paths>,
    ingest: IngestCounters,
    xdp: Option<Arc<Mutex<XdpProgram>>>,
    sessions: Arc<Sessions>,
    http: Arc<Listeners>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(
        workers: Vec<Arc<WorkerStats>>,
        paths: Arc<Paths>,
        ingest: IngestCounters,
        xdp: Option<Arc<Mutex<XdpProgram>>>,
        sessions: Arc<Sessions>,
        http: Arc<Listeners>,
    ) -> Metrics {
        Metrics {
            workers,
            paths,
            ingest,
            xdp,
            sessions,
            http,
        }
    }

    /// The OpenMetrics text of what `filter` selects.
    /// The XDP program whose counters it reads, if the relay runs one.
    pub fn xdp(&self) -> Option<Arc<Mutex<XdpProgram>>> {
        self.xdp.clone()
    }

    pub fn scrape(&self, filter: &Filter) -> Result<String, Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(mediamtx::MediaMtx {
            filter: filter.clone(),
            // The paths of this scrape: those made from patterns come and go.
            paths: self.paths.all(),
            sessions: self.sessions.clone(),
        }));
        if filter.shows_relay() {
            registry
                .sub_registry_with_prefix("relay")
                .register_collector(Box::new(self.clone()));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)?;
        Ok(text)
    }
}

impl crate::http::Scrape for Metrics {
    fn scrape(&self, query: &str) -> Result<String, String> {
        let filter = Filter::parse(query)?;
        Metrics::scrape(self, &filter).map_err(|_| "the metrics could not be written".into())
    }
}

impl Metrics {
    /// Sessions answered and not yet connected, their limits, and the offers refused
    /// for them (worker/admission.rs).
    fn encode_pending(&self, encoder: &mut DescriptorEncoder) -> Result<(), Error> {
        let a = self.sessions.admission();
        let gauges = [
            (
                "pending_sessions",
                "Sessions answered and not yet connected (no ICE check signed with their password yet).",
                a.pending,
            ),
            (
                "pending_sessions_most_of_one_ip",
                "The most pending sessions any one client address has.",
                a.most_of_one_address,
            ),
            (
                "workers_full",
                "Workers whose media to their viewers is 250 ms late (until back within 50 ms): while any is, offers are refused (503).",
                self.sessions.workers_full() as usize,
            ),
        ];
        for (name, help, value) in gauges {
            ConstGauge::new(value as i64).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)?;
        }
        let mut limits = encoder.encode_descriptor(
            "pending_sessions_limit",
            "Pending sessions allowed per client address (webrtcMaxPendingSessionsPerIP) and in total (webrtcMaxPendingSessions); 0: no limit.",
            None,
            MetricType::Gauge,
        )?;
        for (scope, limit) in [("address", a.limits.per_address), ("total", a.limits.total)] {
            ConstGauge::new(limit as i64).encode(limits.encode_family(&[("scope", scope)])?)?;
        }
        let mut refused = encoder.encode_descriptor(
            "pending_refused",
            "Offers refused before they cost anything: 429 past a pending-session limit (address, total), 503 while a worker is full (full).",
            None,
            MetricType::Counter,
        )?;
        let reasons = [
            ("address", a.refused_address),
            ("total", a.refused_total),
            ("full", a.refused_full),
        ];
        for (reason, n) in reasons {
            ConstCounter::new(n).encode(refused.encode_family(&[("reason", reason)])?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// Each HTTP listener's open connections, their limits and the connections refused
    /// (http/connections.rs).
    fn encode_http_connections(&self, encoder: &mut DescriptorEncoder) -> Result<(), Error> {
        let listeners = self.http.all().map(|(name, c)| (name, c.stats()));
        let mut open = encoder.encode_descriptor(
            "http_connections",
            "HTTP connections open, by listener (webrtc, metrics, api, pprof).",
            None,
            MetricType::Gauge,
        )?;
        for (listener, s) in &listeners {
            ConstGauge::new(s.open as i64)
                .encode(open.encode_family(&[("listener", *listener)])?)?;
        }
        let mut most = encoder.encode_descriptor(
            "http_connections_most_of_one_ip",
            "The most HTTP connections any one client address holds open, by listener.",
            None,
            MetricType::Gauge,
        )?;
        for (listener, s) in &listeners {
            ConstGauge::new(s.most_of_one_address as i64)
                .encode(most.encode_family(&[("listener", *listener)])?)?;
        }
        let mut limits = encoder.encode_descriptor(
            "http_connections_limit",
            "HTTP connections each listener holds open per client address (httpMaxConnectionsPerIP) and in total (httpMaxConnections); 0: no limit.",
            None,
            MetricType::Gauge,
        )?;
        let l = listeners[0].1.limits;
        for (scope, limit) in [("address", l.per_address), ("total", l.total)] {
            ConstGauge::new(limit as i64).encode(limits.encode_family(&[("scope", scope)])?)?;
        }
        let mut refused = encoder.encode_descriptor(
            "http_connections_refused",
            "HTTP connections answered 503 and closed at once because a limit was reached, by listener and limit (address, total).",
            None,
            MetricType::Counter,
        )?;
        for (listener, s) in &listeners {
            for (reason, n) in [("address", s.refused_address), ("total", s.refused_total)] {
                ConstCounter::new(n).encode(
                    refused.encode_family(&[("listener", *listener), ("reason", reason)])?,
                )?;
            }
        }
        Ok(())
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
        "dropped_stun_global_limit",
        "STUN checks from addresses no session of the worker has, past the workers' share of xdpSTUNGlobalRate/xdpSTUNGlobalBurst: dropped before any lookup.",
        |s| &s.stun_global_limit,
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
        "retransmitted_bytes",
        "Bytes of SRTP media resent on NACK (included in rtp_bytes_sent): what loss recovery costs.",
        |s| &s.retransmitted_bytes,
    ),
    (
        "rtx_packets_sent",
        "Resent packets that went on the viewer's RTX stream (RFC 4588), where it negotiated one.",
        |s| &s.rtx_packets,
    ),
    (
        "rtx_bytes_sent",
        "Bytes of SRTP sent on RTX streams.",
        |s| &s.rtx_bytes,
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
        "rtcp_report_blocks",
        "Reception report blocks received from viewers.",
        |s| &s.report_blocks,
    ),
    (
        "dropped_report_blocks",
        "Report blocks about no stream the viewer receives, or naming a sender report the relay never sent: ignored.",
        |s| &s.report_blocks_dropped,
    ),
    (
        "fanout_lagged_packets",
        "Packets a worker skipped because the history let go of them first.",
        |s| &s.lagged,
    ),
    (
        "instant_starts",
        "Viewers started at once on the newest GOP the history holds (keyframeCache).",
        |s| &s.instant_starts,
    ),
    (
        "skipped_to_keyframe",
        "Viewers too slow to catch up on a cached GOP, sent on to the next keyframe.",
        |s| &s.skipped_to_keyframe,
    ),
    (
        "congestion_skips",
        "Viewers' video sent on to the next keyframe because their reports showed a link that cannot take the stream.",
        |s| &s.congestion_skips,
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
        self.encode_pending(&mut encoder)?;
        self.encode_http_connections(&mut encoder)?;
        ConstCounter::new(crate::logs::write_errors()).encode(encoder.encode_descriptor(
            "log_write_errors",
            "Log lines stderr refused (a full disk, say), dropped.",
            None,
            MetricType::Counter,
        )?)?;

        // The paths of this scrape: those made from patterns come and go.
        let paths = self.paths.all();
        let mut readers = encoder.encode_descriptor(
            "path_readers",
            "Viewers of each path, answered or connected.",
            None,
            MetricType::Gauge,
        )?;
        for p in &paths {
            let labels = [("path", p.name.clone())];
            ConstGauge::new(p.readers() as i64).encode(readers.encode_family(&labels)?)?;
        }
        let mut states = encoder.encode_descriptor(
            "path_state",
            "1 for each path's current state: waitingForPublisher, idle, connecting, ready, \
             failed (the log says why).",
            None,
            MetricType::Gauge,
        )?;
        for p in &paths {
            let labels = [("path", p.name.clone()), ("state", p.state().name().into())];
            ConstGauge::new(1).encode(states.encode_family(&labels)?)?;
        }
        let tracks: Vec<_> = paths
            .iter()
            .flat_map(|p| {
                let tracks = p.tracks().map(|t| t.to_vec()).unwrap_or_default();
                tracks.into_iter().enumerate().map(|(i, t)| {
                    let labels = [
                        ("path", p.name.clone()),
                        ("track", i.to_string()),
                        ("codec", format!("{:?}", t.info.codec)),
                    ];
                    (labels, t)
                })
            })
            .collect();
        type PathHistogram = (
            &'static str,
            &'static str,
            fn(&ReceptionHistograms) -> &AtomicHistogram,
        );
        const RECEPTION: &[PathHistogram] = &[
            (
                "viewer_rtt_seconds",
                "Round trip to viewers, from their reception reports (RFC 3550 6.4.1), one observation per report.",
                |r| &r.rtt,
            ),
            (
                "viewer_jitter_seconds",
                "Interarrival jitter viewers report, one observation per report.",
                |r| &r.jitter,
            ),
            (
                "viewer_fraction_lost",
                "Fraction of packets lost since their previous report, as viewers report it.",
                |r| &r.fraction_lost,
            ),
            (
                "viewer_setup_seconds",
                "Time from the WHEP answer to the viewer's DTLS handshake done (its ICE checks and handshake as the relay saw them), one observation per viewer.",
                |r| &r.setup,
            ),
        ];
        for (name, help, field) in RECEPTION {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for p in &paths {
                let labels = [("path", p.name.clone())];
                field(&p.reception).encode(family.encode_family(&labels)?)?;
            }
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
            for (labels, t) in &tracks {
                ConstCounter::new(field(&t.stats).load(Ordering::Relaxed))
                    .encode(family.encode_family(labels)?)?;
            }
        }
        type TrackGauge = (
            &'static str,
            &'static str,
            fn(&crate::track::TrackStats) -> f64,
        );
        const TRACK_GAUGES: &[TrackGauge] = &[
            (
                "track_history_packets",
                "Packets each track's history holds now, shared by all its viewers.",
                |s| s.held_packets.load(Ordering::Relaxed) as f64,
            ),
            (
                "track_history_bytes",
                "Payload bytes each track's history holds now (historyMaxBytes caps it).",
                |s| s.held_bytes.load(Ordering::Relaxed) as f64,
            ),
            (
                "track_history_seconds",
                "Time from the oldest packet each track's history holds to the newest \
                 (historyDuration, or the GOP with keyframeCache).",
                |s| s.held_span_us.load(Ordering::Relaxed) as f64 / 1e6,
            ),
        ];
        for (name, help, value) in TRACK_GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, t) in &tracks {
                ConstGauge::new(value(&t.stats)).encode(family.encode_family(labels)?)?;
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
            let (counters, reattached) = {
                let program = xdp.lock().unwrap_or_else(|e| e.into_inner());
                (program.counters(), program.reattached())
            };
            ConstCounter::new(reattached).encode(encoder.encode_descriptor(
                "xdp_reattached",
                "Times the XDP program was found detached from its interface (by hand) and attached again.",
                None,
                MetricType::Counter,
            )?)?;
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
