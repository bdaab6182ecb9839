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
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::auth::AuthConfig;
use crate::hooks::{DemandHook, Hook, PathHooks};
use crate::http::connections::ConnectionLimits;
use crate::ingest::rtsp::RtspTransport;
use crate::ingest::{Source, SourceError};
use crate::track::history::Retention;
use crate::worker::admission::PendingLimits;

mod auth;
mod document;
mod mediamtx;

pub use document::{Document, Edit, EditError};
pub use mediamtx::NotRun;

/// The relay's settings, checked: every value here is one `relay serve` can run with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `logLevel`.
    pub log_level: LogLevel,
    /// `logStructured`: one JSON object per log line instead of text.
    pub log_structured: bool,

    /// `webrtcAddress`: the HTTP listener of WHEP and WHIP and their pages.
    pub webrtc_address: SocketAddr,
    /// `webrtcLocalUDPAddress`: the one UDP port every WebRTC session uses (ICE-lite,
    /// DTLS, SRTP); port 0: the kernel picks one.
    pub webrtc_local_udp_address: SocketAddr,
    /// `webrtcIPsFromInterfaces`: advertise the host's interface addresses as candidates.
    pub webrtc_ips_from_interfaces: bool,
    /// `webrtcIPsFromInterfacesList`: only these interfaces (empty: all).
    pub webrtc_ips_from_interfaces_list: Vec<String>,
    /// `webrtcAdditionalHosts`: more IPs or host names to advertise (NAT, containers),
    /// on the media port, or `HOST:PORT` on that port (see [`additional_host`]).
    pub webrtc_additional_hosts: Vec<String>,
    /// `webrtcAllowOrigins`: CORS origins allowed to call the WHEP endpoints.
    pub webrtc_allow_origins: Vec<String>,
    /// `webrtcHandshakeTimeout` (more than 0): a session whose ICE and DTLS have not
    /// completed by then is dropped.
    pub webrtc_handshake_timeout: Duration,
    /// `webrtcAllowLegacySrtp`: accept AES_CM_128_HMAC_SHA1_80 (AES-GCM is preferred).
    pub webrtc_allow_legacy_srtp: bool,
    /// `webrtcMaxPendingSessionsPerIP` (relay's own; 0: no limit): sessions answered to
    /// one client address and not yet connected, at most; more offers are answered 429.
    pub webrtc_max_pending_sessions_per_ip: usize,
    /// `webrtcMaxPendingSessions` (relay's own; 0: no limit): the same, over all
    /// addresses.
    pub webrtc_max_pending_sessions: usize,
    /// `ingestBatchWindow` (relay's own; 0: none): the RTP ingest reads its sources at
    /// most once per this window, so that one pass, and one wake-up of each worker, serves
    /// every stream that sent meanwhile; the RTSP sources' wake-ups are spaced the same
    /// way. A packet waits at most this much longer.
    pub ingest_batch_window: Duration,
    /// `keyframeRequestInterval` (relay's own; more than 0): viewers' PLI/FIR reach a
    /// publisher at most once per track per this interval.
    pub keyframe_request_interval: Duration,
    /// `historyDuration`, `historyMaxBytes` and `keyframeCache` (relay's own): what each
    /// track keeps for retransmission and for viewers starting mid-GOP.
    pub history: Retention,
    /// `rtcpSenderReportInterval` (relay's own; more than 0): how often every viewer
    /// gets RTCP sender reports; each viewer's retransmission budget is granted per
    /// interval too.
    pub rtcp_sender_report_interval: Duration,

    /// `udpMaxPayloadSize`, from [`UDP_PAYLOAD_MIN`] to [`UDP_PAYLOAD_MAX`]: the largest
    /// UDP payload sent; the demo's RTP is packetized to fit it.
    pub udp_max_payload_size: usize,
    /// `udpReadBufferSize`: SO_RCVBUF of the UDP sockets, 0: the system default.
    pub udp_read_buffer_size: usize,

    /// `metrics`: serve Prometheus metrics at /metrics on `metrics_address`.
    pub metrics: bool,
    /// `metricsAddress`: the metrics' listener.
    pub metrics_address: SocketAddr,

    /// `pprof`, `pprofAddress`: CPU profiles in pprof's format on a listener of their
    /// own; `None`: off.
    pub pprof_address: Option<SocketAddr>,
    /// `api`: serve MediaMTX's control API (v3) on `api_address`.
    pub api: bool,
    /// `apiAddress`: the API's listener.
    pub api_address: SocketAddr,
    /// `apiAllowOrigins`: CORS origins allowed to call the API.
    pub api_allow_origins: Vec<String>,

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
    /// `xdpSTUNGlobalRate`: STUN datagrams per second the XDP program lets through from
    /// all such addresses together (each within its own rate); without XDP, the checks
    /// the workers look up for such addresses.
    pub xdp_stun_global_rate: NonZeroU32,
    /// `xdpSTUNGlobalBurst`: how many of those may come at once.
    pub xdp_stun_global_burst: NonZeroU32,

    /// `readTimeout` (more than 0): how long an HTTP client has to send a request's
    /// header (from when it connects, or from its previous response on a kept-alive
    /// connection), and then an offer's body.
    pub read_timeout: Duration,
    /// `httpMaxConnectionsPerIP` (relay's own; 0: no limit): connections each HTTP
    /// listener holds open from one client address; more are answered 503 and closed.
    pub http_max_connections_per_ip: usize,
    /// `httpMaxConnections` (relay's own; 0: no limit): the same, over all addresses.
    pub http_max_connections: usize,

    /// `authMethod` and its keys: who may publish, read and scrape the metrics.
    pub auth: AuthConfig,

    /// `pathDefaults`, every key with its value: the file's, else relay's default.
    pub path_defaults: PathDefaults,
    /// `paths`, by name, with what each inherits from `pathDefaults` filled in.
    pub paths: BTreeMap<String, PathConfig>,
    /// The `paths` entries that stand for many names (`~regex`, `all_others`), in the
    /// order a name is tried against them; a name in `paths` is never tried.
    pub path_patterns: Vec<PathPattern>,
}

/// One entry of `paths`, complete: `pathDefaults` is already applied. `S` is the
/// source: parsed for a named path, as written (with `$G1`...) for a [`PathPattern`].
#[derive(Debug, Clone, PartialEq)]
pub struct PathConfig<S = Source> {
    /// `source`, with its `rtpSDP`.
    pub source: S,
    /// `maxReaders`: most viewers at once; 0: no limit.
    pub max_readers: usize,
    /// `rtspTransport` of an `rtsp://` source.
    pub rtsp_transport: RtspTransport,
    /// `sourceOnDemand` (rtsp:// sources): connect only while viewers watch.
    pub on_demand: Option<OnDemand>,
    /// `overridePublisher`: a new publisher replaces the current one (else: 409).
    pub override_publisher: bool,
    /// `runOnInit`, `runOnReady`, `runOnNotReady`, `runOnRead`, `runOnUnread` and their
    /// `...Restart`.
    pub hooks: PathHooks,
}

impl PathConfig {
    /// A path with `source` and every other key at its default.
    pub fn new(source: Source) -> PathConfig {
        PathConfig {
            source,
            max_readers: 0,
            rtsp_transport: RtspTransport::default(),
            on_demand: None,
            override_publisher: OVERRIDE_PUBLISHER,
            hooks: PathHooks::default(),
        }
    }
}

impl<S> PathConfig<S> {
    /// The same settings with another source.
    fn with_source<T>(&self, source: T) -> PathConfig<T> {
        PathConfig {
            source,
            max_readers: self.max_readers,
            rtsp_transport: self.rtsp_transport,
            on_demand: self.on_demand,
            override_publisher: self.override_publisher,
            hooks: self.hooks.clone(),
        }
    }
}

/// `pathDefaults` as the API reports it and the config writes it back (MediaMTX's
/// `/v3/config/pathdefaults/get`): every key of a path, set. What paths inherit from it
/// is applied to them at load already.
#[derive(Debug, Clone, PartialEq)]
pub struct PathDefaults(RawPath);

/// A `paths` entry whose key stands for every path name its regular expression
/// matches, as in MediaMTX: `~REGEX`, and `all_others` (or the older `all`), which
/// match any name. A path is made from it when a publisher or viewer asks for such a
/// name, and lives while they do.
#[derive(Debug, Clone)]
pub struct PathPattern {
    /// The key as written.
    pub key: String,
    regex: Regex,
    /// Its settings; `source` as written: `publisher`, or an `rtsp://` URL in which
    /// `$G1`, `$G2`... stand for the regex's capture groups.
    pub path: PathConfig<String>,
}

/// Patterns are equal when they are written alike (the regex follows from the key).
impl PartialEq for PathPattern {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.path == other.path
    }
}

impl PathPattern {
    /// The regex a `paths` key stands for; `None` for a plain path name.
    fn regex(key: &str) -> Option<Result<Regex, regex::Error>> {
        match key {
            "all" | "all_others" => Some(Regex::new("^.*$")),
            _ => Some(Regex::new(key.strip_prefix('~')?)),
        }
    }

    /// The config of path `name` if this pattern matches it: its source with `$G1`...
    /// replaced by what the groups captured (MediaMTX's `resolveSource`).
    pub fn config_for(&self, name: &str) -> Option<Result<PathConfig, SourceError>> {
        let groups = self.regex.captures(name)?;
        let source = fill_groups(
            &self.path.source,
            |i| groups.get(i).map_or("", |m| m.as_str()),
            groups.len(),
        );
        Some(Source::parse(&source, None).map(|source| self.path.with_source(source)))
    }

    /// The first of `patterns` (in match order) that stands for `name`, and the path
    /// config it makes for it: the one rule the path table and the API share.
    pub fn first_match<'a>(
        patterns: &'a [PathPattern],
        name: &str,
    ) -> Option<(&'a PathPattern, Result<PathConfig, SourceError>)> {
        patterns.iter().find_map(|p| Some((p, p.config_for(name)?)))
    }

    /// In match order, as MediaMTX's FindPathConf: by key, `all` and `all_others` last.
    fn match_order(&self) -> (bool, &str) {
        (matches!(self.key.as_str(), "all" | "all_others"), &self.key)
    }
}

/// A pattern's `source` with its `groups` filled with samples, to be checked at load:
/// a group after ':' is a port (as MediaMTX checks it).
fn with_sample_groups(source: &str, groups: usize) -> String {
    let ports = (1..groups).rev().fold(source.to_owned(), |s, i| {
        s.replace(&format!(":$G{i}"), ":554")
    });
    fill_groups(&ports, |_| "g", groups)
}

/// `template` with `$G1`... `$G<groups - 1>` replaced by `group(i)`, the highest first
/// so that `$G1` does not eat the start of `$G10`.
fn fill_groups<'a>(template: &str, group: impl Fn(usize) -> &'a str, groups: usize) -> String {
    (1..groups).rev().fold(template.to_owned(), |s, i| {
        s.replace(&format!("$G{i}"), group(i))
    })
}

/// `sourceOnDemand: yes`, with its two timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnDemand {
    /// `sourceOnDemandStartTimeout`: how long a viewer waits for the source to start.
    pub start_timeout: Duration,
    /// `sourceOnDemandCloseAfter`: how long the source stays connected without viewers.
    pub close_after: Duration,
}

impl Default for OnDemand {
    /// MediaMTX's defaults.
    fn default() -> Self {
        OnDemand {
            start_timeout: Duration::from_secs(10),
            close_after: Duration::from_secs(10),
        }
    }
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

/// A config file loaded: its text, its keys as written, the config they make, and what
/// of it relay does not run.
#[derive(Debug)]
pub struct Loaded {
    /// None when relay runs without a file.
    pub text: Option<String>,
    pub document: Document,
    pub config: Config,
    pub not_run: NotRun,
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

/// `xdpSTUNGlobalRate` and `xdpSTUNGlobalBurst` unless set: strangers' checks a second,
/// and at once, over all workers.
pub const STUN_GLOBAL_DEFAULT: u32 = 2000;

/// Smallest `udpMaxPayloadSize`: the 576-byte datagram every IPv4 host must accept,
/// less the IPv4 (20) and UDP (8) headers.
pub const UDP_PAYLOAD_MIN: usize = 576 - 20 - 8;
/// Largest `udpMaxPayloadSize`: a 1500-byte Ethernet MTU less the IPv6 (40) and UDP (8)
/// headers, so that no packet is fragmented whichever IP version a viewer uses.
pub const UDP_PAYLOAD_MAX: usize = 1500 - 40 - 8;

impl Config {
    /// Reads and checks a config file. Every problem (unknown keys, bad values) is
    /// reported at once, each with its YAML path and what to write instead.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        Config::load_with(Some(path), &Overrides::default())
    }

    /// [`Config::load`] with `overrides` in place of the file's keys; without a file,
    /// the defaults and one path, `demo`, playing the built-in clip.
    pub fn load_with(path: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
        Config::load_noting(path, overrides).map(|(config, _)| config)
    }

    /// [`Config::load_with`], and the keys of a `mediamtx.yml` that relay accepted
    /// without using them: for the one warning that says so.
    pub fn load_noting(
        path: Option<&Path>,
        overrides: &Overrides,
    ) -> anyhow::Result<(Config, NotRun)> {
        let loaded = Config::load_document(path, overrides)?;
        Ok((loaded.config, loaded.not_run))
    }

    /// [`Config::load_noting`], and the file's keys as written, which the control API
    /// edits ([`Document`]).
    pub fn load_document(path: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Loaded> {
        let Some(path) = path else {
            let (config, not_run) = Config::read(None, overrides)?;
            return Ok(Loaded {
                text: None,
                document: Document::demo(),
                config,
                not_run,
            });
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        Config::load_text(text, overrides)
            .with_context(|| format!("config file {}", path.display()))
    }

    /// [`Config::load_document`] of a file's `text`.
    pub fn load_text(text: String, overrides: &Overrides) -> Result<Loaded, ConfigError> {
        // Checked as written, so that errors give the file's own lines.
        let (config, not_run) = Config::read(Some(&text), overrides)?;
        let document = Document::parse(&text)?;
        // The API edits the document: it must read as the file does, or the API's
        // changes would check a config other than the one that runs. YAML tags are
        // read differently by the two (Document::parse refuses the `!name` it sees; a
        // `!!name` on an empty value it does not see, as the fuzzer found).
        let disagree = |how: String| {
            ConfigError::Yaml(serde::de::Error::custom(format!(
                "relay's API would read this file differently from relay ({how}); YAML tags \
                 (!name, !!name) are the usual cause: remove them"
            )))
        };
        match document.check(overrides) {
            Ok((again, _)) if again == config => {}
            Ok(_) => return Err(disagree("another config".into())),
            Err(e) => return Err(disagree(e.to_string())),
        }
        Ok(Loaded {
            document,
            text: Some(text),
            config,
            not_run,
        })
    }

    /// Reads and checks a config file's text.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        Config::read(Some(text), &Overrides::default()).map(|(config, _)| config)
    }

    /// The config as a file: MediaMTX's keys, every one written out.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("a config is plain YAML")
    }

    fn read(text: Option<&str>, overrides: &Overrides) -> Result<(Config, NotRun), ConfigError> {
        let mut problems = Problems::default();
        let mut not_run = NotRun::default();
        let mut raw = match text {
            Some(text) => RawConfig::parse(text, &mut problems, &mut not_run)?,
            None => RawConfig::demo(),
        };
        overrides.apply(&mut raw);
        Ok((raw.check(problems)?, not_run))
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
    #[serde(
        rename = "webrtcIPsFromInterfacesList",
        deserialize_with = "null_default"
    )]
    webrtc_ips_from_interfaces_list: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    webrtc_additional_hosts: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    webrtc_allow_origins: Vec<String>,
    #[serde(with = "humantime_serde")]
    webrtc_handshake_timeout: Duration,
    #[serde(deserialize_with = "yes_no")]
    webrtc_allow_legacy_srtp: bool,
    #[serde(rename = "webrtcMaxPendingSessionsPerIP")]
    webrtc_max_pending_sessions_per_ip: usize,
    webrtc_max_pending_sessions: usize,
    #[serde(with = "humantime_serde")]
    ingest_batch_window: Duration,
    #[serde(with = "humantime_serde")]
    keyframe_request_interval: Duration,
    #[serde(with = "humantime_serde")]
    history_duration: Duration,
    history_max_bytes: usize,
    #[serde(deserialize_with = "yes_no")]
    keyframe_cache: bool,
    #[serde(with = "humantime_serde")]
    rtcp_sender_report_interval: Duration,

    udp_max_payload_size: usize,
    udp_read_buffer_size: usize,

    #[serde(deserialize_with = "yes_no")]
    metrics: bool,
    metrics_address: String,
    #[serde(deserialize_with = "yes_no")]
    pprof: bool,
    pprof_address: String,
    #[serde(deserialize_with = "yes_no", skip_serializing)]
    pprof_encryption: bool,
    #[serde(deserialize_with = "null_default", skip_serializing)]
    pprof_trusted_proxies: Vec<String>,

    #[serde(deserialize_with = "yes_no")]
    api: bool,
    api_address: String,
    #[serde(deserialize_with = "null_default")]
    api_allow_origins: Vec<String>,

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
    #[serde(rename = "xdpSTUNGlobalRate")]
    xdp_stun_global_rate: u32,
    #[serde(rename = "xdpSTUNGlobalBurst")]
    xdp_stun_global_burst: u32,

    #[serde(with = "humantime_serde")]
    read_timeout: Duration,
    #[serde(rename = "httpMaxConnectionsPerIP")]
    http_max_connections_per_ip: usize,
    http_max_connections: usize,

    auth_method: auth::AuthMethod,
    #[serde(deserialize_with = "null_default")]
    auth_internal_users: Vec<auth::RawUser>,
    #[serde(rename = "authHTTPAddress", deserialize_with = "null_default")]
    auth_http_address: String,
    #[serde(rename = "authHTTPExclude", deserialize_with = "null_default")]
    auth_http_exclude: Vec<auth::RawPermission>,
    #[serde(rename = "authJWTJWKS", deserialize_with = "null_default")]
    auth_jwt_jwks: String,
    #[serde(rename = "authJWTClaimKey", deserialize_with = "null_default")]
    auth_jwt_claim_key: String,
    #[serde(rename = "authJWTIssuer", deserialize_with = "null_default")]
    auth_jwt_issuer: String,
    #[serde(rename = "authJWTAudience", deserialize_with = "null_default")]
    auth_jwt_audience: String,
    #[serde(rename = "authJWTExclude", deserialize_with = "null_default")]
    auth_jwt_exclude: Vec<auth::RawPermission>,

    // MediaMTX's keys that would change who may do what if relay ignored them: read so
    // that values relay cannot honour are refused; not written back (relay.yml leaves
    // them out).
    #[serde(
        rename = "authHTTPFingerprint",
        deserialize_with = "null_default",
        skip_serializing
    )]
    auth_http_fingerprint: String,
    #[serde(
        rename = "authJWTJWKSFingerprint",
        deserialize_with = "null_default",
        skip_serializing
    )]
    auth_jwt_jwks_fingerprint: String,
    #[serde(
        rename = "authJWTInHTTPQuery",
        deserialize_with = "yes_no",
        skip_serializing
    )]
    auth_jwt_in_http_query: bool,
    #[serde(deserialize_with = "yes_no", skip_serializing)]
    webrtc: bool,
    #[serde(deserialize_with = "yes_no", skip_serializing)]
    webrtc_encryption: bool,
    #[serde(deserialize_with = "null_default", skip_serializing)]
    webrtc_trusted_proxies: Vec<String>,
    #[serde(deserialize_with = "yes_no", skip_serializing)]
    metrics_encryption: bool,
    #[serde(deserialize_with = "null_default", skip_serializing)]
    metrics_trusted_proxies: Vec<String>,
    #[serde(deserialize_with = "yes_no", skip_serializing)]
    api_encryption: bool,
    #[serde(deserialize_with = "null_default", skip_serializing)]
    api_trusted_proxies: Vec<String>,

    #[serde(deserialize_with = "null_default")]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    rtsp_transport: Option<RtspTransport>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "yes_no_option"
    )]
    source_on_demand: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", with = "humantime_serde")]
    source_on_demand_start_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none", with = "humantime_serde")]
    source_on_demand_close_after: Option<Duration>,
    #[serde(
        deserialize_with = "yes_no_option",
        skip_serializing_if = "Option::is_none"
    )]
    override_publisher: Option<bool>,
    /// Read only to be refused when set (see `refuse_what_relay_cannot_honour`).
    #[serde(skip_serializing)]
    source_fingerprint: Option<String>,
    // Hooks; `runOnAvailable`/`runOnUnavailable` are MediaMTX's newer names of the
    // ready ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    run_on_init: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "yes_no_option"
    )]
    run_on_init_restart: Option<bool>,
    #[serde(alias = "runOnAvailable", skip_serializing_if = "Option::is_none")]
    run_on_ready: Option<String>,
    #[serde(
        alias = "runOnAvailableRestart",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "yes_no_option"
    )]
    run_on_ready_restart: Option<bool>,
    #[serde(alias = "runOnUnavailable", skip_serializing_if = "Option::is_none")]
    run_on_not_ready: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_on_read: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "yes_no_option"
    )]
    run_on_read_restart: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_on_unread: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_on_demand: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "yes_no_option"
    )]
    run_on_demand_restart: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", with = "humantime_serde")]
    run_on_demand_start_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none", with = "humantime_serde")]
    run_on_demand_close_after: Option<Duration>,
    #[serde(rename = "runOnUnDemand", skip_serializing_if = "Option::is_none")]
    run_on_undemand: Option<String>,
}

impl RawPath {
    /// `path` as written, every key set: a hook it lacks is written empty, so that it
    /// does not inherit pathDefaults' when read back (MediaMTX's file writes them so);
    /// the sourceOnDemand timeouts are written when it is off too.
    fn written(path: &PathConfig<String>, rtp_sdp: Option<&str>) -> RawPath {
        let on_demand = path.on_demand.unwrap_or_default();
        let command = |hook: &Option<Hook>| Some(hook.as_ref().map_or("", |h| &h.command).into());
        let restart = |hook: &Option<Hook>| Some(hook.as_ref().is_some_and(|h| h.restart));
        let once = |command: &Option<String>| Some(command.clone().unwrap_or_default());
        let hooks = &path.hooks;
        // runOnDemand's timeouts have sourceOnDemand's defaults.
        let demand = hooks.on_demand.as_ref();
        RawPath {
            source: Some(path.source.clone()),
            rtp_sdp: Some(rtp_sdp.unwrap_or_default().to_owned()),
            max_readers: Some(path.max_readers),
            rtsp_transport: Some(path.rtsp_transport),
            source_on_demand: Some(path.on_demand.is_some()),
            source_on_demand_start_timeout: Some(on_demand.start_timeout),
            source_on_demand_close_after: Some(on_demand.close_after),
            override_publisher: Some(path.override_publisher),
            source_fingerprint: None,
            run_on_init: command(&hooks.on_init),
            run_on_init_restart: restart(&hooks.on_init),
            run_on_ready: command(&hooks.on_ready),
            run_on_ready_restart: restart(&hooks.on_ready),
            run_on_not_ready: once(&hooks.on_not_ready),
            run_on_read: command(&hooks.on_read),
            run_on_read_restart: restart(&hooks.on_read),
            run_on_unread: once(&hooks.on_unread),
            run_on_demand: command(&demand.map(|d| d.hook.clone())),
            run_on_demand_restart: restart(&demand.map(|d| d.hook.clone())),
            run_on_demand_start_timeout: Some(
                demand.map_or(on_demand.start_timeout, |d| d.start_timeout),
            ),
            run_on_demand_close_after: Some(
                demand.map_or(on_demand.close_after, |d| d.close_after),
            ),
            run_on_undemand: once(&demand.and_then(|d| d.on_undemand.clone())),
        }
    }

    /// Relay's default of every key of a path (MediaMTX's).
    fn defaults() -> RawPath {
        let path = PathConfig::new(Source::Publisher);
        RawPath::written(&path.with_source(path.source.to_string()), None)
    }

    /// These keys over `defaults`: the keys this leaves unset are `defaults`'.
    fn over(&self, defaults: &RawPath) -> RawPath {
        // Unset keys are not written, so the union of the two maps is the overlay.
        let keys = |path: &RawPath| match serde_json::to_value(path) {
            Ok(serde_json::Value::Object(keys)) => keys,
            other => unreachable!("a path serializes to a map, not {other:?}"),
        };
        let mut merged = keys(defaults);
        merged.extend(keys(self));
        serde_json::from_value(merged.into()).expect("a path reads back what it writes")
    }
}

impl Default for RawConfig {
    fn default() -> Self {
        let mut raw = RawConfig {
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
            webrtc_max_pending_sessions_per_ip: PendingLimits::default().per_address,
            webrtc_max_pending_sessions: PendingLimits::default().total,
            ingest_batch_window: Duration::from_millis(1),
            keyframe_request_interval: Duration::from_secs(1),
            history_duration: Retention::default().duration,
            history_max_bytes: Retention::default().max_bytes,
            keyframe_cache: Retention::default().keyframe_cache,
            rtcp_sender_report_interval: Duration::from_secs(1),
            udp_max_payload_size: 1452,
            udp_read_buffer_size: 0,
            metrics: false,
            metrics_address: ":9998".into(),
            pprof: false,
            pprof_address: ":9999".into(),
            pprof_encryption: false,
            pprof_trusted_proxies: Vec::new(),
            api: false,
            api_address: ":9997".into(),
            api_allow_origins: vec!["*".into()],
            workers: 0,
            xdp_interface: String::new(),
            xdp_mode: XdpMode::Native,
            xdp_busy_poll: false,
            xdp_stun_rate: 50,
            xdp_stun_burst: 100,
            xdp_stun_global_rate: STUN_GLOBAL_DEFAULT,
            xdp_stun_global_burst: STUN_GLOBAL_DEFAULT,
            read_timeout: Duration::from_secs(10),
            http_max_connections_per_ip: ConnectionLimits::default().per_address,
            http_max_connections: ConnectionLimits::default().total,
            auth_method: auth::AuthMethod::Internal,
            auth_internal_users: Vec::new(),
            auth_http_address: String::new(),
            auth_http_exclude: Vec::new(),
            auth_jwt_jwks: String::new(),
            auth_jwt_claim_key: auth::CLAIM_KEY.into(),
            auth_jwt_issuer: String::new(),
            auth_jwt_audience: String::new(),
            auth_jwt_exclude: Vec::new(),
            auth_http_fingerprint: String::new(),
            auth_jwt_jwks_fingerprint: String::new(),
            auth_jwt_in_http_query: false,
            webrtc: true,
            webrtc_encryption: false,
            webrtc_trusted_proxies: Vec::new(),
            metrics_encryption: false,
            metrics_trusted_proxies: Vec::new(),
            api_encryption: false,
            api_trusted_proxies: Vec::new(),
            path_defaults: RawPath::default(),
            paths: BTreeMap::new(),
        };
        auth::write(&AuthConfig::mediamtx_default(), &mut raw);
        raw
    }
}

/// The least `historyMaxBytes`: a large keyframe of a 1080p stream.
const HISTORY_MIN_BYTES: usize = 256 << 10;
/// Longest `ingestBatchWindow`: longer would add a visible delay to every stream.
const MAX_INGEST_BATCH_WINDOW: Duration = Duration::from_millis(20);

/// MediaMTX's `overridePublisher` default.
const OVERRIDE_PUBLISHER: bool = true;

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
    fn parse(
        text: &str,
        problems: &mut Problems,
        not_run: &mut NotRun,
    ) -> Result<RawConfig, ConfigError> {
        // An empty file (or one with only comments) is the defaults.
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(RawConfig::default());
        }
        let de = serde_yaml_ng::Deserializer::from_str(text);
        Ok(serde_ignored::deserialize(de, |path| {
            let keys = yaml_path(&path);
            if !not_run.take(&keys) {
                problems.push(unknown_key(&keys));
            }
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
        let metrics_address = problems.take("metricsAddress", parse_listen(&self.metrics_address));
        let pprof_address = problems.take("pprofAddress", parse_listen(&self.pprof_address));
        let api_address = problems.take("apiAddress", parse_listen(&self.api_address));
        for (key, origins) in [
            ("webrtcAllowOrigins", &self.webrtc_allow_origins),
            ("apiAllowOrigins", &self.api_allow_origins),
        ] {
            for origin in origins {
                if let Err(e) = check_origin(origin) {
                    problems.add(key, e);
                }
            }
        }
        for host in &self.webrtc_additional_hosts {
            problems.take("webrtcAdditionalHosts", additional_host(host));
        }
        let at_least_one =
            |n| NonZeroU32::new(n).ok_or("must be at least 1 (0 would refuse every new viewer)");
        let xdp_stun_rate = problems.take("xdpSTUNRate", at_least_one(self.xdp_stun_rate));
        let xdp_stun_burst = problems.take("xdpSTUNBurst", at_least_one(self.xdp_stun_burst));
        let xdp_stun_global_rate =
            problems.take("xdpSTUNGlobalRate", at_least_one(self.xdp_stun_global_rate));
        let xdp_stun_global_burst = problems.take(
            "xdpSTUNGlobalBurst",
            at_least_one(self.xdp_stun_global_burst),
        );
        if self.keyframe_request_interval.is_zero() {
            problems.add("keyframeRequestInterval", "must be more than 0s, e.g. 1s");
        }
        if self.ingest_batch_window > MAX_INGEST_BATCH_WINDOW {
            problems.add(
                "ingestBatchWindow",
                "must be at most 20ms (every packet may wait that long), e.g. 1ms; 0 for none",
            );
        }
        if self.history_duration.is_zero() {
            problems.add(
                "historyDuration",
                "must be more than 0s (retransmissions are served from it), e.g. 1s",
            );
        }
        if self.history_max_bytes < HISTORY_MIN_BYTES {
            problems.add(
                "historyMaxBytes",
                format!(
                    "{} is too small to hold a video keyframe: write at least \
                     {HISTORY_MIN_BYTES}, e.g. 8388608",
                    self.history_max_bytes
                ),
            );
        }
        if self.rtcp_sender_report_interval.is_zero() {
            problems.add("rtcpSenderReportInterval", "must be more than 0s, e.g. 1s");
        }
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
        let auth = auth::check(&self, &mut problems);
        self.refuse_what_relay_cannot_honour(&mut problems);
        let (paths, path_patterns) = self.check_paths(&mut problems);
        let path_defaults = PathDefaults(self.path_defaults.over(&RawPath::defaults()));
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
        let tcp = [
            ("webrtcAddress", webrtc_address),
            ("metricsAddress", metrics_address.filter(|_| self.metrics)),
            ("pprofAddress", pprof_address.filter(|_| self.pprof)),
            ("apiAddress", api_address.filter(|_| self.api)),
        ];
        check_overlaps(&mut problems, tcp.iter().map(|(k, a)| (k.to_string(), *a)));
        let sources = paths.iter().filter_map(|(name, path)| match &path.source {
            Source::Rtp { listen, .. } => Some((format!("paths.{name}.source"), Some(*listen))),
            Source::Demo | Source::Publisher | Source::Rtsp(_) => None,
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
                webrtc_max_pending_sessions_per_ip: self.webrtc_max_pending_sessions_per_ip,
                webrtc_max_pending_sessions: self.webrtc_max_pending_sessions,
                ingest_batch_window: self.ingest_batch_window,
                keyframe_request_interval: self.keyframe_request_interval,
                history: Retention {
                    duration: self.history_duration,
                    max_bytes: self.history_max_bytes,
                    keyframe_cache: self.keyframe_cache,
                },
                rtcp_sender_report_interval: self.rtcp_sender_report_interval,
                udp_max_payload_size: self.udp_max_payload_size,
                udp_read_buffer_size: self.udp_read_buffer_size,
                metrics: self.metrics,
                metrics_address: metrics_address?,
                pprof_address: if self.pprof {
                    Some(pprof_address?)
                } else {
                    None
                },
                api: self.api,
                api_address: api_address?,
                api_allow_origins: self.api_allow_origins,
                workers: self.workers,
                xdp_interface,
                xdp_mode: self.xdp_mode,
                xdp_busy_poll: self.xdp_busy_poll,
                xdp_stun_rate: xdp_stun_rate?,
                xdp_stun_burst: xdp_stun_burst?,
                xdp_stun_global_rate: xdp_stun_global_rate?,
                xdp_stun_global_burst: xdp_stun_global_burst?,
                read_timeout: self.read_timeout,
                http_max_connections_per_ip: self.http_max_connections_per_ip,
                http_max_connections: self.http_max_connections,
                auth: auth?,
                path_defaults,
                paths,
                path_patterns,
            })
        })();
        match config {
            Some(config) if problems.0.is_empty() => Ok(config),
            _ => Err(ConfigError::Invalid(problems.0)),
        }
    }

    /// MediaMTX keys whose values relay cannot honour and that would change who may do
    /// what if it ignored them: refused with what to do instead.
    fn refuse_what_relay_cannot_honour(&self, problems: &mut Problems) {
        if !self.webrtc {
            problems.add(
                "webrtc",
                "relay serves WebRTC only: with webrtc off it would serve nothing; write yes",
            );
        }
        for (key, on) in [
            ("webrtcEncryption", self.webrtc_encryption),
            ("metricsEncryption", self.metrics_encryption),
            ("pprofEncryption", self.pprof_encryption),
            ("apiEncryption", self.api_encryption),
        ] {
            if on {
                problems.add(
                    key,
                    "relay serves plain HTTP: terminate TLS in a proxy in front of it \
                     (docs/operations.md) and write no",
                );
            }
        }
        for (key, proxies) in [
            ("webrtcTrustedProxies", &self.webrtc_trusted_proxies),
            ("metricsTrustedProxies", &self.metrics_trusted_proxies),
            ("pprofTrustedProxies", &self.pprof_trusted_proxies),
            ("apiTrustedProxies", &self.api_trusted_proxies),
        ] {
            if !proxies.is_empty() {
                problems.add(
                    key,
                    "relay does not read X-Forwarded-For: authentication would see the \
                     proxy's address, not the client's; write []",
                );
            }
        }
        for (key, path) in std::iter::once(("pathDefaults", &self.path_defaults))
            .chain(self.paths.iter().map(|(name, p)| (name.as_str(), p)))
        {
            if path.source_fingerprint.as_deref().and_then(set).is_some() {
                let key = if key == "pathDefaults" {
                    "pathDefaults.sourceFingerprint".to_owned()
                } else {
                    format!("paths.{key}.sourceFingerprint")
                };
                problems.add(
                    key,
                    "relay pulls no TLS sources (rtsps://) and pins no certificates: remove it",
                );
            }
        }
    }

    /// Each path with what it inherits from pathDefaults, and the patterns in match
    /// order; the entries in error are left out (their problems are noted).
    fn check_paths(
        &self,
        problems: &mut Problems,
    ) -> (BTreeMap<String, PathConfig>, Vec<PathPattern>) {
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
        let mut patterns = Vec::new();
        for (name, path) in &self.paths {
            let regex = match PathPattern::regex(name) {
                None => check_path_name(name).map(|()| None),
                Some(Ok(regex)) => Ok(Some(regex)),
                Some(Err(e)) => Err(format!("not a regular expression: {e}")),
            };
            let regex = match regex {
                Ok(regex) => regex,
                Err(e) => {
                    problems.add(format!("paths.{name}"), e);
                    continue;
                }
            };
            // The value of `key` for this path, and the YAML path it was written at.
            let inherited = |key: &str, own: &Option<String>, default: &Option<String>| match (
                own.as_deref().and_then(set),
                default.as_deref().and_then(set),
            ) {
                (Some(value), _) => Some((format!("paths.{name}.{key}"), value.to_owned())),
                (None, Some(value)) => Some((format!("pathDefaults.{key}"), value.to_owned())),
                (None, None) => None,
            };
            // MediaMTX's default source: a publisher.
            let (source_key, source) = inherited("source", &path.source, &defaults.source)
                .unwrap_or_else(|| (format!("paths.{name}.source"), "publisher".into()));
            let sdp = inherited("rtpSDP", &path.rtp_sdp, &defaults.rtp_sdp);
            // A pattern's source is checked with its capture groups filled with samples.
            let written = match &regex {
                Some(regex) => with_sample_groups(&source, regex.captures_len()),
                None => source.clone(),
            };
            let parsed = match Source::parse(&written, sdp.as_ref().map(|(_, t)| t.as_str())) {
                Ok(parsed) => parsed,
                Err(e) => {
                    let sdp_key = sdp.map_or_else(|| format!("paths.{name}.rtpSDP"), |(k, _)| k);
                    problems.add(at_fault(&e, &source_key, &sdp_key), e);
                    continue;
                }
            };
            let config = PathConfig {
                max_readers: path.max_readers.or(defaults.max_readers).unwrap_or(0),
                on_demand: check_on_demand(name, path, defaults, &parsed, problems),
                rtsp_transport: path
                    .rtsp_transport
                    .or(defaults.rtsp_transport)
                    .unwrap_or_default(),
                override_publisher: path
                    .override_publisher
                    .or(defaults.override_publisher)
                    .unwrap_or(OVERRIDE_PUBLISHER),
                hooks: PathHooks {
                    on_demand: check_run_on_demand(name, path, defaults, &parsed, problems),
                    ..path_hooks(path, defaults)
                },
                source: parsed,
            };
            let Some(regex) = regex else {
                paths.insert(name.clone(), config);
                continue;
            };
            // One source per path made from the pattern: a publisher, or a camera pulled
            // while viewers watch (MediaMTX asks the same of static sources).
            match (&config.source, config.on_demand) {
                (Source::Publisher, _) | (Source::Rtsp(_), Some(_)) => {
                    patterns.push(PathPattern {
                        key: name.clone(),
                        regex,
                        path: config.with_source(source),
                    });
                }
                (Source::Rtsp(_), None) => problems.add(
                    format!("paths.{name}.sourceOnDemand"),
                    "a path with a regular expression (or all_others) pulls its rtsp:// \
                     source only while viewers watch: set sourceOnDemand: yes",
                ),
                (Source::Demo | Source::Rtp { .. }, _) => problems.add(
                    source_key,
                    format!(
                        "a path with a regular expression (or all_others) takes \
                         'publisher' or an rtsp:// source, not '{source}': name the path"
                    ),
                ),
            }
        }
        patterns.sort_by(|a, b| a.match_order().cmp(&b.match_order()));
        (paths, patterns)
    }
}

/// A path's hooks, each inherited from pathDefaults unless the path sets it; an empty
/// command is none (MediaMTX's file writes them empty).
fn path_hooks(path: &RawPath, defaults: &RawPath) -> PathHooks {
    let command = |own: &Option<String>, default: &Option<String>| {
        own.as_deref()
            .or(default.as_deref())
            .and_then(set)
            .map(str::to_owned)
    };
    let hook = |own: &Option<String>, default: &Option<String>, restart: [Option<bool>; 2]| {
        command(own, default).map(|command| Hook {
            command,
            restart: restart[0].or(restart[1]).unwrap_or(false),
        })
    };
    PathHooks {
        on_init: hook(
            &path.run_on_init,
            &defaults.run_on_init,
            [path.run_on_init_restart, defaults.run_on_init_restart],
        ),
        on_ready: hook(
            &path.run_on_ready,
            &defaults.run_on_ready,
            [path.run_on_ready_restart, defaults.run_on_ready_restart],
        ),
        on_not_ready: command(&path.run_on_not_ready, &defaults.run_on_not_ready),
        on_read: hook(
            &path.run_on_read,
            &defaults.run_on_read,
            [path.run_on_read_restart, defaults.run_on_read_restart],
        ),
        on_unread: command(&path.run_on_unread, &defaults.run_on_unread),
        on_demand: None,
    }
}

/// `runOnDemand` and its keys, for the path `name`. The command publishes to the path,
/// so only a `publisher` path runs it: another that sets it is refused, one that
/// inherits it from pathDefaults does without.
fn check_run_on_demand(
    name: &str,
    path: &RawPath,
    defaults: &RawPath,
    source: &Source,
    problems: &mut Problems,
) -> Option<DemandHook> {
    let own = path.run_on_demand.as_deref().and_then(set);
    let command = own.or(defaults.run_on_demand.as_deref().and_then(set))?;
    if *source != Source::Publisher {
        if own.is_some() {
            problems.add(
                format!("paths.{name}.runOnDemand"),
                format!(
                    "runOnDemand starts a command that publishes to the path, so the path \
                     takes publishers: set source: publisher (its source is '{source}')"
                ),
            );
        }
        return None;
    }
    let default = OnDemand::default();
    Some(DemandHook {
        hook: Hook {
            command: command.to_owned(),
            restart: (path.run_on_demand_restart)
                .or(defaults.run_on_demand_restart)
                .unwrap_or(false),
        },
        start_timeout: positive(
            (name, "runOnDemandStartTimeout", problems),
            [
                path.run_on_demand_start_timeout,
                defaults.run_on_demand_start_timeout,
            ],
            default.start_timeout,
        ),
        close_after: positive(
            (name, "runOnDemandCloseAfter", problems),
            [
                path.run_on_demand_close_after,
                defaults.run_on_demand_close_after,
            ],
            default.close_after,
        ),
        on_undemand: (path.run_on_undemand.as_deref())
            .or(defaults.run_on_undemand.as_deref())
            .and_then(set)
            .map(str::to_owned),
    })
}

/// The duration path `name` has for `key`: its own, else pathDefaults', else `or`;
/// 0s is a problem at the key that gave it.
fn positive(
    (name, key, problems): (&str, &str, &mut Problems),
    [own, default]: [Option<Duration>; 2],
    or: Duration,
) -> Duration {
    let value = own.or(default).unwrap_or(or);
    if value.is_zero() {
        let at = match own {
            Some(_) => format!("paths.{name}.{key}"),
            None => format!("pathDefaults.{key}"),
        };
        problems.add(at, "must be more than 0s, e.g. 10s");
    }
    value
}

/// `sourceOnDemand` and its timeouts, for the path `name`. Only pulled sources
/// (rtsp://) start on demand: a path that asks for it with another source is refused;
/// one that inherits it from pathDefaults runs all the time.
fn check_on_demand(
    name: &str,
    path: &RawPath,
    defaults: &RawPath,
    source: &Source,
    problems: &mut Problems,
) -> Option<OnDemand> {
    let on = path.source_on_demand.or(defaults.source_on_demand)?;
    let pulled = matches!(source, Source::Rtsp(_));
    if !pulled {
        if path.source_on_demand == Some(true) {
            problems.add(
                format!("paths.{name}.sourceOnDemand"),
                format!(
                    "only rtsp:// sources can start on demand; '{source}' always runs: \
                     remove sourceOnDemand"
                ),
            );
        }
        return None;
    }
    let start_timeout = positive(
        (name, "sourceOnDemandStartTimeout", problems),
        [
            path.source_on_demand_start_timeout,
            defaults.source_on_demand_start_timeout,
        ],
        OnDemand::default().start_timeout,
    );
    let close_after = positive(
        (name, "sourceOnDemandCloseAfter", problems),
        [
            path.source_on_demand_close_after,
            defaults.source_on_demand_close_after,
        ],
        OnDemand::default().close_after,
    );
    on.then_some(OnDemand {
        start_timeout,
        close_after,
    })
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
        let named = config.paths.iter().map(|(name, path)| {
            let written = path.with_source(path.source.to_string());
            (
                name.clone(),
                RawPath::written(&written, path.source.rtp_sdp()),
            )
        });
        let patterns =
            (config.path_patterns.iter()).map(|p| (p.key.clone(), RawPath::written(&p.path, None)));
        let mut raw = RawConfig {
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
            webrtc_max_pending_sessions_per_ip: config.webrtc_max_pending_sessions_per_ip,
            webrtc_max_pending_sessions: config.webrtc_max_pending_sessions,
            ingest_batch_window: config.ingest_batch_window,
            keyframe_request_interval: config.keyframe_request_interval,
            history_duration: config.history.duration,
            history_max_bytes: config.history.max_bytes,
            keyframe_cache: config.history.keyframe_cache,
            rtcp_sender_report_interval: config.rtcp_sender_report_interval,
            udp_max_payload_size: config.udp_max_payload_size,
            udp_read_buffer_size: config.udp_read_buffer_size,
            metrics: config.metrics,
            metrics_address: write_listen(config.metrics_address),
            pprof: config.pprof_address.is_some(),
            pprof_address: config
                .pprof_address
                .map_or_else(|| RawConfig::default().pprof_address, write_listen),
            api: config.api,
            api_address: write_listen(config.api_address),
            api_allow_origins: config.api_allow_origins.clone(),
            workers: config.workers,
            xdp_interface: config.xdp_interface.clone().unwrap_or_default(),
            xdp_mode: config.xdp_mode,
            xdp_busy_poll: config.xdp_busy_poll,
            xdp_stun_rate: config.xdp_stun_rate.get(),
            xdp_stun_burst: config.xdp_stun_burst.get(),
            xdp_stun_global_rate: config.xdp_stun_global_rate.get(),
            xdp_stun_global_burst: config.xdp_stun_global_burst.get(),
            read_timeout: config.read_timeout,
            http_max_connections_per_ip: config.http_max_connections_per_ip,
            http_max_connections: config.http_max_connections,
            // Paths are written whole: pathDefaults changes none of them.
            path_defaults: config.path_defaults.0.clone(),
            paths: named.chain(patterns).collect(),
            ..RawConfig::default()
        };
        auth::write(&config.auth, &mut raw);
        raw
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

/// A `webrtcAdditionalHosts` entry as (host, port): an IP or host name, advertised on
/// the media port (port `None`), or `HOST:PORT` / `[IPv6]:PORT`, advertised on that
/// port: the address of a port-forwarding NAT or proxy that hands datagrams on to the
/// media port.
pub fn additional_host(entry: &str) -> Result<(&str, Option<u16>), String> {
    let entry = entry.trim();
    // A bare IPv6 address is all colons: it has no port.
    if entry.parse::<IpAddr>().is_ok() {
        return Ok((entry, None));
    }
    let (host, port) = match entry.strip_prefix('[') {
        Some(bracketed) => bracketed
            .split_once("]:")
            .ok_or_else(|| format!("'{entry}': write [IPv6]:PORT"))?,
        None => match entry.rsplit_once(':') {
            Some(split) => split,
            None => (entry, ""),
        },
    };
    if host.is_empty() {
        return Err(format!("'{entry}': no host"));
    }
    if port.is_empty() && !entry.contains(':') {
        return Ok((host, None));
    }
    match port.parse::<u16>() {
        Ok(port) if port != 0 => Ok((host, Some(port))),
        _ => Err(format!("'{entry}': the port after ':' must be 1 to 65535")),
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
/// characters and may not shadow the WHEP routes. Names in the config are checked at
/// load; names a [`PathPattern`] matches, when asked for.
pub fn check_path_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a path name cannot be empty".into());
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
            "whep" | "whip" | "publish" => {
                return Err(format!(
                    "'{segment}' cannot be part of a path name: it names an endpoint \
                         or page (/<path>/{segment})"
                ));
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

/// The keys of a YAML path as serde_ignored reports it (a list index as a number).
fn yaml_path(path: &serde_ignored::Path) -> Vec<String> {
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
    let mut out = Vec::new();
    keys(path, &mut out);
    out
}

/// A key that no field took and that is not MediaMTX's for something relay does not
/// run: a misspelling, or a key at the wrong level.
fn unknown_key(keys: &[String]) -> Problem {
    Problem {
        key: keys.join("."),
        message: "unknown key: check its spelling and level against relay.yml (or \
                  MediaMTX's mediamtx.yml); remove it"
            .into(),
    }
}

/// A value that may be written empty (null), as MediaMTX's file writes "none".
fn null_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
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

/// [`yes_no`] for a key a path may leave to pathDefaults.
fn yes_no_option<'de, D: Deserializer<'de>>(de: D) -> Result<Option<bool>, D::Error> {
    yes_no(de).map(Some)
}

/// `paths:` entries may be empty (`cam1:` with nothing under it): all defaults; so may
/// `paths:` itself.
fn paths<'de, D: Deserializer<'de>>(de: D) -> Result<BTreeMap<String, RawPath>, D::Error> {
    let paths: BTreeMap<String, Option<RawPath>> = null_default(de)?;
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
        assert_eq!(config_fields.len(), 61);
        assert_eq!(
            path_fields,
            [
                "source",
                "rtpSDP",
                "maxReaders",
                "rtspTransport",
                "sourceOnDemand",
                "sourceOnDemandStartTimeout",
                "sourceOnDemandCloseAfter",
                "overridePublisher",
                "sourceFingerprint",
                "runOnInit",
                "runOnInitRestart",
                "runOnAvailable",
                "runOnReady",
                "runOnAvailableRestart",
                "runOnReadyRestart",
                "runOnNotReady",
                "runOnUnavailable",
                "runOnRead",
                "runOnReadRestart",
                "runOnUnread",
                "runOnDemand",
                "runOnDemandRestart",
                "runOnDemandStartTimeout",
                "runOnDemandCloseAfter",
                "runOnUnDemand"
            ]
        );
        for key in config_fields {
            assert!(top.contains(key), "relay.yml does not document {key}");
        }
        // MediaMTX's newer names of the ready hooks, read as aliases (relay.yml's
        // comments name them).
        let aliases = [
            "runOnAvailable",
            "runOnAvailableRestart",
            "runOnUnavailable",
        ];
        for key in path_fields.iter().filter(|k| !aliases.contains(k)) {
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
        let text = "webrtcAdress: ':1'\n\
                    rtsp: yes\n\
                    pathDefaults:\n  record: yes\n\
                    paths:\n  cam1:\n    source: demo\n    sourceRedirect: x\n    colour: red\n";
        let e = refused(text);
        assert!(e.contains("2 problems"), "{e}");
        assert!(
            e.contains("webrtcAdress: unknown key: check its spelling"),
            "{e}"
        );
        assert!(e.contains("paths.cam1.colour: unknown key"), "{e}");
        // MediaMTX's keys of what relay does not run are no problem: they are noted.
        let fixed = text
            .replace("webrtcAdress", "webrtcAddress")
            .replace("    colour: red\n", "");
        let (_, not_run) = Config::read(Some(&fixed), &Overrides::default()).unwrap();
        let warning = not_run.to_string();
        for noted in [
            "RTSP server (rtsp)",
            "recording (pathDefaults.record)",
            "paths.cam1.sourceRedirect",
        ] {
            assert!(warning.contains(noted), "{noted} not in: {warning}");
        }
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
            ("cam/whip", "'whip' cannot be part of a path name"),
            ("cam/publish", "'publish' cannot be part of a path name"),
            ("whep", "'whep' cannot be part of a path name"),
            ("'cam 1'", "' ' is not allowed"),
            ("'cam?x'", "'?' is not allowed"),
            ("'~^cam('", "not a regular expression"),
        ] {
            let e = refused(&format!("paths:\n  {name}:\n    source: demo\n"));
            assert!(e.contains(why), "{name}: {e}");
            assert!(e.contains("paths."), "{name}: {e}");
        }
        Config::from_yaml("paths:\n  cams/front-1.hd_~x:\n    source: demo\n").unwrap();
    }

    /// The key of the first pattern that matches `name`, and the config it makes.
    fn made(config: &Config, name: &str) -> Option<(String, PathConfig)> {
        config.path_patterns.iter().find_map(|p| {
            let made = p.config_for(name)?.expect("a source relay reads");
            Some((p.key.clone(), made))
        })
    }

    #[test]
    fn patterns_are_tried_by_key_and_all_others_last_as_mediamtx_does() {
        // Written out of order: MediaMTX sorts them (FindPathConf), the file's order
        // does not count.
        let config = Config::from_yaml(
            "paths:\n  all_others:\n  '~^cam(\\d+)$':\n    maxReaders: 2\n  '~^cam':\n  \
             cam1:\n    source: demo\n  '~^b':\n",
        )
        .unwrap();
        let keys: Vec<&str> = config
            .path_patterns
            .iter()
            .map(|p| p.key.as_str())
            .collect();
        assert_eq!(keys, ["~^b", "~^cam", "~^cam(\\d+)$", "all_others"]);
        assert_eq!(config.paths.keys().collect::<Vec<_>>(), ["cam1"]);
        // `~^cam` sorts before `~^cam(\d+)$` and matches first.
        assert_eq!(made(&config, "cam7").unwrap().0, "~^cam");
        assert_eq!(made(&config, "bcam7").unwrap().0, "~^b");
        let (key, other) = made(&config, "x/y").unwrap();
        assert_eq!(key, "all_others");
        assert_eq!(other.source, Source::Publisher, "MediaMTX's default source");
        assert!(other.override_publisher);
        // `all` is all_others' older name; both go last, by name.
        let config = Config::from_yaml("paths:\n  all:\n  '~^z':\n").unwrap();
        let keys: Vec<&str> = config
            .path_patterns
            .iter()
            .map(|p| p.key.as_str())
            .collect();
        assert_eq!(keys, ["~^z", "all"]);
        // The end of MediaMTX's own mediamtx.yml.
        let config = Config::from_yaml("paths:\n  all_others:\n").unwrap();
        assert_eq!(config.path_patterns.len(), 1);
        assert!(config.paths.is_empty());
    }

    #[test]
    fn capture_groups_fill_a_patterns_rtsp_source() {
        let config = Config::from_yaml(
            "pathDefaults:\n  maxReaders: 3\n  rtspTransport: tcp\n\
             paths:\n  '~^cam(\\d+)/(main|sub)$':\n    \
             source: rtsp://admin:pw@10.0.0.$G1:8554/$G2\n    sourceOnDemand: yes\n  \
             '~^port(\\d+)(x)?$':\n    source: rtsp://nvr.local:$G1/ch$G2\n    \
             sourceOnDemand: yes\n",
        )
        .unwrap();
        let (_, cam) = made(&config, "cam12/sub").unwrap();
        assert_eq!(cam.source.to_string(), "rtsp://admin:pw@10.0.0.12:8554/sub");
        assert_eq!(cam.max_readers, 3, "pathDefaults apply to made paths");
        assert_eq!(cam.rtsp_transport, RtspTransport::Tcp);
        assert!(cam.on_demand.is_some());
        assert!(made(&config, "cam12/hd").is_none(), "the regex must match");
        // A group that took part in no match is empty (as Go's FindStringSubmatch).
        let (_, port) = made(&config, "port8554").unwrap();
        assert_eq!(port.source.to_string(), "rtsp://nvr.local:8554/ch");
        // $G1 does not eat the start of $G10.
        let groups = ["", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
        let filled = fill_groups("$G10-$G1-$G11", |i| groups[i], groups.len());
        assert_eq!(filled, "j-a-a1");
        round_trip(&config);
    }

    #[test]
    fn patterns_take_a_publisher_or_an_on_demand_camera() {
        let e = refused("paths:\n  '~^cam(':\n");
        assert!(
            e.contains("paths.~^cam(: not a regular expression: regex parse error"),
            "{e}"
        );
        let e = refused("paths:\n  all_others:\n    source: demo\n");
        assert!(
            e.contains(
                "paths.all_others.source: a path with a regular expression (or \
                 all_others) takes 'publisher' or an rtsp:// source, not 'demo'"
            ),
            "{e}"
        );
        let e = refused("paths:\n  '~^c(\\d)$':\n    source: rtsp://cam$G1.local/x\n");
        assert!(
            e.contains("paths.~^c(\\d)$.sourceOnDemand: a path with a regular expression"),
            "{e}"
        );
        let e = refused(
            "paths:\n  '~^c(\\d)$':\n    source: rtsp://cam.local:$G1$G1x/\n    \
             sourceOnDemand: yes\n",
        );
        assert!(
            e.contains("paths.~^c(\\d)$.source: relay cannot read"),
            "{e}"
        );
    }

    #[test]
    fn a_path_may_be_named_metrics_they_have_a_listener_of_their_own() {
        Config::from_yaml("metrics: yes\npaths:\n  metrics:\n    source: demo\n").unwrap();
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

        let e = refused("paths:\n  cam:\n    source: rtsps://cam.local/stream\n");
        assert!(
            e.contains("paths.cam.source: relay cannot read 'rtsps://cam.local/stream'"),
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
    fn rtsp_sources_take_mediamtx_keys_and_defaults() {
        let config = Config::from_yaml(
            "pathDefaults:\n  rtspTransport: tcp\n  sourceOnDemandCloseAfter: 3s\n\
             paths:\n\
             \x20 a:\n    source: rtsp://admin:pw@cam.local:8554/main\n\
             \x20 b:\n    source: rtsp://cam.local/sub\n    rtspTransport: automatic\n\
             \x20   sourceOnDemand: yes\n\
             \x20 demo:\n    source: demo\n",
        )
        .unwrap();
        let a = &config.paths["a"];
        assert_eq!(a.rtsp_transport, RtspTransport::Tcp, "inherited");
        assert_eq!(a.on_demand, None, "MediaMTX's default: always on");
        assert_eq!(a.source.to_string(), "rtsp://admin:pw@cam.local:8554/main");
        let b = &config.paths["b"];
        assert_eq!(b.rtsp_transport, RtspTransport::Automatic);
        assert_eq!(
            b.on_demand,
            Some(OnDemand {
                start_timeout: Duration::from_secs(10),
                close_after: Duration::from_secs(3),
            })
        );
        round_trip(&config);

        let e = refused("paths:\n  d:\n    source: demo\n    sourceOnDemand: yes\n");
        assert!(
            e.contains("paths.d.sourceOnDemand: only rtsp:// sources can start on demand"),
            "{e}"
        );
        // Inherited by a path that cannot use it: that path simply runs.
        Config::from_yaml("pathDefaults:\n  sourceOnDemand: yes\npaths:\n  d:\n    source: demo\n")
            .unwrap();
        let e = refused(
            "paths:\n  c:\n    source: rtsp://cam/x\n    sourceOnDemand: yes\n\
             \x20   sourceOnDemandStartTimeout: 0s\n",
        );
        assert!(
            e.contains("paths.c.sourceOnDemandStartTimeout: must be more than 0s"),
            "{e}"
        );
        let e = refused("paths:\n  c:\n    source: rtsp://cam/x\n    rtspTransport: multicast\n");
        assert!(
            e.contains("rtspTransport") && e.contains("multicast"),
            "{e}"
        );
        let e = refused("paths:\n  c:\n    source: rtsp://\n");
        assert!(
            e.contains("paths.c.source: relay cannot read 'rtsp://': no host"),
            "{e}"
        );
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("relay-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("relay.yml");
        std::fs::write(&file, "paths:\n  cam1:\n    source: demo\n").unwrap();
        assert_eq!(Config::load(&file).unwrap().paths.len(), 1);
        std::fs::write(&file, "rtmpp: yes\n").unwrap();
        let e = format!("{:#}", Config::load(&file).unwrap_err());
        assert!(
            e.contains(&file.display().to_string()) && e.contains("rtmpp: unknown key"),
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
    fn a_path_without_source_waits_for_a_publisher_who_may_take_over_as_mediamtx_does() {
        let config = Config::from_yaml("paths:\n  cam1:\n    maxReaders: 3\n").unwrap();
        assert_eq!(config.paths["cam1"].source, Source::Publisher);
        assert!(
            config.paths["cam1"].override_publisher,
            "MediaMTX's default"
        );
        // An empty value is MediaMTX's "not set" too.
        let config = Config::from_yaml(
            "pathDefaults:\n  source: ''\n  overridePublisher: no\npaths:\n  cam1:\n    source:\n  \
             cam2:\n    source: publisher\n    overridePublisher: yes\n",
        )
        .unwrap();
        assert_eq!(config.paths["cam1"].source, Source::Publisher);
        assert!(
            !config.paths["cam1"].override_publisher,
            "from pathDefaults"
        );
        assert!(config.paths["cam2"].override_publisher);
        assert_eq!(config.keyframe_request_interval, Duration::from_secs(1));
        let e = refused("keyframeRequestInterval: 0s\n");
        assert!(
            e.contains("keyframeRequestInterval: must be more than 0s"),
            "{e}"
        );
        assert_eq!(config.rtcp_sender_report_interval, Duration::from_secs(1));
        let e = refused("rtcpSenderReportInterval: 0s\n");
        assert!(
            e.contains("rtcpSenderReportInterval: must be more than 0s"),
            "{e}"
        );
        let config = Config::from_yaml("rtcpSenderReportInterval: 500ms\n").unwrap();
        assert_eq!(
            config.rtcp_sender_report_interval,
            Duration::from_millis(500)
        );
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
        let h265 = SDP.replace("H264", "MP4V-ES");
        let e = refused(&format!(
            "paths:\n  cam7:\n    source: udp+rtp://127.0.0.1:5004\n    rtpSDP: {h265:?}\n"
        ));
        assert!(
            e.contains("paths.cam7.rtpSDP: unsupported codec MP4V-ES/90000"),
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
        let e = refused("metrics: yes\nwebrtcAddress: 127.0.0.1:9000\nmetricsAddress: ':9000'\n");
        assert!(
            e.contains("metricsAddress: 0.0.0.0:9000 takes the port webrtcAddress"),
            "{e}"
        );
        let e =
            refused("metrics: yes\napi: yes\npprof: yes\napiAddress: :9998\npprofAddress: :9998\n");
        assert!(
            e.contains("pprofAddress: 0.0.0.0:9998 takes the port metricsAddress")
                && e.contains("apiAddress: 0.0.0.0:9998 takes the port metricsAddress"),
            "{e}"
        );
        // Different addresses, port 0 (the kernel picks), metrics off: no overlap.
        Config::from_yaml(&format!(
            "webrtcLocalUDPAddress: 127.0.0.1:0\npaths:\n{}{}",
            rtp("a", "127.0.0.1:5004"),
            rtp("b", "127.0.0.2:5004")
        ))
        .unwrap();
        Config::from_yaml(
            "metrics: yes\nwebrtcAddress: 127.0.0.1:0\nmetricsAddress: 127.0.0.1:0\n",
        )
        .unwrap();
        Config::from_yaml("webrtcAddress: :9000\nmetricsAddress: :9000\napiAddress: :9000\n")
            .unwrap();
    }

    #[test]
    fn the_api_is_off_by_default_and_refuses_what_relay_cannot_honour() {
        let config = Config::default();
        assert!(!config.api, "MediaMTX's default");
        assert_eq!(config.api_address, "0.0.0.0:9997".parse().unwrap());
        assert_eq!(config.api_allow_origins, ["*"]);
        // Off, its address takes no one's port.
        Config::from_yaml("webrtcAddress: :9997\n").unwrap();
        let e = refused("api: yes\nwebrtcAddress: :9997\n");
        assert!(
            e.contains("apiAddress: 0.0.0.0:9997 takes the port webrtcAddress"),
            "{e}"
        );
        let e = refused(
            "apiEncryption: yes\napiTrustedProxies: [10.0.0.1]\napiAllowOrigins: [example.com]\n\
             apiAddress: '9997'\n",
        );
        for key in [
            "apiEncryption:",
            "apiTrustedProxies:",
            "apiAllowOrigins: 'example.com' is not an origin",
            "apiAddress: '9997' is not a listen address",
        ] {
            assert!(e.contains(key), "{key} not in:\n{e}");
        }
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
    fn additional_hosts_may_name_their_port() {
        for (entry, want) in [
            ("relay.example", ("relay.example", None)),
            ("192.0.2.7", ("192.0.2.7", None)),
            ("fd00::7", ("fd00::7", None)),
            ("192.0.2.7:9000", ("192.0.2.7", Some(9000))),
            ("relay.example:9000", ("relay.example", Some(9000))),
            ("[fd00::7]:9000", ("fd00::7", Some(9000))),
        ] {
            assert_eq!(additional_host(entry), Ok(want), "{entry}");
        }
        for bad in [
            "relay:0",
            "relay:",
            "relay:x",
            ":9000",
            "[fd00::7]",
            "[fd00::7]:70000",
        ] {
            assert!(additional_host(bad).is_err(), "{bad}");
        }
        let e = refused("webrtcAdditionalHosts: ['relay:0']\n");
        assert!(
            e.contains("webrtcAdditionalHosts: 'relay:0': the port after ':' must be 1 to 65535"),
            "{e}"
        );
    }

    #[test]
    fn typed_values() {
        let config = Config::default();
        assert_eq!(config.webrtc_address, "0.0.0.0:8889".parse().unwrap());
        assert!(!config.metrics, "MediaMTX's default");
        assert_eq!(config.metrics_address, "0.0.0.0:9998".parse().unwrap());
        assert_eq!(config.xdp_stun_rate.get(), 50);
        assert_eq!(config.xdp_stun_global_rate.get(), 2000);
        let config = Config::from_yaml("metricsAddress: 127.0.0.1:9999\n").unwrap();
        assert_eq!(config.metrics_address, "127.0.0.1:9999".parse().unwrap());
        let e = refused("xdpSTUNRate: 0\nxdpSTUNBurst: 0\nxdpSTUNGlobalRate: 0\n");
        assert!(
            e.contains("xdpSTUNRate: must be at least 1")
                && e.contains("xdpSTUNBurst: must be at least 1")
                && e.contains("xdpSTUNGlobalRate: must be at least 1"),
            "{e}"
        );
    }

    #[test]
    fn mediamtx_yml_of_the_current_release_loads_and_names_what_relay_does_not_run() {
        let text = include_str!("../tests/fixtures/mediamtx/mediamtx.yml");
        let (config, not_run) =
            Config::read(Some(text), &Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.auth, AuthConfig::mediamtx_default());
        assert!(!config.metrics, "MediaMTX's metrics: false");
        assert_eq!(config.webrtc_address.port(), 8889);
        let warning = not_run.to_string();
        for feature in [
            "RTSP server (18 keys)",
            "RTMP server",
            "HLS server",
            "SRT server",
            "MoQ server",
            "playback server",
            "control API over TLS",
            "recording",
            "hooks",
            "Raspberry Pi cameras",
            "log files",
        ] {
            assert!(warning.contains(feature), "{feature} not in: {warning}");
        }
        // One line, each feature once.
        assert!(!warning.contains('\n'));
        assert_eq!(warning.matches("RTSP server").count(), 1);
    }

    #[test]
    fn a_misspelt_key_is_still_refused_by_name() {
        let message = refused("webrtcAdress: :8889\npaths:\n  cam:\n    rtspAddress: :8554\n");
        assert!(message.contains("webrtcAdress: unknown key"), "{message}");
        // A server's key under a path is at the wrong level, not a feature not run.
        assert!(
            message.contains("paths.cam.rtspAddress: unknown key"),
            "{message}"
        );
    }

    #[test]
    fn values_that_would_change_who_may_do_what_are_refused_not_ignored() {
        let message = refused(
            "webrtc: no\n\
             webrtcEncryption: yes\n\
             metricsEncryption: yes\n\
             webrtcTrustedProxies: [10.0.0.1]\n\
             authHTTPFingerprint: 33949e05fffb5ff3e8aa16f8213a6251b4d9363804ba53233c4da9a46d6f2739\n\
             authJWTInHTTPQuery: yes\n\
             paths:\n  cam:\n    sourceFingerprint: abc\n",
        );
        for key in [
            "webrtc:",
            "webrtcEncryption:",
            "metricsEncryption:",
            "webrtcTrustedProxies:",
            "authHTTPFingerprint:",
            "authJWTInHTTPQuery:",
            "paths.cam.sourceFingerprint:",
        ] {
            assert!(message.contains(key), "{key} not in:\n{message}");
        }
        // Their defaults, as MediaMTX writes them, load.
        Config::from_yaml(
            "webrtc: true\nwebrtcEncryption: false\nwebrtcTrustedProxies: []\n\
             authHTTPFingerprint:\nauthJWTInHTTPQuery: false\n",
        )
        .unwrap();
    }

    #[test]
    fn auth_keys_are_checked_where_written() {
        let message = refused(
            "authInternalUsers:\n\
             - user: admin\n  pass: 'argon2:$argon2id$broken'\n  ips: [10.0.0.0/33, 192.0.2.1]\n\
             \x20 permissions:\n  - action: read\n    path: '~('\n\
             - user: ''\n  permissions: []\n",
        );
        for key in [
            "authInternalUsers.0.pass:",
            "authInternalUsers.0.ips.0:",
            "authInternalUsers.0.permissions.0.path:",
            "authInternalUsers.1.user:",
        ] {
            assert!(message.contains(key), "{key} not in:\n{message}");
        }
        assert!(
            !message.contains("ips.1"),
            "192.0.2.1 is an address: {message}"
        );
        assert!(refused("authMethod: http\n").contains("authHTTPAddress: is needed"));
        assert!(refused("authMethod: jwt\nauthJWTJWKS: ftp://x\n").contains("authJWTJWKS:"));
        assert!(refused("authMethod: ldap\n").contains("authMethod"));
        assert!(
            refused("authInternalUsers:\n- user: a\n  permissions:\n  - action: fly\n")
                .contains("fly")
        );
    }

    #[test]
    fn every_auth_method_writes_back() {
        use crate::auth::{Action, PathRule, Permission, Secret, User};
        let read_cams = vec![Permission {
            action: Action::Read,
            path: PathRule::parse("~^cams/").unwrap(),
        }];
        for auth in [
            AuthConfig::Internal(vec![User {
                user: Some(Secret::parse("admin").unwrap()),
                pass: Secret::parse("sha256:rl3rgi4NcZkpAEcacZnQ2VuOfJ0FxAqCRaKB/SwdZoQ=").unwrap(),
                ips: vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
                permissions: read_cams.clone(),
            }]),
            AuthConfig::Http {
                address: "http://127.0.0.1:9120/auth".into(),
                exclude: read_cams.clone(),
            },
            AuthConfig::Jwt {
                jwks: "https://id.example/jwks.json".into(),
                claim_key: "perms".into(),
                issuer: Some("https://id.example".into()),
                audience: None,
                exclude: read_cams.clone(),
            },
        ] {
            round_trip(&Config {
                auth,
                ..Config::default()
            });
        }
    }

    /// Found by the `config_yaml` fuzz target: `pathDefaults:` (or `apiAllowOrigins:`) with
    /// every entry commented out, as in a trimmed mediamtx.yml, loaded, but the API's
    /// document of it, written as `pathDefaults: null`, did not, so every config change
    /// through the API failed.
    #[test]
    fn empty_sections_load_written_empty_or_null() {
        let loaded = Config::load_text(
            "pathDefaults:\n  # maxReaders: 3\npaths:\n".into(),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(loaded.config, Config::default());
        let (checked, _) = loaded.document.check(&Overrides::default()).unwrap();
        assert_eq!(checked, loaded.config);
        let null = Config::from_yaml("pathDefaults: null\npaths: ~\n").unwrap();
        assert_eq!(null, Config::default());
        // And lists, which an empty value makes empty.
        for key in [
            "webrtcIPsFromInterfacesList",
            "webrtcAdditionalHosts",
            "webrtcAllowOrigins",
            "apiAllowOrigins",
        ] {
            let empty = Config::from_yaml(&format!("{key}:\n")).unwrap();
            assert_eq!(Config::from_yaml(&format!("{key}: null\n")).unwrap(), empty);
        }
    }

    /// Found by the `config_yaml` fuzz target: an empty tagged value (`source: !x`) read
    /// as "" into the config but as null into the API's document, which then did not load.
    #[test]
    fn yaml_tags_are_refused() {
        let text = "paths:\n  '~^live/(.+)$':\n    source: !publisher\n";
        let e = Config::load_text(text.into(), &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("YAML tags"), "{e}");
        // A `!!` tag (with an anchor) on an empty value: the document read did not see
        // it, the typed read did (also found by the fuzzer).
        let text = "paths:\n  !!!!!!!!! &s";
        let e = Config::load_text(text.into(), &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("YAML tags"), "{e}");
    }

    /// An empty file (or only comments) is the defaults, and the API's document of it
    /// checks to the same config: the agreement `load_text` now requires.
    #[test]
    fn an_empty_file_loads_as_the_defaults() {
        for text in ["", "# nothing\n"] {
            let loaded = Config::load_text(text.into(), &Overrides::default()).unwrap();
            assert_eq!(loaded.config, Config::default());
        }
    }

    /// Found by the `config_yaml` fuzz target: path names that YAML reads as numbers
    /// (`01`, `.5`) were renamed by the API's document (`1`, `0.5`).
    #[test]
    fn the_documents_path_names_are_the_files() {
        let text = "paths:\n  01:\n    source: demo\n  .5:\n  cam:\n";
        let loaded = Config::load_text(text.into(), &Overrides::default()).unwrap();
        let (checked, _) = loaded.document.check(&Overrides::default()).unwrap();
        assert_eq!(checked, loaded.config);
        let names: Vec<&String> = checked.paths.keys().collect();
        assert_eq!(names, [".5", "01", "cam"]);
    }

    /// Writes `config` and reads it back: the same config, and MediaMTX's spellings.
    fn round_trip(config: &Config) -> String {
        let yaml = config.to_yaml();
        let back = Config::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(&back, config, "{yaml}");
        yaml
    }

    #[test]
    fn path_defaults_hold_every_key_the_files_else_relays() {
        let config = Config::from_yaml(
            "pathDefaults:\n  maxReaders: 3\n  runOnInit: echo init\n  sourceOnDemandCloseAfter: 1m\n\
             paths:\n  a:\n    source: demo\n    runOnInit: ''\n  b:\n",
        )
        .unwrap();
        let Ok(serde_json::Value::Object(written)) = serde_json::to_value(&config.path_defaults.0)
        else {
            unreachable!("a path is a map")
        };
        // Every key of a path but the aliases and the one only read to be refused.
        let mut keys: Vec<&str> = written.keys().map(String::as_str).collect();
        let mut every: Vec<&str> = field_names::<RawPath>()
            .iter()
            .copied()
            .filter(|k| !k.starts_with("runOnAvailable") && *k != "runOnUnavailable")
            .filter(|k| *k != "sourceFingerprint")
            .collect();
        keys.sort_unstable();
        every.sort_unstable();
        assert_eq!(keys, every);
        assert_eq!(written["maxReaders"], 3);
        assert_eq!(written["runOnInit"], "echo init");
        assert_eq!(written["sourceOnDemandCloseAfter"], "1m");
        assert_eq!(written["source"], "publisher");
        assert_eq!(written["runOnInitRestart"], false);
        assert_eq!(written["rtpSDP"], "");
        // Written back whole, a path that turned a default hook off keeps it off.
        assert_eq!(config.paths["a"].hooks.on_init, None);
        assert!(config.paths["b"].hooks.on_init.is_some());
        round_trip(&config);
        assert_eq!(
            Config::default().path_defaults,
            PathDefaults(RawPath::defaults())
        );
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
             httpMaxConnectionsPerIP: 0\n\
             httpMaxConnections: 100\n\
             webrtcAddress: 127.0.0.1:9889\n\
             webrtcLocalUDPAddress: '[::1]:9189'\n\
             webrtcIPsFromInterfaces: no\n\
             webrtcIPsFromInterfacesList: [eth0, eth1]\n\
             webrtcAdditionalHosts: [relay.example, 192.0.2.7]\n\
             webrtcAllowOrigins: ['https://a.example', 'http://b.example:8080']\n\
             webrtcHandshakeTimeout: 1500ms\n\
             webrtcAllowLegacySrtp: no\n\
             webrtcMaxPendingSessionsPerIP: 0\n\
             webrtcMaxPendingSessions: 500\n\
             udpMaxPayloadSize: 1200\n\
             udpReadBufferSize: 8388608\n\
             metrics: yes\n\
             metricsAddress: 127.0.0.1:9998\n\
             api: yes\n\
             apiAddress: 127.0.0.1:9997\n\
             apiAllowOrigins: ['https://console.example']\n\
             workers: 3\n\
             xdpInterface: eth0\n\
             xdpMode: generic\n\
             xdpBusyPoll: yes\n\
             xdpSTUNRate: 7\n\
             xdpSTUNBurst: 9\n\
             xdpSTUNGlobalRate: 300\n\
             xdpSTUNGlobalBurst: 600\n\
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
            "xdpSTUNGlobalBurst: 600",
            "webrtcHandshakeTimeout: 1s 500ms",
            "webrtcMaxPendingSessionsPerIP: 0",
            "webrtcMaxPendingSessions: 500",
            "httpMaxConnectionsPerIP: 0",
            "httpMaxConnections: 100",
        ] {
            assert!(yaml.contains(line), "{line} not in:\n{yaml}");
        }
    }
}
