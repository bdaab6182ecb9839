//! The API's JSON objects, under MediaMTX's names (its `api/openapi.yaml`), from what
//! the relay knows of a path or a session. Fields MediaMTX has and relay does not
//! measure are left out rather than sent empty; relay's own follow MediaMTX's.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::config::{Config, PathPattern};
use crate::ingest::Source;
use crate::metrics::{inbound_bytes, outbound_bytes};
use crate::paths::ServedPath;
use crate::track::Codec;
use crate::worker::session_info::{Role, SessionInfo};

/// A time as MediaMTX writes one (Go's RFC 3339 with nanoseconds), in UTC.
fn time(at: SystemTime) -> String {
    humantime::format_rfc3339_nanos(at).to_string()
}

/// MediaMTX's `Error`.
#[derive(Debug, Serialize)]
pub(super) struct Error {
    pub status: &'static str,
    pub error: String,
}

/// MediaMTX's `OK`.
#[derive(Debug, Serialize)]
pub(super) struct Success {
    pub status: &'static str,
}

#[derive(Debug, Serialize)]
pub(super) struct Info {
    started: String,
    version: String,
}

impl Info {
    pub(super) fn new(started: SystemTime) -> Info {
        Info {
            started: time(started),
            version: format!("v{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// MediaMTX's `Path`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Path {
    name: String,
    conf_name: String,
    source: Option<PathSource>,
    // relay's paths are available exactly while their source is online and ready (it
    // has no alwaysAvailable): MediaMTX's three flags agree.
    ready: bool,
    ready_time: Option<String>,
    available: bool,
    available_time: Option<String>,
    online: bool,
    online_time: Option<String>,
    tracks: Vec<&'static str>,
    tracks2: Vec<PathTrack>,
    inbound_bytes: u64,
    outbound_bytes: u64,
    readers: Vec<PathReader>,
    /// relay's own: where the source stands (`ready`, `waitingForPublisher`, `idle`,
    /// `connecting`, `failed`).
    state: &'static str,
}

#[derive(Debug, Serialize)]
pub(super) struct PathSource {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
}

#[derive(Debug, Serialize)]
pub(super) struct PathReader {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PathTrack {
    codec: &'static str,
    codec_props: Option<G711Props>,
}

/// The only codec whose properties relay knows without parsing the stream.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct G711Props {
    channel_count: u32,
    mu_law: bool,
    sample_rate: u32,
}

/// MediaMTX's name of a codec (`PathTrackCodec`).
fn codec_name(codec: Codec) -> &'static str {
    match codec {
        Codec::H264 => "H264",
        Codec::H265 => "H265",
        Codec::Vp8 => "VP8",
        Codec::Vp9 => "VP9",
        Codec::Av1 => "AV1",
        Codec::Opus => "Opus",
        Codec::Pcmu | Codec::Pcma => "G711",
    }
}

/// MediaMTX's reader type of a WebRTC session.
const WEBRTC_SESSION: &str = "webRTCSession";

impl Path {
    /// `path` as it stands, with the sessions of the whole relay (`sessions`).
    pub(super) fn new(path: &ServedPath, config: &Config, sessions: &[Arc<SessionInfo>]) -> Path {
        let on_path = || sessions.iter().filter(|s| s.path == path.name);
        let state = path.state();
        let ready = state.is_ready();
        let ready_time = path.ready_since().map(time);
        let tracks = path.tracks();
        let tracks = tracks.iter().flat_map(|t| t.iter());
        let (conf_name, source) = match conf(config, &path.name) {
            Some((key, Source::Publisher)) => {
                let publisher = on_path().find(|s| s.role == Role::Publish);
                let source = publisher.map(|s| PathSource {
                    kind: Source::Publisher.mediamtx_type(),
                    id: s.id.clone(),
                });
                (key, source)
            }
            Some((key, configured)) => {
                let source = PathSource {
                    kind: configured.mediamtx_type(),
                    id: String::new(),
                };
                (key, Some(source))
            }
            None => (path.name.clone(), None),
        };
        Path {
            name: path.name.clone(),
            conf_name,
            source,
            ready,
            ready_time: ready_time.clone(),
            available: ready,
            available_time: ready_time.clone(),
            online: ready,
            online_time: ready_time,
            tracks: tracks.clone().map(|t| codec_name(t.info.codec)).collect(),
            tracks2: tracks
                .map(|t| PathTrack {
                    codec: codec_name(t.info.codec),
                    codec_props: matches!(t.info.codec, Codec::Pcmu | Codec::Pcma).then(|| {
                        G711Props {
                            channel_count: 1,
                            mu_law: t.info.codec == Codec::Pcmu,
                            sample_rate: t.info.codec.clock_rate(),
                        }
                    }),
                })
                .collect(),
            inbound_bytes: inbound_bytes(path),
            outbound_bytes: outbound_bytes(sessions)
                .get(path.name.as_str())
                .copied()
                .unwrap_or(0),
            readers: on_path()
                .filter(|s| s.role == Role::Read)
                .map(|s| PathReader {
                    kind: WEBRTC_SESSION,
                    id: s.id.clone(),
                })
                .collect(),
            state: state.name(),
        }
    }
}

/// The `paths` key path `name` comes from, and its source: the entry of that name, else
/// the first pattern that matches it (as the relay's path table finds it). A publisher's
/// path has a source only while one publishes (MediaMTX answers null meanwhile).
fn conf(config: &Config, name: &str) -> Option<(String, Source)> {
    if let Some(path) = config.paths.get(name) {
        return Some((name.to_owned(), path.source.clone()));
    }
    let (pattern, path) = PathPattern::first_match(&config.path_patterns, name)?;
    Some((pattern.key.clone(), path.ok()?.source))
}

/// MediaMTX's `WebRTCSession`, with relay's measures of what the peer reports beside
/// its counters.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WebRtcSession {
    id: String,
    created: String,
    /// Empty until the peer's first authenticated connectivity check.
    remote_addr: String,
    /// A viewer's ICE and DTLS completed (media flows); a publisher's ICE did.
    peer_connection_established: bool,
    state: &'static str,
    path: String,
    /// The query string of its WHEP or WHIP request.
    query: String,
    inbound_bytes: u64,
    #[serde(rename = "inboundRTPPackets")]
    inbound_rtp_packets: u64,
    #[serde(rename = "inboundRTCPPackets")]
    inbound_rtcp_packets: u64,
    outbound_bytes: u64,
    #[serde(rename = "outboundRTPPackets")]
    outbound_rtp_packets: u64,
    #[serde(rename = "outboundRTCPPackets")]
    outbound_rtcp_packets: u64,
    /// relay's own: what the viewer reported lost of what it was sent.
    #[serde(rename = "outboundRTPPacketsLost")]
    outbound_rtp_packets_lost: u64,
    /// relay's own: the viewer's reported jitter, the worst of its streams, in seconds.
    #[serde(rename = "outboundRTPPacketsJitter")]
    outbound_rtp_packets_jitter: f64,
    /// relay's own: the last round trip measured, in seconds; null until one is.
    rtt: Option<f64>,
    /// relay's own: times the viewer's video skipped to the next keyframe because its
    /// link could not take the stream.
    congestion_skips: u64,
}

impl WebRtcSession {
    pub(super) fn new(session: &SessionInfo) -> WebRtcSession {
        let counts = session.counts();
        let remote = session.remote();
        WebRtcSession {
            id: session.id.clone(),
            created: time(session.created),
            remote_addr: remote.map(|r| r.to_string()).unwrap_or_default(),
            peer_connection_established: remote.is_some(),
            state: session.role.name(),
            path: session.path.clone(),
            query: session.query.clone(),
            inbound_bytes: counts.inbound_bytes,
            inbound_rtp_packets: counts.inbound_rtp_packets,
            inbound_rtcp_packets: counts.inbound_rtcp_packets,
            outbound_bytes: counts.outbound_bytes,
            outbound_rtp_packets: counts.outbound_rtp_packets,
            outbound_rtcp_packets: counts.outbound_rtcp_packets,
            outbound_rtp_packets_lost: counts.outbound_rtp_packets_lost,
            outbound_rtp_packets_jitter: counts.jitter.as_secs_f64(),
            rtt: counts.rtt.map(|r| r.as_secs_f64()),
            congestion_skips: counts.congestion_skips,
        }
    }
}
