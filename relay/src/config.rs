//! The config file: YAML with MediaMTX's key names where the meaning is the same,
//! so that a `mediamtx.yml` user recognises it. Every key has a default; `relay.yml`
//! at the repository root documents them all.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Config {
    /// error, warn, info or debug.
    pub log_level: LogLevel,
    /// One JSON object per log line instead of text.
    #[serde(deserialize_with = "yes_no")]
    pub log_structured: bool,

    /// HTTP listener: WHEP endpoints, player pages and (unless `metricsAddress` is set) metrics.
    pub webrtc_address: String,
    /// The one UDP port every WebRTC session uses (ICE-lite, DTLS, SRTP).
    #[serde(rename = "webrtcLocalUDPAddress")]
    pub webrtc_local_udp_address: String,
    /// Advertise the addresses of the host's interfaces as ICE candidates.
    #[serde(rename = "webrtcIPsFromInterfaces", deserialize_with = "yes_no")]
    pub webrtc_ips_from_interfaces: bool,
    /// Only these interfaces (empty: all).
    #[serde(rename = "webrtcIPsFromInterfacesList")]
    pub webrtc_ips_from_interfaces_list: Vec<String>,
    /// More IPs or host names to advertise (NAT, containers).
    pub webrtc_additional_hosts: Vec<String>,
    /// CORS origins allowed to call the WHEP endpoints.
    pub webrtc_allow_origins: Vec<String>,
    /// A session whose ICE and DTLS have not completed by then is dropped.
    #[serde(with = "humantime_serde")]
    pub webrtc_handshake_timeout: Duration,
    /// Accept the legacy SRTP profile AES_CM_128_HMAC_SHA1_80 (AES-GCM is always preferred).
    #[serde(deserialize_with = "yes_no")]
    pub webrtc_allow_legacy_srtp: bool,

    /// Largest UDP payload sent; RTP from the built-in demo is packetized to fit it.
    pub udp_max_payload_size: usize,
    /// SO_RCVBUF of the UDP sockets, 0: the system default.
    pub udp_read_buffer_size: usize,

    /// Serve Prometheus metrics at /metrics.
    #[serde(deserialize_with = "yes_no")]
    pub metrics: bool,
    /// Separate listener for metrics; empty: served on `webrtcAddress`.
    pub metrics_address: String,

    /// Data-plane workers, one per core; 0: as many as the machine has cores.
    /// With `xdpInterface`, one worker per RX queue of the interface instead.
    pub workers: usize,

    /// Steer the media port through XDP and AF_XDP on this interface (kernel bypass);
    /// empty: portable mode, UDP sockets.
    pub xdp_interface: String,
    /// `native` (in the driver) or `generic` (after the kernel built its socket buffer:
    /// works on any interface, saves little).
    pub xdp_mode: XdpMode,
    /// Spin on the AF_XDP rings instead of sleeping: lowest latency, a core per worker.
    #[serde(deserialize_with = "yes_no")]
    pub xdp_busy_poll: bool,
    /// STUN datagrams per second the XDP program lets through from one address that has
    /// no session yet (every viewer's first checks); more are dropped in the driver.
    #[serde(rename = "xdpSTUNRate")]
    pub xdp_stun_rate: u32,
    /// How many of those one address may send at once.
    #[serde(rename = "xdpSTUNBurst")]
    pub xdp_stun_burst: u32,

    /// How long an HTTP client has to send a request's header (from when it connects,
    /// or from its previous response on a kept-alive connection), and then an offer's
    /// body; the connection is closed past it. MediaMTX's key, for all its HTTP servers.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,

    /// Settings applied to every path unless the path sets them.
    pub path_defaults: PathConfig,
    #[serde(deserialize_with = "paths")]
    pub paths: BTreeMap<String, PathConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    Native,
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

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
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
            xdp_interface: String::new(),
            xdp_mode: XdpMode::Native,
            xdp_busy_poll: false,
            xdp_stun_rate: 50,
            xdp_stun_burst: 100,
            read_timeout: Duration::from_secs(10),
            // pathDefaults spells out every value; a path's own unset keys inherit them.
            path_defaults: PathConfig {
                max_readers: Some(0),
                ..PathConfig::default()
            },
            paths: BTreeMap::new(),
        }
    }
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
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        Config::from_yaml(&text).with_context(|| format!("config file {}", path.display()))
    }

    /// The configuration used when no file is given: the defaults and one path,
    /// `demo`, playing the built-in clip.
    pub fn demo() -> Config {
        let mut config = Config::default();
        let demo = PathConfig {
            source: Some("demo".into()),
            ..PathConfig::default()
        };
        config.paths.insert("demo".into(), demo);
        config
    }

    /// Path `name`'s settings with the unset ones taken from `pathDefaults`.
    pub fn path(&self, name: &str) -> Option<PathConfig> {
        let path = self.paths.get(name)?;
        let defaults = &self.path_defaults;
        Some(PathConfig {
            source: path.source.clone().or_else(|| defaults.source.clone()),
            rtp_sdp: path.rtp_sdp.clone().or_else(|| defaults.rtp_sdp.clone()),
            max_readers: path.max_readers.or(defaults.max_readers),
        })
    }

    fn from_yaml(text: &str) -> anyhow::Result<Config> {
        let mut problems = Vec::new();
        // An empty file (or one with only comments) is the defaults.
        let config = if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            Config::default()
        } else {
            let de = serde_yaml_ng::Deserializer::from_str(text);
            serde_ignored::deserialize(de, |path| problems.push(unknown_key(&path)))?
        };
        config.check(&mut problems);
        match problems.len() {
            0 => Ok(config),
            n => anyhow::bail!(
                "{n} problem{}:\n  {}",
                if n == 1 { "" } else { "s" },
                problems.join("\n  ")
            ),
        }
    }

    /// Checks the values that their types do not; each problem is "key: what to do".
    fn check(&self, problems: &mut Vec<String>) {
        let mut listen = |key: &str, value: &str| {
            if let Err(e) = parse_listen(value) {
                problems.push(format!("{key}: {e:#}"));
            }
        };
        listen("webrtcAddress", &self.webrtc_address);
        listen("webrtcLocalUDPAddress", &self.webrtc_local_udp_address);
        if !self.metrics_address.is_empty() {
            listen("metricsAddress", &self.metrics_address);
        }
        for origin in &self.webrtc_allow_origins {
            if let Err(e) = check_origin(origin) {
                problems.push(format!("webrtcAllowOrigins: {e}"));
            }
        }
        if self.xdp_stun_rate == 0 || self.xdp_stun_burst == 0 {
            problems.push(
                "xdpSTUNRate, xdpSTUNBurst: must be at least 1 (0 would refuse every new viewer)"
                    .into(),
            );
        }
        if self.webrtc_handshake_timeout.is_zero() {
            problems.push("webrtcHandshakeTimeout: must be more than 0s, e.g. 10s".into());
        }
        if self.read_timeout.is_zero() {
            problems.push("readTimeout: must be more than 0s, e.g. 10s".into());
        }
        if !(UDP_PAYLOAD_MIN..=UDP_PAYLOAD_MAX).contains(&self.udp_max_payload_size) {
            problems.push(format!(
                "udpMaxPayloadSize: {} is out of range: write {UDP_PAYLOAD_MIN} to {UDP_PAYLOAD_MAX} \
                 (a 576..1500-byte IP packet less the IPv4 or IPv6 and UDP headers)",
                self.udp_max_payload_size
            ));
        }
        check_path_config("pathDefaults", &self.path_defaults, problems);
        for (name, path) in &self.paths {
            if let Err(e) = check_path_name(name) {
                problems.push(format!("paths.{name}: {e}"));
            }
            check_path_config(&format!("paths.{name}"), path, problems);
        }
        if self.metrics && self.metrics_address.is_empty() && self.paths.contains_key("metrics") {
            problems.push(
                "paths.metrics: /metrics serves the metrics on webrtcAddress: \
                 rename the path or set metricsAddress"
                    .into(),
            );
        }
    }
}

/// Parses a listen address as MediaMTX writes them: `:8889` (every IPv4 interface),
/// `0.0.0.0:8889`, `127.0.0.1:8889` or `[::]:8889` (IPv6, and IPv4 unless the host
/// sets `bindv6only`).
pub fn parse_listen(address: &str) -> anyhow::Result<SocketAddr> {
    let parsed = match address.strip_prefix(':') {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .map(|port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))),
        None => address.parse().ok(),
    };
    parsed.with_context(|| {
        format!(
            "'{address}' is not a listen address: write ':PORT' (every interface), \
             'IP:PORT' or '[IPv6]:PORT', e.g. ':8889' or '127.0.0.1:8889'"
        )
    })
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

fn check_path_config(key: &str, path: &PathConfig, problems: &mut Vec<String>) {
    let Some(source) = &path.source else { return };
    let valid = match source.strip_prefix("udp+rtp://") {
        Some(address) => parse_listen(address).is_ok(),
        None => source == "demo",
    };
    if !valid {
        problems.push(format!(
            "{key}.source: relay cannot read '{source}': write 'demo' or 'udp+rtp://IP:PORT' \
             (MediaMTX's other sources, such as publisher or rtsp://, are not supported)"
        ));
    }
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
fn unknown_key(path: &serde_ignored::Path) -> String {
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
    keys(path, &mut path_keys);
    let last = path_keys.last().map(String::as_str).unwrap_or_default();
    let why = if MEDIAMTX_KEYS.contains(&last) {
        "a MediaMTX key relay does not support"
    } else {
        "not a relay key: check its spelling and level against relay.yml"
    };
    format!("{}: unknown key ({why}); remove it", path_keys.join("."))
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
fn paths<'de, D: Deserializer<'de>>(de: D) -> Result<BTreeMap<String, PathConfig>, D::Error> {
    let paths = BTreeMap::<String, Option<PathConfig>>::deserialize(de)?;
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
        let config_fields = field_names::<Config>();
        let path_fields = field_names::<PathConfig>();
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

    #[test]
    fn reads_mediamtx_key_names_and_yes_no() {
        let config = Config::from_yaml(
            "webrtcLocalUDPAddress: '[::]:8189'\n\
             webrtcIPsFromInterfaces: no\n\
             webrtcIPsFromInterfacesList: [eth0]\n\
             metrics: yes\n\
             logStructured: true\n\
             webrtcHandshakeTimeout: 1m30s\n\
             readTimeout: 2s\n\
             pathDefaults:\n  maxReaders: 5\n\
             paths:\n\
             \x20 cams/front:\n    source: udp+rtp://238.0.0.1:5004\n    rtpSDP: v=0\n\
             \x20 demo:\n    source: demo\n    maxReaders: 1\n\
             \x20 empty:\n",
        )
        .unwrap();
        assert_eq!(config.webrtc_local_udp_address, "[::]:8189");
        assert!(!config.webrtc_ips_from_interfaces);
        assert_eq!(config.webrtc_ips_from_interfaces_list, ["eth0"]);
        assert!(config.metrics && config.log_structured);
        assert_eq!(config.webrtc_handshake_timeout, Duration::from_secs(90));
        assert_eq!(config.read_timeout, Duration::from_secs(2));
        let front = config.path("cams/front").unwrap();
        assert_eq!(front.source.as_deref(), Some("udp+rtp://238.0.0.1:5004"));
        assert_eq!(front.rtp_sdp.as_deref(), Some("v=0"));
        assert_eq!(front.max_readers, Some(5), "inherited from pathDefaults");
        assert_eq!(config.path("demo").unwrap().max_readers, Some(1));
        assert_eq!(config.path("empty").unwrap().max_readers, Some(5));
        assert_eq!(config.path("nope"), None);
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
        let demo = Config::demo();
        assert_eq!(demo.paths.len(), 1);
        assert_eq!(demo.path("demo").unwrap().source.as_deref(), Some("demo"));
        let mut problems = Vec::new();
        demo.check(&mut problems);
        assert_eq!(problems, Vec::<String>::new());
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
        Config::from_yaml("metricsAddress: ':9998'\npaths:\n  metrics:\n").unwrap();
        Config::from_yaml("metrics: no\npaths:\n  metrics:\n").unwrap();
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
}
