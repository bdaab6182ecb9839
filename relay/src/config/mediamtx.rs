//! The keys of MediaMTX's `mediamtx.yml` that configure what relay does not run (its
//! RTSP, RTMP, HLS, SRT and MoQ servers, recording, playback...). A user's file with
//! them loads: they are accepted and named once, grouped, in one warning, so that no
//! one believes relay records or serves HLS because the file says so. Keys whose value
//! would change who may do what (encryption, trusted proxies, certificate pinning) are
//! not here: relay reads them and refuses values it cannot honour (config.rs).

use std::collections::BTreeMap;
use std::fmt;

/// What relay does not run, and the keys that configure it.
struct Feature {
    name: &'static str,
    keys: &'static [&'static str],
    /// Keys starting with this belong to it too (MediaMTX has dozens of rpiCamera*).
    prefix: Option<&'static str>,
}

const fn feature(name: &'static str, keys: &'static [&'static str]) -> Feature {
    Feature {
        name,
        keys,
        prefix: None,
    }
}

/// Top-level keys.
const GLOBAL: &[Feature] = &[
    feature(
        "log files and syslog (relay logs to stderr)",
        &["logDestinations", "logFile", "sysLogPrefix"],
    ),
    feature(
        "per-connection write queues (relay sends in batches)",
        &[
            "writeTimeout",
            "writeQueueSize",
            "udpWriteBufferSize",
            "dumpPackets",
        ],
    ),
    feature(
        "connection hooks",
        &["runOnConnect", "runOnConnectRestart", "runOnDisconnect"],
    ),
    feature("control API over TLS", &["apiServerKey", "apiServerCert"]),
    feature(
        "pprof over TLS and CORS",
        &["pprofServerKey", "pprofServerCert", "pprofAllowOrigins"],
    ),
    feature(
        "metrics over TLS and CORS",
        &[
            "metricsServerKey",
            "metricsServerCert",
            "metricsAllowOrigins",
        ],
    ),
    feature(
        "playback server",
        &[
            "playback",
            "playbackAddress",
            "playbackEncryption",
            "playbackServerKey",
            "playbackServerCert",
            "playbackAllowOrigins",
            "playbackTrustedProxies",
        ],
    ),
    feature(
        "RTSP server",
        &[
            "rtsp",
            "rtspDisable",
            "protocols",
            "rtspTransports",
            "encryption",
            "rtspEncryption",
            "rtspAddress",
            "rtspsAddress",
            "rtpAddress",
            "rtcpAddress",
            "multicastIPRange",
            "multicastRTPPort",
            "multicastRTCPPort",
            "srtpAddress",
            "srtcpAddress",
            "multicastSRTPPort",
            "multicastSRTCPPort",
            "serverKey",
            "serverCert",
            "rtspServerKey",
            "rtspServerCert",
            "authMethods",
            "rtspAuthMethods",
            "rtspTrustedProxies",
        ],
    ),
    feature(
        "RTMP server",
        &[
            "rtmp",
            "rtmpDisable",
            "rtmpEncryption",
            "rtmpAddress",
            "rtmpsAddress",
            "rtmpServerKey",
            "rtmpServerCert",
            "rtmpTrustedProxies",
        ],
    ),
    feature(
        "HLS server",
        &[
            "hls",
            "hlsDisable",
            "hlsAddress",
            "hlsEncryption",
            "hlsServerKey",
            "hlsServerCert",
            "hlsAllowOrigins",
            "hlsAllowOrigin",
            "hlsTrustedProxies",
            "hlsAlwaysRemux",
            "hlsVariant",
            "hlsSegmentCount",
            "hlsSegmentDuration",
            "hlsPartDuration",
            "hlsSegmentMaxSize",
            "hlsDirectory",
            "hlsMuxerCloseAfter",
            "hlsCDNSecret",
        ],
    ),
    feature("SRT server", &["srt", "srtAddress"]),
    feature(
        "MoQ server",
        &[
            "moq",
            "moqHTTP2Address",
            "moqHTTP3Address",
            "moqQUICAddress",
            "moqServerKey",
            "moqServerCert",
            "moqAllowOrigins",
            "moqTrustedProxies",
        ],
    ),
    feature(
        "WebRTC options of the server's TLS, TCP and ICE gathering (relay is ICE-lite on \
         one UDP port, over plain HTTP)",
        &[
            "webrtcServerKey",
            "webrtcServerCert",
            "webrtcLocalTCPAddress",
            "webrtcICEServers2",
            "webrtcICEServers",
            "webrtcSTUNGatherTimeout",
            "webrtcTrackGatherTimeout",
        ],
    ),
];

/// Keys of `pathDefaults` and of each path.
const PATH: &[Feature] = &[
    feature(
        "recording",
        &[
            "record",
            "recordPath",
            "recordFormat",
            "recordPartDuration",
            "recordMaxPartSize",
            "recordSegmentDuration",
            "recordDeleteAfter",
        ],
    ),
    feature(
        "SRT passphrases",
        &["srtReadPassphrase", "srtPublishPassphrase"],
    ),
    feature(
        "always-available paths",
        &[
            "alwaysAvailable",
            "alwaysAvailableTracks",
            "alwaysAvailableFile",
            "fallback",
        ],
    ),
    feature("forwarding", &["forward"]),
    feature(
        "options of sources relay does not pull (redirects, RTSP ranges and ports, MoQ, WHEP)",
        &[
            "sourceRedirect",
            "useAbsoluteTimestamp",
            "rtspDemuxMpegts",
            "rtspAnyPort",
            "rtspRangeType",
            "rtspRangeStart",
            "rtspScale",
            "rtspUDPSourcePortRange",
            "moqTransport",
            "whepBearerToken",
            "whepSTUNGatherTimeout",
            "whepHandshakeTimeout",
            "whepTrackGatherTimeout",
        ],
    ),
    feature(
        "hooks relay does not run yet (online/offline, recording segments)",
        &[
            "runOnOnline",
            "runOnOnlineRestart",
            "runOnOffline",
            "runOnRecordSegmentCreate",
            "runOnRecordSegmentComplete",
        ],
    ),
    Feature {
        name: "Raspberry Pi cameras",
        keys: &[],
        prefix: Some("rpiCamera"),
    },
];

fn find(features: &'static [Feature], key: &str) -> Option<&'static Feature> {
    features
        .iter()
        .find(|f| f.keys.contains(&key) || f.prefix.is_some_and(|p| key.starts_with(p)))
}

/// The MediaMTX keys of a file that relay accepts and does not use, by feature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotRun(BTreeMap<&'static str, Vec<String>>);

impl NotRun {
    /// Takes `keys` (a YAML path: `["rtspAddress"]`, `["paths", "cam", "record"]`) if it
    /// is a MediaMTX key of something relay does not run; false for any other key.
    pub fn take(&mut self, keys: &[String]) -> bool {
        let (features, key) = match keys {
            [key] => (GLOBAL, key),
            [defaults, key] if defaults == "pathDefaults" => (PATH, key),
            [paths, _, key] if paths == "paths" => (PATH, key),
            _ => return false,
        };
        let Some(feature) = find(features, key) else {
            return false;
        };
        let written = self.0.entry(feature.name).or_default();
        let key = keys.join(".");
        if !written.contains(&key) {
            written.push(key);
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One line for the log: each feature with how many of its keys the file sets.
impl fmt::Display for NotRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let features: Vec<String> = self
            .0
            .iter()
            .map(|(name, keys)| match keys.as_slice() {
                [key] => format!("{name} ({key})"),
                keys => format!("{name} ({} keys)", keys.len()),
            })
            .collect();
        write!(
            f,
            "MediaMTX keys of what relay does not run, accepted and not used: {}",
            features.join("; ")
        )
    }
}
