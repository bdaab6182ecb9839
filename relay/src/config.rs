//! The config file: YAML with MediaMTX's key names where the meaning is the same,
//! so that a `mediamtx.yml` user recognises it. Every key has a default; `relay.yml`
//! at the repository root documents them all.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Config {
    /// error, warn, info or debug.
    pub log_level: LogLevel,
    /// One JSON object per log line instead of text.
    pub log_structured: bool,

    /// HTTP listener: WHEP endpoints, player pages and (unless `metricsAddress` is set) metrics.
    pub webrtc_address: String,
    /// The one UDP port every WebRTC session uses (ICE-lite, DTLS, SRTP).
    pub webrtc_local_udp_address: String,
    /// Advertise the addresses of the host's interfaces as ICE candidates.
    pub webrtc_ips_from_interfaces: bool,
    /// Only these interfaces (empty: all).
    pub webrtc_ips_from_interfaces_list: Vec<String>,
    /// More IPs or host names to advertise (NAT, containers).
    pub webrtc_additional_hosts: Vec<String>,
    /// CORS origins allowed to call the WHEP endpoints.
    pub webrtc_allow_origins: Vec<String>,
    /// A session whose ICE and DTLS have not completed by then is dropped.
    #[serde(with = "humantime_serde")]
    pub webrtc_handshake_timeout: Duration,
    /// Accept the legacy SRTP profile AES_CM_128_HMAC_SHA1_80 (AES-GCM is always preferred).
    pub webrtc_allow_legacy_srtp: bool,

    /// Largest UDP payload sent; RTP from the built-in demo is packetized to fit it.
    pub udp_max_payload_size: usize,
    /// SO_RCVBUF of the UDP sockets, 0: the system default.
    pub udp_read_buffer_size: usize,

    /// Serve Prometheus metrics at /metrics.
    pub metrics: bool,
    /// Separate listener for metrics; empty: served on `webrtcAddress`.
    pub metrics_address: String,

    /// Data-plane workers, one per core; 0: as many as the machine has cores.
    pub workers: usize,

    /// Settings applied to every path unless the path sets them.
    pub path_defaults: PathConfig,
    pub paths: BTreeMap<String, PathConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PathConfig {
    /// `demo` (the built-in clip) or `udp+rtp://ip:port` (RTP pushed to that address).
    pub source: Option<String>,
    /// For `udp+rtp` sources: the SDP describing the payload formats sent.
    #[serde(rename = "rtpSDP")]
    pub rtp_sdp: Option<String>,
    /// Most viewers at once; 0: no limit.
    pub max_readers: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: LogLevel::Info,
            log_structured: false,
            webrtc_address: ":8889".into(),
            webrtc_local_udp_address: ":8189".into(),
            webrtc_ips_from_interfaces: true,
            webrtc_ips_from_interfaces_list: Vec::new(),
            webrtc_additional_hosts: Vec::new(),
            webrtc_allow_origins: vec!["*".into()],
            webrtc_handshake_timeout: Duration::from_secs(10),
            webrtc_allow_legacy_srtp: true,
            udp_max_payload_size: 1452,
            udp_read_buffer_size: 0,
            metrics: true,
            metrics_address: String::new(),
            workers: 0,
            path_defaults: PathConfig::default(),
            paths: BTreeMap::new(),
        }
    }
}
