//! MediaMTX's metrics of paths and WebRTC sessions, under MediaMTX's names and labels
//! (`paths{name,state}`, `paths_readers`, `webrtc_sessions{id,state,path,remoteAddr}`,
//! ...), so that its users' dashboards and alerts keep working, with its filters
//! (`?type=paths|webrtc_sessions`, `?path=`, `?webrtc_session=`). Gauges, unprefixed, as
//! MediaMTX writes them; relay's own metrics follow under `relay_`.

use std::collections::BTreeMap;
use std::fmt::Error;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::paths::{PathState, ServedPath};
use crate::worker::registry::Registry as Sessions;
use crate::worker::session_info::{SessionCounts, SessionInfo};

/// What a scrape asks for: MediaMTX's query parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `type`: `paths`, `webrtc_sessions`, or `relay` (relay's own metrics only).
    pub kind: Option<Kind>,
    /// `path`: one path's entries.
    pub path: Option<String>,
    /// `webrtc_session`: one session's entries.
    pub session: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Paths,
    WebrtcSessions,
    Relay,
}

impl Filter {
    /// From a URL query; an unknown `type` is an error that says what is known.
    pub fn parse(query: &str) -> Result<Filter, String> {
        let mut filter = Filter::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                // An empty value is no filter, as MediaMTX reads each.
                "type" if value.is_empty() => filter.kind = None,
                "type" => {
                    filter.kind = Some(match &*value {
                        "paths" => Kind::Paths,
                        "webrtc_sessions" => Kind::WebrtcSessions,
                        "relay" => Kind::Relay,
                        other => {
                            return Err(format!(
                                "type '{other}' is not served here: use paths, \
                                 webrtc_sessions or relay"
                            ))
                        }
                    })
                }
                "path" => filter.path = Some(value.into_owned()).filter(|v| !v.is_empty()),
                "webrtc_session" => {
                    filter.session = Some(value.into_owned()).filter(|v| !v.is_empty())
                }
                _ => {}
            }
        }
        Ok(filter)
    }

    fn any_entry_filter(&self) -> bool {
        self.path.is_some() || self.session.is_some()
    }

    /// As MediaMTX decides: a type shows when asked for (or none is), and when no entry
    /// filter is set or one of its own is.
    fn shows(&self, kind: Kind) -> bool {
        let entry = match kind {
            Kind::Paths => self.path.is_some(),
            Kind::WebrtcSessions => self.session.is_some(),
            Kind::Relay => false,
        };
        self.kind.is_none_or(|k| k == kind) && (!self.any_entry_filter() || entry)
    }

    pub fn shows_relay(&self) -> bool {
        self.shows(Kind::Relay)
    }
}

pub struct MediaMtx {
    pub filter: Filter,
    pub paths: Vec<Arc<ServedPath>>,
    pub sessions: Arc<Sessions>,
}

type SessionGauge = (&'static str, fn(&SessionCounts) -> f64);

/// MediaMTX's per-session gauges relay measures, and relay's own beside them (what the
/// viewer reports of what it received, the round trip, and the skips its reports caused).
const SESSION_GAUGES: &[SessionGauge] = &[
    ("webrtc_sessions_inbound_bytes", |c| c.inbound_bytes as f64),
    ("webrtc_sessions_inbound_rtp_packets", |c| {
        c.inbound_rtp_packets as f64
    }),
    ("webrtc_sessions_inbound_rtcp_packets", |c| {
        c.inbound_rtcp_packets as f64
    }),
    ("webrtc_sessions_outbound_bytes", |c| {
        c.outbound_bytes as f64
    }),
    ("webrtc_sessions_outbound_rtp_packets", |c| {
        c.outbound_rtp_packets as f64
    }),
    ("webrtc_sessions_outbound_rtcp_packets", |c| {
        c.outbound_rtcp_packets as f64
    }),
    ("webrtc_sessions_outbound_rtp_packets_lost", |c| {
        c.outbound_rtp_packets_lost as f64
    }),
    ("webrtc_sessions_outbound_rtp_packets_jitter", |c| {
        c.jitter.as_secs_f64()
    }),
    ("webrtc_sessions_rtt", |c| {
        c.rtt.map_or(0.0, |r| r.as_secs_f64())
    }),
    ("webrtc_sessions_congestion_skips", |c| {
        c.congestion_skips as f64
    }),
];

impl std::fmt::Debug for MediaMtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaMtx")
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

impl Collector for MediaMtx {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        let sessions = self.sessions.sessions();
        if self.filter.shows(Kind::Paths) {
            self.encode_paths(&mut encoder, &sessions)?;
        }
        if self.filter.shows(Kind::WebrtcSessions) {
            let mut sessions: Vec<_> = sessions
                .iter()
                .filter(|s| self.filter.session.as_ref().is_none_or(|id| *id == s.id))
                .map(|s| (session_labels(s), s.counts()))
                .collect();
            sessions.sort_by(|a, b| a.0.cmp(&b.0));
            let mut family = encoder.encode_descriptor(
                "webrtc_sessions",
                "1 for each WebRTC session (MediaMTX's).",
                None,
                MetricType::Gauge,
            )?;
            for (labels, _) in &sessions {
                ConstGauge::new(1).encode(family.encode_family(labels)?)?;
            }
            for (name, value) in SESSION_GAUGES {
                let mut family = encoder.encode_descriptor(
                    name,
                    "MediaMTX's, per session.",
                    None,
                    MetricType::Gauge,
                )?;
                for (labels, counts) in &sessions {
                    ConstGauge::new(value(counts)).encode(family.encode_family(labels)?)?;
                }
            }
        }
        Ok(())
    }
}

type Labels = [(&'static str, String); 4];

fn session_labels(s: &SessionInfo) -> Labels {
    [
        ("id", s.id.clone()),
        ("state", s.role.name().to_owned()),
        ("path", s.path.clone()),
        (
            "remoteAddr",
            s.remote().map(|r| r.to_string()).unwrap_or_default(),
        ),
    ]
}

impl MediaMtx {
    fn encode_paths(
        &self,
        encoder: &mut DescriptorEncoder,
        sessions: &[Arc<SessionInfo>],
    ) -> Result<(), Error> {
        let outbound = outbound_bytes(sessions);
        let paths: Vec<_> = self
            .paths
            .iter()
            .filter(|p| self.filter.path.as_ref().is_none_or(|name| *name == p.name))
            .map(|p| {
                let ready = matches!(p.state(), PathState::Ready { .. });
                let labels = [
                    ("name", p.name.clone()),
                    ("state", if ready { "ready" } else { "notReady" }.to_owned()),
                ];
                (labels, p)
            })
            .collect();
        let mut family = encoder.encode_descriptor(
            "paths",
            "1 for each path (MediaMTX's).",
            None,
            MetricType::Gauge,
        )?;
        for (labels, _) in &paths {
            ConstGauge::new(1).encode(family.encode_family(labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "paths_readers",
            "Readers of each path, by kind (MediaMTX's).",
            None,
            MetricType::Gauge,
        )?;
        for ([name, state], p) in &paths {
            let labels = [
                name.clone(),
                state.clone(),
                ("readerType", "webRTCSession".into()),
            ];
            ConstGauge::new(p.readers() as i64).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "paths_inbound_bytes",
            "Media payload bytes each path's source delivered (MediaMTX's).",
            None,
            MetricType::Gauge,
        )?;
        for (labels, p) in &paths {
            ConstGauge::new(inbound_bytes(p) as f64).encode(family.encode_family(labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "paths_outbound_bytes",
            "Bytes sent to each path's current readers (MediaMTX's).",
            None,
            MetricType::Gauge,
        )?;
        for (labels, p) in &paths {
            let bytes = outbound.get(p.name.as_str()).copied().unwrap_or(0);
            ConstGauge::new(bytes as f64).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

/// MediaMTX's `inboundBytes` of a path: the media payload its source delivered into its
/// current tracks.
pub(crate) fn inbound_bytes(path: &ServedPath) -> u64 {
    path.tracks()
        .iter()
        .flat_map(|t| t.iter())
        .map(|t| t.stats.bytes.load(Ordering::Relaxed))
        .sum()
}

/// MediaMTX's `outboundBytes` of each path with sessions: what its current sessions
/// were sent.
pub(crate) fn outbound_bytes(sessions: &[Arc<SessionInfo>]) -> BTreeMap<&str, u64> {
    let mut outbound: BTreeMap<&str, u64> = BTreeMap::new();
    for s in sessions {
        *outbound.entry(&s.path).or_default() += s.counts().outbound_bytes;
    }
    outbound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_read_mediamtx_queries_and_refuse_unknown_types() {
        // Empty and junk queries select everything.
        for query in ["", "&&&", "=", "%zz", "type", "type=", "path"] {
            let filter = Filter::parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
            assert!(filter.shows(Kind::Paths) && filter.shows_relay(), "{query}");
        }
        let paths = Filter::parse("type=paths&path=cam").unwrap();
        assert!(paths.shows(Kind::Paths));
        assert!(!paths.shows(Kind::WebrtcSessions) && !paths.shows_relay());
        // A path filter alone hides the other families, as in MediaMTX.
        let one = Filter::parse("path=cam").unwrap();
        assert!(one.shows(Kind::Paths) && !one.shows(Kind::WebrtcSessions));
        assert!(Filter::parse("type=hls_muxers")
            .unwrap_err()
            .contains("paths"));
    }
}
