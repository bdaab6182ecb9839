//! The config file: YAML with MediaMTX's key names where the meaning is the same,
//! so that a `mediamtx.yml` user recognises it. Every key has a default; `relay.yml`
//! at the repository root documents them all.
//!
//! A file is read once, into [`Config`]: addresses are socket addresses, optional
//! things are `Option`s, each path's `source` (with its `rtpSDP`, and what it inherits
//! from `pathDefaults`) is the ingest's [`Source`]. The file's own shape, strings as
//! written, stays private to this module (`RawConfig`); `RawConfig::check` is the one
//! place a value is judged, so `relay check-config` and `relay serve` accept the same
//! files. A [`Config`] serializes back to a file that loads to an equal one.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ingest::{Source, SourceError};

/// The relay's settings, checked: every value here is one `relay serve` can run with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `logLevel`.
    pub log_level: LogLevel,
    /// `logStructured`: one JSON object per log line instead of text.
    pub log_structured: bool,

    /// `webrtcAddress`: the HTTP listener (WHEP endpoints, player pages and, unless
    /// `metrics_address` is set, metrics).
    pub webrtc_address: SocketAddr,
    /// `webrtcLocalUDPAddress`: the one UDP port every WebRTC session uses (ICE-lite,
    /// DTLS, SRTP); port 0: the kernel picks one.
    pub webrtc_local_udp_address: SocketAddr,
    /// `webrtcIPsFromInterfaces`: advertise the host's interface addresses as candidates.
    pub webrtc_ips_from_interfaces: bool,
    /// `webrtcIPsFromInterfacesList`: only these interfaces (empty: all).
    pub webrtc_ips_from_interfaces_list: Vec<String>,
    /// `webrtcAdditionalHosts`: more IPs or host names to advertise (NAT, containers).
    pub webrtc_additional_hosts: Vec<String>,
    /// `webrtcAllowOrigins`: CORS origins allowed to call the WHEP endpoints.
    pub webrtc_allow_origins: Vec<String>,
    /// `webrtcHandshakeTimeout` (more than 0): a session whose ICE and DTLS have not
    /// completed by then is dropped.
    pub webrtc_handshake_timeout: Duration,
    /// `webrtcAllowLegacySrtp`: accept AES_CM_128_HMAC_SHA1_80 (AES-GCM is preferred).
    pub webrtc_allow_legacy_srtp: bool,

    /// `udpMaxPayloadSize`, from [`UDP_PAYLOAD_MIN`] to [`UDP_PAYLOAD_MAX`]: the largest
    /// UDP payload sent; the demo's RTP is packetized to fit it.
    pub udp_max_payload_size: usize,
    /// `udpReadBufferSize`: SO_RCVBUF of the UDP sockets, 0: the system default.
    pub udp_read_buffer_size: usize,

    /// `metrics`: serve Prometheus metrics at /metrics.
    pub metrics: bool,
    /// `metricsAddress`: a listener of their own for the metrics; `None`: served on
    /// `webrtc_address`.
    pub metrics_address: Option<SocketAddr>,

    /// `workers`: data-plane workers, one per core; 0: as many as the machine has cores.
    /// With `xdp_interface`, one worker per RX queue of the interface instead.
    pub workers: usize,

    /// `xdpInterface`: steer the media port through XDP and AF_XDP on this interface
    /// (kernel bypass); `None`: portable mode, UDP sockets. `webrtc_local_udp_address`
    /// then has a fixed port.
    pub xdp_interface: Option<String>,
    /// `xdpMode`.
    pub xdp_mode: XdpMode,
    /// `xdpBusyPoll`: spin on the AF_XDP rings instead of sleeping.
    pub xdp_busy_poll: bool,
    /// `xdpSTUNRate`: STUN datagrams per second the XDP program lets through from one
    /// address that has no session yet; more are dropped in the driver.
    pub xdp_stun_rate: NonZeroU32,
    /// `xdpSTUNBurst`: how many of those one address may send at once.
    pub xdp_stun_burst: NonZeroU32,

    /// `readTimeout` (more than 0): how long an HTTP client has to send a request's
    /// header (from when it connects, or from its previous response on a kept-alive
    /// connection), and then an offer's body.
    pub read_timeout: Duration,

    /// `paths`, by name, with what each inherits from `pathDefaults` filled in.
    pub paths: BTreeMap<String, PathConfig>,
}

/// One entry of `paths`, complete: `pathDefaults` is already applied.
#[derive(Debug, Clone, PartialEq)]
pub struct PathConfig {
    /// `source`, with its `rtpSDP`.
    pub source: Source,
    /// `maxReaders`: most viewers at once; 0: no limit.
    pub max_readers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// The program runs in the driver.
    Native,
    /// The program runs after the kernel built its socket buffer: works on any
    /// interface, saves little.
    Generic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// Keys that `relay serve`'s flags set in place of the file's. They are applied before
/// the file is checked, so a flag is held to the same rules as its key.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub log_level: Option<LogLevel>,
    pub workers: Option<usize>,
    pub xdp_interface: Option<String>,
}

/// Why a config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not YAML, or a value of the wrong type: the parser stops at the first, and its
    /// message names the key and the line.
    #[error(transparent)]
    Yaml(#[from] serde_yaml_ng::Error),
    /// Every other problem, all at once.
    #[error("{}", list(.0))]
    Invalid(Vec<Problem>),
}

/// One thing wrong with a config: the YAML path of the key at fault, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

fn list(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    let n = lines.len();
    format!(
        "{n} problem{}:\n  {}",
        if n == 1 { "" } else { "s" },
        lines.join("\n  ")
    )
}

/// Smallest `udpMaxPayloadSize`: the 576-byte datagram every IPv4 host must accept,
/// less the IPv4 (20) and UDP (8) headers.
pub const UDP_PAYLOAD_MIN: usize = 576 - 20 - 8;
/// Largest `udpMaxPayloadSize`: a 1500-byte Ethernet MTU less the IPv6 (40) and UDP (8)
/// headers, so that no packet is fragmented whichever IP version a viewer uses.
pub const UDP_PAYLOAD_MAX: usize = 1500 - 40 - 8;

/// Keys of `mediamtx.yml` that relay does not read, so that a copied MediaMTX config
/// gets a precise error rather than "unknown key". Not exhaustive: the common ones.
const MEDIAMTX_KEYS: &[&str] = &[
    // Top level.
    "logDestinations",
    "logFile",
    "writeTimeout",
    "writeQueueSize",
    "udpWriteBufferSize",
    "runOnConnect",
    "runOnDisconnect",
    "authMethod",
    "authInternalUsers",
    "authHTTPAddress",
    "authJWTJWKS",
    "api",
    "apiAddress",
    "metricsEncryption",
    "metricsAllowOrigin",
    "pprof",
    "playback",
    "rtsp",
    "rtspAddress",
    "rtspTransports",
    "protocols",
    "rtmp",
    "rtmpAddress",
    "hls",
    "hlsAddress",
    "srt",
    "srtAddress",
    "webrtc",
    "webrtcEncryption",
    "webrtcServerKey",
    "webrtcServerCert",
    "webrtcAllowOrigin",
    "webrtcTrustedProxies",
    "webrtcLocalTCPAddress",
    "webrtcICEServers2",
    "webrtcTrackGatherTimeout",
    "webrtcSTUNGatherTimeout",
    // Paths.
    "sourceFingerprint",
    "sourceOnDemand",
    "sourceOnDemandStartTimeout",
    "sourceOnDemandCloseAfter",
    "sourceRedirect",
    "overridePublisher",
    "fallback",
    "useAbsoluteTimestamp",
    "record",
    "recordPath",
    "recordFormat",
    "recordPartDuration",
    "recordSegmentDuration",
    "recordDeleteAfter",
    "rtspTransport",
    "rtspAnyPort",
    "rtspRangeType",
    "srtReadPassphrase",
    "srtPublishPassphrase",
    "runOnInit",
    "runOnDemand",
    "runOnUnDemand",
    "runOnReady",
    "runOnNotReady",
    "runOnRead",
    "runOnUnread",
    "runOnRecordSegmentComplete",
];

impl Config {
    /// Reads and checks a config file. Every problem (unknown keys, bad values) is
    /// reported at once, each with its YAML path and what to write instead.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        Config::load_with(Some(path), &Overrides::default())
    }

    /// [`Config::load`] with `overrides` in place of the file's keys; without a file,
    /// the defaults and one path, `demo`, playing the built-in clip.
    pub fn load_with(path: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
        let Some(path) = path else {
            return Ok(Config::read(None, overrides)?);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        Config::read(Some(&text), overrides)
            .with_context(|| format!("config file {}", path.display()))
    }

    /// Reads and checks a config file's text.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        Config::read(Some(text), &Overrides::default())
    }

    /// The config as a file: MediaMTX's keys, every one written out.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("a config is plain YAML")
    }

    fn read(text: Option<&str>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut problems = Problems::default();
        let mut raw = match text {
            Some(text) => RawConfig::parse(text, &mut problems)?,
            None => RawConfig::demo(),
        };
        overrides.apply(&mut raw);
        raw.check(problems)
    }
}

impl Default for Config {
    fn default() -> Self {
        RawConfig::default()
            .check(Problems::default())
            .expect("the defaults are a valid config")
    }
}

impl Serialize for Config {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RawConfig::from(self).serialize(serializer)
    }
}

impl Overrides {
    fn apply(&self, raw: &mut RawConfig) {
        if let Some(level) = self.log_level {
            raw.log_level = level;
        }
        if let Some(workers) = self.workers {
            raw.workers = workers;
        }
        if let Some(interface) = &self.xdp_interface {
            raw.xdp_interface.clone_from(interface);
        }
    }
}

/// The file as written: what serde reads and writes. [`RawConfig::check`] makes it a
/// [`Config`]; `From<&Config>` writes one back.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
struct RawConfig {
    log_level: LogLevel,
    #[serde(deserialize_with = "yes_no")]
    log_structured: bool,

    /// Listen addresses are strings so that MediaMTX's `:8889` reads.
    webrtc_address: String,
    #[serde(rename = "webrtcLocalUDPAddress")]
    webrtc_local_udp_address: String,
    #[serde(rename = "webrtcIPsFromInterfaces", deserialize_with = "yes_no")]
    webrtc_ips_from_interfaces: bool,
    #[serde(rename = "webrtcIPsFromInterfacesList")]
    webrtc_ips_from_interfaces_list: Vec<String>,
    webrtc_additional_hosts: Vec<String>,
    webrtc_allow_origins: Vec<String>,
    #[serde(with = "humantime_serde")]
    webrtc_handshake_timeout: Duration,
    #[serde(deserialize_with = "yes_no")]
    webrtc_allow_legacy_srtp: bool,

    udp_max_payload_size: usize,
    udp_read_buffer_size: usize,

    #[serde(deserialize_with = "yes_no")]
    metrics: bool,
    /// Empty: none.
    metrics_address: String,

    workers: usize,

    /// Empty: none.
    xdp_interface: String,
    xdp_mode: XdpMode,
    #[serde(deserialize_with = "yes_no")]
    xdp_busy_poll: bool,
    #[serde(rename = "xdpSTUNRate")]
    xdp_stun_rate: u32,
    #[serde(rename = "xdpSTUNBurst")]
    xdp_stun_burst: u32,

    #[serde(with = "humantime_serde")]
    read_timeout: Duration,

    path_defaults: RawPath,
    #[serde(deserialize_with = "paths")]
    paths: BTreeMap<String, RawPath>,
}

/// A `paths` entry or `pathDefaults` as written; unset keys of a path are pathDefaults'.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
struct RawPath {
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    #[serde(rename = "rtpSDP", skip_serializing_if = "Option::is_none")]
    rtp_sdp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_readers: Option<usize>,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
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
            xdp_interface: String::new(),
            xdp_mode: XdpMode::Native,
            xdp_busy_poll: false,
            xdp_stun_rate: 50,
            xdp_stun_burst: 100,
            read_timeout: Duration::from_secs(10),
            path_defaults: RawPath::default(),
            paths: BTreeMap::new(),
        }
    }
}

/// What a path needs when neither it nor pathDefaults names a source. MediaMTX's
/// default, `publisher`, waits for a publisher: relay cannot take one yet.
const NO_SOURCE: &str = "no source, here or in pathDefaults: MediaMTX's default \
    (publisher) waits for a publisher, which relay cannot take yet: write 'demo' or \
    'udp+rtp://IP:PORT' (with its rtpSDP)";

impl RawConfig {
    /// The config without a file: the defaults and one path, `demo`.
    fn demo() -> RawConfig {
        let demo = RawPath {
            source: Some("demo".into()),
            ..RawPath::default()
        };
        RawConfig {
            paths: BTreeMap::from([("demo".into(), demo)]),
            ..RawConfig::default()
        }
    }

    /// The file's text as written; keys no field takes go to `problems`.
    fn parse(text: &str, problems: &mut Problems) -> Result<RawConfig, ConfigError> {
        // An empty file (or one with only comments) is the defaults.
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(RawConfig::default());
        }
        let de = serde_yaml_ng::Deserializer::from_str(text);
        Ok(serde_ignored::deserialize(de, |path| {
            problems.push(unknown_key(path))
        })?)
    }

    /// The one judge of a config's values: each problem goes to `problems` under the
    /// YAML path of its key, and the config comes out only if there is none.
    fn check(self, mut problems: Problems) -> Result<Config, ConfigError> {
        let webrtc_address = problems.take("webrtcAddress", parse_listen(&self.webrtc_address));
        let webrtc_local_udp_address = problems.take(
            "webrtcLocalUDPAddress",
            parse_listen(&self.webrtc_local_udp_address),
        );
        let metrics_address = problems.take(
            "metricsAddress",
            set(&self.metrics_address).map(parse_listen).transpose(),
        );
        for origin in &self.webrtc_allow_origins {
            if let Err(e) = check_origin(origin) {
                problems.add("webrtcAllowOrigins", e);
            }
        }
        let at_least_one =
            |n| NonZeroU32::new(n).ok_or("must be at least 1 (0 would refuse every new viewer)");
        let xdp_stun_rate = problems.take("xdpSTUNRate", at_least_one(self.xdp_stun_rate));
        let xdp_stun_burst = problems.take("xdpSTUNBurst", at_least_one(self.xdp_stun_burst));
        if self.webrtc_handshake_timeout.is_zero() {
            problems.add("webrtcHandshakeTimeout", "must be more than 0s, e.g. 10s");
        }
        if self.read_timeout.is_zero() {
            problems.add("readTimeout", "must be more than 0s, e.g. 10s");
        }
        if !(UDP_PAYLOAD_MIN..=UDP_PAYLOAD_MAX).contains(&self.udp_max_payload_size) {
            problems.add(
                "udpMaxPayloadSize",
                format!(
                    "{} is out of range: write {UDP_PAYLOAD_MIN} to {UDP_PAYLOAD_MAX} \
                     (a 576..1500-byte IP packet less the IPv4 or IPv6 and UDP headers)",
                    self.udp_max_payload_size
                ),
            );
        }
        let paths = self.check_paths(&mut problems);
        if self.metrics
            && set(&self.metrics_address).is_none()
            && self.paths.contains_key("metrics")
        {
            problems.add(
                "paths.metrics",
                "/metrics serves the metrics on webrtcAddress: rename the path or set \
                 metricsAddress",
            );
        }
        let xdp_interface = set(&self.xdp_interface).map(str::to_owned);
        if let Some(media) = webrtc_local_udp_address {
            if xdp_interface.is_some() && media.port() == 0 {
                problems.add(
                    "webrtcLocalUDPAddress",
                    "xdpInterface needs a fixed media port (the XDP program is told it \
                     when it loads): write one, e.g. ':8189'",
                );
            }
            if media.ip().is_unspecified()
                && !self.webrtc_ips_from_interfaces
                && self.webrtc_additional_hosts.is_empty()
            {
                problems.add(
                    "webrtcAdditionalHosts",
                    "viewers would be told no address to send media to: with \
                     webrtcIPsFromInterfaces off and webrtcLocalUDPAddress on every \
                     interface, list this host's addresses or names here, or set \
                     webrtcIPsFromInterfaces: yes",
                );
            }
        }
        // Listeners that would take one another's port: the second bind would fail.
        let metrics_listener = metrics_address.flatten().filter(|_| self.metrics);
        let tcp = [
            ("webrtcAddress", webrtc_address),
            ("metricsAddress", metrics_listener),
        ];
        check_overlaps(&mut problems, tcp.iter().map(|(k, a)| (k.to_string(), *a)));
        let sources = paths.iter().filter_map(|(name, path)| match &path.source {
            Source::Rtp { listen, .. } => Some((format!("paths.{name}.source"), Some(*listen))),
            Source::Demo => None,
        });
        let udp = std::iter::once(("webrtcLocalUDPAddress".into(), webrtc_local_udp_address));
        check_overlaps(&mut problems, udp.chain(sources));

        let config = (|| {
            Some(Config {
                log_level: self.log_level,
                log_structured: self.log_structured,
                webrtc_address: webrtc_address?,
                webrtc_local_udp_address: webrtc_local_udp_address?,
                webrtc_ips_from_interfaces: self.webrtc_ips_from_interfaces,
                webrtc_ips_from_interfaces_list: self.webrtc_ips_from_interfaces_list,
                webrtc_additional_hosts: self.webrtc_additional_hosts,
                webrtc_allow_origins: self.webrtc_allow_origins,
                webrtc_handshake_timeout: self.webrtc_handshake_timeout,
                webrtc_allow_legacy_srtp: self.webrtc_allow_legacy_srtp,
                udp_max_payload_size: self.udp_max_payload_size,
                udp_read_buffer_size: self.udp_read_buffer_size,
                metrics: self.metrics,
                metrics_address: metrics_address?,
                workers: self.workers,
                xdp_interface,
                xdp_mode: self.xdp_mode,
                xdp_busy_poll: self.xdp_busy_poll,
                xdp_stun_rate: xdp_stun_rate?,
                xdp_stun_burst: xdp_stun_burst?,
                read_timeout: self.read_timeout,
                paths,
            })
        })();
        match config {
            Some(config) if problems.0.is_empty() => Ok(config),
            _ => Err(ConfigError::Invalid(problems.0)),
        }
    }

    /// Each path with what it inherits from pathDefaults; the paths in error are left
    /// out (their problems are noted).
    fn check_paths(&self, problems: &mut Problems) -> BTreeMap<String, PathConfig> {
        let defaults = &self.path_defaults;
        // pathDefaults' source is checked even if no path inherits it. Its rtpSDP may be
        // in each path.
        if let Some(source) = defaults.source.as_deref().and_then(set) {
            if let Err(e) = Source::parse(source, defaults.rtp_sdp.as_deref().and_then(set)) {
                if !matches!(e, SourceError::MissingSdp(_)) {
                    let key = at_fault(&e, "pathDefaults.source", "pathDefaults.rtpSDP");
                    problems.add(key, e);
                }
            }
        }
        let mut paths = BTreeMap::new();
        for (name, path) in &self.paths {
            if let Err(e) = check_path_name(name) {
                problems.add(format!("paths.{name}"), e);
            }
            // The value of `key` for this path, and the YAML path it was written at.
            let inherited = |key: &str, own: &Option<String>, default: &Option<String>| match (
                own.as_deref().and_then(set),
                default.as_deref().and_then(set),
            ) {
                (Some(value), _) => Some((format!("paths.{name}.{key}"), value.to_owned())),
                (None, Some(value)) => Some((format!("pathDefaults.{key}"), value.to_owned())),
                (None, None) => None,
            };
            let Some((source_key, source)) = inherited("source", &path.source, &defaults.source)
            else {
                problems.add(format!("paths.{name}.source"), NO_SOURCE);
                continue;
            };
            let sdp = inherited("rtpSDP", &path.rtp_sdp, &defaults.rtp_sdp);
            match Source::parse(&source, sdp.as_ref().map(|(_, text)| text.as_str())) {
                Ok(source) => {
                    let max_readers = path.max_readers.or(defaults.max_readers).unwrap_or(0);
                    paths.insert(
                        name.clone(),
                        PathConfig {
                            source,
                            max_readers,
                        },
                    );
                }
                Err(e) => {
                    let sdp_key = sdp.map_or_else(|| format!("paths.{name}.rtpSDP"), |(k, _)| k);
                    problems.add(at_fault(&e, &source_key, &sdp_key), e);
                }
            }
        }
        paths
    }
}

/// Which of a source's two keys `error` is about.
fn at_fault<'a>(error: &SourceError, source_key: &'a str, sdp_key: &'a str) -> &'a str {
    match error {
        SourceError::MissingSdp(_) | SourceError::Sdp(_) => sdp_key,
        SourceError::Unsupported(_) | SourceError::BadAddress { .. } => source_key,
    }
}

impl From<&Config> for RawConfig {
    fn from(config: &Config) -> RawConfig {
        let paths = config.paths.iter().map(|(name, path)| {
            let raw = RawPath {
                source: Some(path.source.to_string()),
                rtp_sdp: path.source.rtp_sdp().map(str::to_owned),
                max_readers: Some(path.max_readers),
            };
            (name.clone(), raw)
        });
        RawConfig {
            log_level: config.log_level,
            log_structured: config.log_structured,
            webrtc_address: write_listen(config.webrtc_address),
            webrtc_local_udp_address: write_listen(config.webrtc_local_udp_address),
            webrtc_ips_from_interfaces: config.webrtc_ips_from_interfaces,
            webrtc_ips_from_interfaces_list: config.webrtc_ips_from_interfaces_list.clone(),
            webrtc_additional_hosts: config.webrtc_additional_hosts.clone(),
            webrtc_allow_origins: config.webrtc_allow_origins.clone(),
            webrtc_handshake_timeout: config.webrtc_handshake_timeout,
            webrtc_allow_legacy_srtp: config.webrtc_allow_legacy_srtp,
            udp_max_payload_size: config.udp_max_payload_size,
            udp_read_buffer_size: config.udp_read_buffer_size,
            metrics: config.metrics,
            metrics_address: config.metrics_address.map(write_listen).unwrap_or_default(),
            workers: config.workers,
            xdp_interface: config.xdp_interface.clone().unwrap_or_default(),
            xdp_mode: config.xdp_mode,
            xdp_busy_poll: config.xdp_busy_poll,
            xdp_stun_rate: config.xdp_stun_rate.get(),
            xdp_stun_burst: config.xdp_stun_burst.get(),
            read_timeout: config.read_timeout,
            // Every path is written whole: nothing is left to inherit.
            path_defaults: RawPath::default(),
            paths: paths.collect(),
        }
    }
}

/// Problems found so far; one found twice (a bad pathDefaults value inherited by
/// several paths) is kept once.
#[derive(Debug, Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, problem: Problem) {
        if !self.0.contains(&problem) {
            self.0.push(problem);
        }
    }

    fn add(&mut self, key: impl Into<String>, message: impl fmt::Display) {
        self.push(Problem {
            key: key.into(),
            message: message.to_string(),
        });
    }

    /// The value, or `None` with its problem noted under `key`.
    fn take<T, E: fmt::Display>(&mut self, key: &str, value: Result<T, E>) -> Option<T> {
        value.map_err(|e| self.add(key, e)).ok()
    }
}

/// A string key's value, `None` when it is empty (MediaMTX's "not set").
fn set(value: &str) -> Option<&str> {
    Some(value).filter(|v| !v.trim().is_empty())
}

/// Notes each listener whose address takes the port of one before it: the kernel would
/// refuse the second bind. Port 0 (the kernel picks one) takes no one's.
fn check_overlaps(
    problems: &mut Problems,
    listeners: impl IntoIterator<Item = (String, Option<SocketAddr>)>,
) {
    let mut taken: Vec<(String, SocketAddr)> = Vec::new();
    for (key, address) in listeners {
        let Some(address) = address.filter(|a| a.port() != 0) else {
            continue;
        };
        if let Some((other, at)) = taken.iter().find(|(_, at)| overlap(*at, address)) {
            let message = format!(
                "{address} takes the port {other} already listens on ({at}): give each a \
                 port of its own"
            );
            problems.add(&key, message);
        }
        taken.push((key, address));
    }
}

fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    // A wildcard address takes its port on every address of its family, and IPv6's on
    // IPv4's too (unless the host sets bindv6only).
    let covers =
        |w: SocketAddr, x: SocketAddr| w.ip().is_unspecified() && (w.is_ipv6() || x.is_ipv4());
    a.port() == b.port() && (a.ip() == b.ip() || covers(a, b) || covers(b, a))
}

/// Parses a listen address as MediaMTX writes them: `:8889` (every IPv4 interface),
/// `0.0.0.0:8889`, `127.0.0.1:8889` or `[::]:8889` (IPv6, and IPv4 unless the host
/// sets `bindv6only`).
fn parse_listen(address: &str) -> Result<SocketAddr, String> {
    let parsed = match address.strip_prefix(':') {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .map(|port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))),
        None => address.parse().ok(),
    };
    parsed.ok_or_else(|| {
        format!(
            "'{address}' is not a listen address: write ':PORT' (every interface), \
             'IP:PORT' or '[IPv6]:PORT', e.g. ':8889' or '127.0.0.1:8889'"
        )
    })
}

/// A listen address as MediaMTX writes it: `:PORT` for every IPv4 interface.
fn write_listen(address: SocketAddr) -> String {
    match address {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => format!(":{}", v4.port()),
        _ => address.to_string(),
    }
}

/// Path names become URLs (`/<name>/`, `/<name>/whep`), so they keep to MediaMTX's
/// characters and may not shadow the WHEP routes.
fn check_path_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a path name cannot be empty".into());
    }
    if name.starts_with('~') {
        return Err(
            "regular-expression path names (MediaMTX's '~...') are not supported: \
                    name each path"
                .into(),
        );
    }
    if name == "all" || name == "all_others" {
        return Err(
            "MediaMTX's catch-all path is not supported: put shared settings \
                    in pathDefaults and name each path"
                .into(),
        );
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-.~/".contains(*c)))
    {
        return Err(format!(
            "'{c}' is not allowed in a path name: use letters, digits, '_', '-', '.', '~' and '/'"
        ));
    }
    for segment in name.split('/') {
        match segment {
            "" => return Err("a path name cannot begin or end with '/' or contain '//'".into()),
            "." | ".." => {
                return Err("a path name cannot have '.' or '..' between slashes".into());
            }
            "whep" => {
                return Err(
                    "'whep' cannot be part of a path name: it names the WHEP endpoint \
                            (/<path>/whep)"
                        .into(),
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// An origin as browsers send it: `*`, or scheme://host[:port] with no path.
fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match host {
        Some(host) if !host.is_empty() && !host.contains('/') && origin.is_ascii() => Ok(()),
        _ => Err(format!(
            "'{origin}' is not an origin: write '*' or scheme://host[:port] with no path \
             or trailing slash, e.g. 'https://example.com'"
        )),
    }
}

/// Describes a key that no field took (serde_ignored reports it by its path).
fn unknown_key(path: serde_ignored::Path) -> Problem {
    fn keys(path: &serde_ignored::Path, out: &mut Vec<String>) {
        use serde_ignored::Path as P;
        match path {
            P::Root => {}
            P::Seq { parent, index } => {
                keys(parent, out);
                out.push(index.to_string());
            }
            P::Map { parent, key } => {
                keys(parent, out);
                out.push(key.clone());
            }
            P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
                keys(parent, out)
            }
        }
    }
    let mut path_keys = Vec::new();
    keys(&path, &mut path_keys);
    let last = path_keys.last().map(String::as_str).unwrap_or_default();
    let why = if MEDIAMTX_KEYS.contains(&last) {
        "a MediaMTX key relay does not support"
    } else {
        "not a relay key: check its spelling and level against relay.yml"
    };
    Problem {
        key: path_keys.join("."),
        message: format!("unknown key ({why}); remove it"),
    }
}

/// Booleans as YAML 1.2 (`true`/`false`) and as MediaMTX writes them (`yes`/`no`).
fn yes_no<'de, D: Deserializer<'de>>(de: D) -> Result<bool, D::Error> {
    struct YesNo;
    impl serde::de::Visitor<'_> for YesNo {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("yes, no, true or false")
        }
        fn visit_bool<E>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
            match v {
                "yes" => Ok(true),
                "no" => Ok(false),
                _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
            }
        }
    }
    de.deserialize_any(YesNo)
}

/// `paths:` entries may be empty (`cam1:` with nothing under it): all defaults.
fn paths<'de, D: Deserializer<'de>>(de: D) -> Result<BTreeMap<String, RawPath>, D::Error> {
    let paths = BTreeMap::<String, Option<RawPath>>::deserialize(de)?;
    Ok(paths
        .into_iter()
        .map(|(name, path)| (name, path.unwrap_or_default()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message of a refused config, or a panic if it was accepted.
    fn refused(yaml: &str) -> String {
        match Config::from_yaml(yaml) {
            Ok(config) => panic!("accepted {yaml:?} as {config:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn relay_yml_documents_the_defaults() {
        let text = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../relay.yml"));
        assert_eq!(Config::from_yaml(text).unwrap(), Config::default());
    }

    /// The field names serde matches for `T` (a deserializer that only asks for them).
    fn field_names<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
        use serde::de::{value::Error, Error as _, Visitor};
        struct FieldNames<'a>(&'a mut &'static [&'static str]);
        impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
            type Error = Error;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
                Err(Error::custom("not a struct"))
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Error> {
                *self.0 = fields;
                Err(Error::custom("fields taken"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
                byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
                enum identifier ignored_any
            }
        }
        let mut fields: &'static [&'static str] = &[];
        let _ = T::deserialize(FieldNames(&mut fields));
        fields
    }

    #[test]
    fn relay_yml_names_every_key() {
        // A key left out of relay.yml would still parse to its default: check the names.
        let text = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../relay.yml"));
        let top: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with([' ', '#']))
            .filter_map(|l| Some(l.split_once(':')?.0))
            .collect();
        let path_defaults: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("pathDefaults:"))
            .skip(1)
            .take_while(|l| l.is_empty() || l.starts_with([' ', '#']))
            .filter(|l| l.starts_with("  ") && !l.trim_start().starts_with('#'))
            .filter_map(|l| Some(l.split_once(':')?.0.trim()))
            .collect();
        let config_fields = field_names::<RawConfig>();
        let path_fields = field_names::<RawPath>();
        assert_eq!(config_fields.len(), 23);
        assert_eq!(path_fields, ["source", "rtpSDP", "maxReaders"]);
        for key in config_fields {
            assert!(top.contains(key), "relay.yml does not document {key}");
        }
        for key in path_fields {
            assert!(
                path_defaults.contains(key),
                "relay.yml does not document pathDefaults.{key}"
            );
        }
    }

    /// An rtpSDP relay reads: one H264 track.
    const SDP: &str = "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=-\nt=0 0\n\
                       m=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\n";

    /// `SDP` as the value of an `rtpSDP` key indented by `indent` spaces.
    fn sdp_block(indent: usize) -> String {
        let pad = " ".repeat(indent + 2);
        let lines: Vec<String> = SDP.lines().map(|l| format!("{pad}{l}\n")).collect();
        format!("|\n{}", lines.concat())
    }

    #[test]
    fn reads_mediamtx_key_names_and_yes_no() {
        let config = Config::from_yaml(&format!(
            "webrtcLocalUDPAddress: '[::]:8189'\n\
             webrtcIPsFromInterfaces: no\n\
             webrtcIPsFromInterfacesList: [eth0]\n\
             webrtcAdditionalHosts: [relay.example]\n\
             metrics: yes\n\
             logStructured: true\n\
             webrtcHandshakeTimeout: 1m30s\n\
             readTimeout: 2s\n\
             pathDefaults:\n  source: demo\n  maxReaders: 5\n\
             paths:\n\
             \x20 cams/front:\n    source: udp+rtp://127.0.0.1:5004\n    rtpSDP: {}\
             \x20 demo:\n    source: demo\n    maxReaders: 1\n\
             \x20 empty:\n",
            sdp_block(4)
        ))
        .unwrap();
        assert_eq!(
            config.webrtc_local_udp_address,
            "[::]:8189".parse().unwrap()
        );
        assert!(!config.webrtc_ips_from_interfaces);
        assert_eq!(config.webrtc_ips_from_interfaces_list, ["eth0"]);
        assert!(config.metrics && config.log_structured);
        assert_eq!(config.webrtc_handshake_timeout, Duration::from_secs(90));
        assert_eq!(config.read_timeout, Duration::from_secs(2));
        let front = &config.paths["cams/front"];
        assert_eq!(front.source.to_string(), "udp+rtp://127.0.0.1:5004");
        assert_eq!(front.source.rtp_sdp(), Some(SDP));
        assert_eq!(front.max_readers, 5, "inherited from pathDefaults");
        assert_eq!(config.paths["demo"].max_readers, 1);
        assert_eq!(config.paths["empty"].max_readers, 5);
        assert_eq!(config.paths["empty"].source, Source::Demo);
        assert_eq!(config.paths.get("nope"), None);
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::from_yaml("").unwrap(), Config::default());
        assert_eq!(
            Config::from_yaml("# nothing\n\n").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn demo_has_one_demo_path() {
        let demo = Config::load_with(None, &Overrides::default()).unwrap();
        assert_eq!(demo.paths.len(), 1);
        assert_eq!(demo.paths["demo"].source, Source::Demo);
        assert_eq!(
            Config {
                paths: BTreeMap::new(),
                ..demo
            },
            Config::default()
        );
    }

    #[test]
    fn unknown_keys_are_all_named_with_their_path() {
        let e = refused(
            "webrtcAdress: ':1'\n\
             rtsp: yes\n\
             pathDefaults:\n  record: yes\n\
             paths:\n  cam1:\n    source: demo\n    sourceOnDemand: yes\n    colour: red\n",
        );
        assert!(e.contains("5 problems"), "{e}");
        assert!(
            e.contains("webrtcAdress: unknown key (not a relay key: check its spelling"),
            "{e}"
        );
        assert!(
            e.contains("rtsp: unknown key (a MediaMTX key relay does not support)"),
            "{e}"
        );
        assert!(
            e.contains("pathDefaults.record: unknown key (a MediaMTX key"),
            "{e}"
        );
        assert!(
            e.contains(
                "paths.cam1.sourceOnDemand: unknown key (a MediaMTX key relay does not support)"
            ),
            "{e}"
        );
        assert!(
            e.contains("paths.cam1.colour: unknown key (not a relay key"),
            "{e}"
        );
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen(":8889").unwrap(),
            "0.0.0.0:8889".parse().unwrap()
        );
        assert_eq!(
            parse_listen("0.0.0.0:8889").unwrap(),
            "0.0.0.0:8889".parse().unwrap()
        );
        assert_eq!(
            parse_listen("127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(
            parse_listen("[::]:8189").unwrap(),
            "[::]:8189".parse().unwrap()
        );
        for bad in [
            "8889",
            ":",
            ":http",
            ":70000",
            "localhost:8889",
            "::8889",
            "",
        ] {
            let e = format!("{:#}", parse_listen(bad).unwrap_err());
            assert!(
                e.contains("is not a listen address: write ':PORT'"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn bad_addresses_name_their_key() {
        let e =
            refused("webrtcAddress: '8889'\nwebrtcLocalUDPAddress: x\nmetricsAddress: ':99999'\n");
        assert!(e.contains("3 problems"), "{e}");
        assert!(
            e.contains("webrtcAddress: '8889' is not a listen address"),
            "{e}"
        );
        assert!(
            e.contains("webrtcLocalUDPAddress: 'x' is not a listen address"),
            "{e}"
        );
        assert!(
            e.contains("metricsAddress: ':99999' is not a listen address"),
            "{e}"
        );
    }

    #[test]
    fn bad_path_names() {
        for (name, why) in [
            ("''", "cannot be empty"),
            ("a/../b", "'.' or '..'"),
            ("..", "'.' or '..'"),
            ("/cam", "cannot begin or end with '/'"),
            ("cam/", "cannot begin or end with '/'"),
            ("a//b", "contain '//'"),
            ("cam/whep", "'whep' cannot be part of a path name"),
            ("whep", "'whep' cannot be part of a path name"),
            ("'cam 1'", "' ' is not allowed"),
            ("'cam?x'", "'?' is not allowed"),
            ("'~^cam'", "regular-expression"),
            ("all_others", "catch-all"),
        ] {
            let e = refused(&format!("paths:\n  {name}:\n    source: demo\n"));
            assert!(e.contains(why), "{name}: {e}");
            assert!(e.contains("paths."), "{name}: {e}");
        }
        Config::from_yaml("paths:\n  cams/front-1.hd_~x:\n    source: demo\n").unwrap();
    }

    #[test]
    fn path_named_metrics_collides_only_when_metrics_share_the_listener() {
        let e = refused("paths:\n  metrics:\n");
        assert!(
            e.contains("paths.metrics: /metrics serves the metrics"),
            "{e}"
        );
        let metrics = "paths:\n  metrics:\n    source: demo\n";
        Config::from_yaml(&format!("metricsAddress: ':9998'\n{metrics}")).unwrap();
        Config::from_yaml(&format!("metrics: no\n{metrics}")).unwrap();
    }

    #[test]
    fn udp_max_payload_size_range() {
        Config::from_yaml(&format!("udpMaxPayloadSize: {UDP_PAYLOAD_MIN}")).unwrap();
        Config::from_yaml(&format!("udpMaxPayloadSize: {UDP_PAYLOAD_MAX}")).unwrap();
        for bad in [UDP_PAYLOAD_MIN - 1, UDP_PAYLOAD_MAX + 1, 1472, 9000, 0] {
            let e = refused(&format!("udpMaxPayloadSize: {bad}"));
            assert!(
                e.contains(&format!(
                    "udpMaxPayloadSize: {bad} is out of range: write 548 to 1452"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = refused("webrtcAllowOrigins: ['https://a.example/', 'example.com', '*']\n");
        assert!(e.contains("2 problems"), "{e}");
        assert!(
            e.contains("webrtcAllowOrigins: 'https://a.example/' is not an origin"),
            "{e}"
        );
        assert!(
            e.contains("webrtcAllowOrigins: 'example.com' is not an origin"),
            "{e}"
        );
        Config::from_yaml("webrtcAllowOrigins: ['https://a.example:8443', 'http://b']").unwrap();

        let e = refused("webrtcHandshakeTimeout: 0s");
        assert!(
            e.contains("webrtcHandshakeTimeout: must be more than 0s"),
            "{e}"
        );
        let e = refused("readTimeout: 0s");
        assert!(e.contains("readTimeout: must be more than 0s"), "{e}");

        let e = refused("paths:\n  cam:\n    source: rtsp://cam.local/stream\n");
        assert!(
            e.contains("paths.cam.source: relay cannot read 'rtsp://cam.local/stream'"),
            "{e}"
        );
        let e = refused("pathDefaults:\n  source: udp+rtp://nowhere\n");
        assert!(e.contains("pathDefaults.source: relay cannot read"), "{e}");

        // Type errors come from the YAML parser, which names the key too.
        let e = refused("metrics: maybe\n");
        assert!(
            e.contains("metrics") && e.contains("yes, no, true or false"),
            "{e}"
        );
        let e = refused("logLevel: verbose\n");
        assert!(e.contains("logLevel") && e.contains("verbose"), "{e}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("relay-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("relay.yml");
        std::fs::write(&file, "paths:\n  cam1:\n    source: demo\n").unwrap();
        assert_eq!(Config::load(&file).unwrap().paths.len(), 1);
        std::fs::write(&file, "rtmp: yes\n").unwrap();
        let e = format!("{:#}", Config::load(&file).unwrap_err());
        assert!(
            e.contains(&file.display().to_string()) && e.contains("rtmp: unknown key"),
            "{e}"
        );
        let missing = dir.join("missing.yml");
        let e = format!("{:#}", Config::load(&missing).unwrap_err());
        assert!(
            e.contains("cannot read the config file") && e.contains("missing.yml"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_path_without_source_is_refused_saying_what_to_write() {
        let e = refused("paths:\n  cam1:\n    maxReaders: 3\n");
        assert!(e.contains("1 problem:"), "{e}");
        assert!(
            e.contains("paths.cam1.source: no source, here or in pathDefaults")
                && e.contains("publisher")
                && e.contains("write 'demo' or 'udp+rtp://IP:PORT'"),
            "{e}"
        );
        // An empty value is MediaMTX's "not set" too.
        let e = refused("pathDefaults:\n  source: ''\npaths:\n  cam1:\n    source:\n");
        assert!(e.contains("paths.cam1.source: no source"), "{e}");
        let config = Config::from_yaml("pathDefaults:\n  source: demo\npaths:\n  cam1:\n").unwrap();
        assert_eq!(config.paths["cam1"].source, Source::Demo);
    }

    #[test]
    fn sources_are_read_at_load_and_their_problems_name_their_key() {
        let path = |source: &str| {
            format!(
                "paths:\n  cam1:\n    source: {source}\n    rtpSDP: {}",
                sdp_block(4)
            )
        };
        let e = refused(&path("udp+rtp://0.0.0.0:0"));
        assert!(
            e.contains("paths.cam1.source: relay cannot read 'udp+rtp://0.0.0.0:0': port 0 is not an address to receive on"),
            "{e}"
        );
        let e = refused(&path("udp+rtp://238.0.0.1:5004"));
        assert!(
            e.contains(
                "paths.cam1.source: relay cannot read 'udp+rtp://238.0.0.1:5004': multicast"
            ),
            "{e}"
        );
        // A trailing '/' is a URL's empty path: the same address.
        let config = Config::from_yaml(&path("udp+rtp://127.0.0.1:5004/")).unwrap();
        match &config.paths["cam1"].source {
            Source::Rtp { listen, sdp } => {
                assert_eq!(*listen, "127.0.0.1:5004".parse().unwrap());
                assert_eq!(sdp.tracks().len(), 1);
            }
            other => panic!("{other:?}"),
        }

        let e = refused("paths:\n  cam1:\n    source: udp+rtp://127.0.0.1:5004\n");
        assert!(
            e.contains("paths.cam1.rtpSDP: 'udp+rtp://127.0.0.1:5004' needs rtpSDP"),
            "{e}"
        );
        let h265 = SDP.replace("H264", "H265");
        let e = refused(&format!(
            "paths:\n  cam7:\n    source: udp+rtp://127.0.0.1:5004\n    rtpSDP: {h265:?}\n"
        ));
        assert!(
            e.contains("paths.cam7.rtpSDP: unsupported codec H265/90000"),
            "{e}"
        );
    }

    #[test]
    fn inherited_values_are_blamed_where_they_are_written_once() {
        let e = refused(&format!(
            "pathDefaults:\n  source: udp+rtp://127.0.0.1:5004/x\n  rtpSDP: 'v=0'\n\
             paths:\n  a:\n  b:\n  c:\n    source: udp+rtp://127.0.0.1:5006\n  \
             d:\n    source: udp+rtp://127.0.0.1:5008\n    rtpSDP: {}",
            sdp_block(4)
        ));
        assert!(e.contains("2 problems"), "{e}");
        assert!(
            e.contains("pathDefaults.source: relay cannot read 'udp+rtp://127.0.0.1:5004/x'"),
            "{e}"
        );
        assert!(e.contains("pathDefaults.rtpSDP: not valid SDP"), "{e}");
        // pathDefaults' source needs no rtpSDP of its own: each path may bring one.
        Config::from_yaml(&format!(
            "pathDefaults:\n  source: udp+rtp://127.0.0.1:5004\n\
             paths:\n  a:\n    rtpSDP: {}",
            sdp_block(4)
        ))
        .unwrap();
    }

    #[test]
    fn listeners_that_take_one_anothers_port_are_refused() {
        let rtp = |name: &str, address: &str| {
            format!(
                "  {name}:\n    source: udp+rtp://{address}\n    rtpSDP: {}",
                sdp_block(4)
            )
        };
        let e = refused(&format!(
            "webrtcLocalUDPAddress: 127.0.0.1:8189\npaths:\n{}{}{}",
            rtp("a", ":5004"),
            rtp("b", "127.0.0.1:5004"),
            rtp("c", "[::]:8189"),
        ));
        assert!(e.contains("2 problems"), "{e}");
        assert!(
            e.contains(
                "paths.b.source: 127.0.0.1:5004 takes the port paths.a.source already \
                 listens on (0.0.0.0:5004)"
            ),
            "{e}"
        );
        assert!(
            e.contains("paths.c.source: [::]:8189 takes the port webrtcLocalUDPAddress"),
            "{e}"
        );
        let e = refused("webrtcAddress: 127.0.0.1:9000\nmetricsAddress: ':9000'\n");
        assert!(
            e.contains("metricsAddress: 0.0.0.0:9000 takes the port webrtcAddress"),
            "{e}"
        );
        // Different addresses, port 0 (the kernel picks), metrics off: no overlap.
        Config::from_yaml(&format!(
            "webrtcLocalUDPAddress: 127.0.0.1:0\npaths:\n{}{}",
            rtp("a", "127.0.0.1:5004"),
            rtp("b", "127.0.0.2:5004")
        ))
        .unwrap();
        Config::from_yaml("webrtcAddress: 127.0.0.1:0\nmetricsAddress: 127.0.0.1:0\n").unwrap();
        Config::from_yaml("metrics: no\nwebrtcAddress: :9000\nmetricsAddress: :9000\n").unwrap();
    }

    #[test]
    fn xdp_needs_a_fixed_media_port_from_the_file_or_the_flag() {
        let e = refused("xdpInterface: eth0\nwebrtcLocalUDPAddress: ':0'\n");
        assert!(
            e.contains("webrtcLocalUDPAddress: xdpInterface needs a fixed media port"),
            "{e}"
        );
        let config = Config::from_yaml("xdpInterface: eth0\n").unwrap();
        assert_eq!(config.xdp_interface.as_deref(), Some("eth0"));
        assert_eq!(Config::default().xdp_interface, None);

        let dir = std::env::temp_dir().join(format!("relay-config-xdp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("relay.yml");
        std::fs::write(&file, "webrtcLocalUDPAddress: 127.0.0.1:0\n").unwrap();
        let flags = Overrides {
            xdp_interface: Some("eth0".into()),
            workers: Some(3),
            log_level: Some(LogLevel::Debug),
        };
        let e = format!("{:#}", Config::load_with(Some(&file), &flags).unwrap_err());
        assert!(e.contains("xdpInterface needs a fixed media port"), "{e}");
        std::fs::write(&file, "webrtcLocalUDPAddress: 127.0.0.1:8189\n").unwrap();
        let config = Config::load_with(Some(&file), &flags).unwrap();
        assert_eq!(config.xdp_interface.as_deref(), Some("eth0"));
        assert_eq!((config.workers, config.log_level), (3, LogLevel::Debug));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn viewers_must_be_told_an_address() {
        let e = refused("webrtcIPsFromInterfaces: no\n");
        assert!(
            e.contains("webrtcAdditionalHosts: viewers would be told no address"),
            "{e}"
        );
        Config::from_yaml("webrtcIPsFromInterfaces: no\nwebrtcAdditionalHosts: [relay]\n").unwrap();
        Config::from_yaml("webrtcIPsFromInterfaces: no\nwebrtcLocalUDPAddress: 10.0.0.1:8189\n")
            .unwrap();
    }

    #[test]
    fn typed_values() {
        let config = Config::default();
        assert_eq!(config.webrtc_address, "0.0.0.0:8889".parse().unwrap());
        assert_eq!(config.metrics_address, None);
        assert_eq!(config.xdp_stun_rate.get(), 50);
        let config = Config::from_yaml("metricsAddress: 127.0.0.1:9998\n").unwrap();
        assert_eq!(
            config.metrics_address,
            Some("127.0.0.1:9998".parse().unwrap())
        );
        let e = refused("xdpSTUNRate: 0\nxdpSTUNBurst: 0\n");
        assert!(
            e.contains("xdpSTUNRate: must be at least 1")
                && e.contains("xdpSTUNBurst: must be at least 1"),
            "{e}"
        );
    }

    /// Writes `config` and reads it back: the same config, and MediaMTX's spellings.
    fn round_trip(config: &Config) -> String {
        let yaml = config.to_yaml();
        let back = Config::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(&back, config, "{yaml}");
        yaml
    }

    #[test]
    fn a_config_writes_back_to_a_file_that_loads_to_it() {
        let yaml = round_trip(&Config::default());
        for line in [
            "webrtcAddress: :8889",
            "webrtcLocalUDPAddress: :8189",
            "xdpSTUNRate: 50",
        ] {
            assert!(yaml.contains(line), "{line} not in:\n{yaml}");
        }
        let text = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../relay.yml"));
        round_trip(&Config::from_yaml(text).unwrap());

        // Every key set, none to its default; paths inherit from pathDefaults.
        let every_key = format!(
            "logLevel: debug\n\
             logStructured: yes\n\
             readTimeout: 1m2s\n\
             webrtcAddress: 127.0.0.1:9889\n\
             webrtcLocalUDPAddress: '[::1]:9189'\n\
             webrtcIPsFromInterfaces: no\n\
             webrtcIPsFromInterfacesList: [eth0, eth1]\n\
             webrtcAdditionalHosts: [relay.example, 192.0.2.7]\n\
             webrtcAllowOrigins: ['https://a.example', 'http://b.example:8080']\n\
             webrtcHandshakeTimeout: 1500ms\n\
             webrtcAllowLegacySrtp: no\n\
             udpMaxPayloadSize: 1200\n\
             udpReadBufferSize: 8388608\n\
             metrics: yes\n\
             metricsAddress: 127.0.0.1:9998\n\
             workers: 3\n\
             xdpInterface: eth0\n\
             xdpMode: generic\n\
             xdpBusyPoll: yes\n\
             xdpSTUNRate: 7\n\
             xdpSTUNBurst: 9\n\
             pathDefaults:\n  source: demo\n  rtpSDP: {}  maxReaders: 4\n\
             paths:\n\
             \x20 demo:\n\
             \x20 cams/front:\n    source: udp+rtp://:5004/\n    maxReaders: 0\n\
             \x20 cams/back:\n    source: udp+rtp://[::1]:5006\n    rtpSDP: \"{}\"\n",
            sdp_block(2),
            SDP.replace('\n', "\\r\\n"),
        );
        let config = Config::from_yaml(&every_key).unwrap();
        let defaults = Config::default();
        assert_ne!(config.log_level, defaults.log_level);
        assert_ne!(config.xdp_mode, defaults.xdp_mode);
        assert_eq!(config.paths["demo"].max_readers, 4);
        assert_eq!(config.paths["cams/front"].source.rtp_sdp(), Some(SDP));
        assert_eq!(
            config.paths["cams/back"].source.rtp_sdp(),
            Some(SDP.replace('\n', "\r\n").as_str())
        );
        let yaml = round_trip(&config);
        for line in [
            "webrtcLocalUDPAddress: '[::1]:9189'",
            "xdpSTUNBurst: 9",
            "webrtcHandshakeTimeout: 1s 500ms",
        ] {
            assert!(yaml.contains(line), "{line} not in:\n{yaml}");
        }
    }
}
