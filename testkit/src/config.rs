//! Configs for the relay under test: [`Config`] values, written as the YAML the relay
//! loads by serde, so that every key is spelled as the relay reads it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use relay::config::{Config, PathConfig};
use relay::ingest::rtsp::RtspTransport;
use relay::ingest::Source;

use crate::tempdir::TempDir;

/// 127.0.0.1 with a port the kernel picks: for `metricsAddress`, so that relays run
/// side by side (the relay prints where it listens). Scraped from this host, or from
/// inside a test's namespace (its `lo` is up), MediaMTX's default users allow it.
pub const LOOPBACK_ANY_PORT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// Everything on 127.0.0.1 with ports the kernel picks, no interface addresses
/// advertised, `workers` data-plane workers, metrics on and no paths yet: a relay that
/// only this host reaches, and that runs beside any other.
pub fn loopback(workers: usize) -> Config {
    Config {
        webrtc_address: "127.0.0.1:0".parse().unwrap(),
        webrtc_local_udp_address: "127.0.0.1:0".parse().unwrap(),
        webrtc_ips_from_interfaces: false,
        metrics: true,
        metrics_address: LOOPBACK_ANY_PORT,
        workers,
        ..Config::default()
    }
}

/// A path that plays the built-in demo clip.
pub fn demo() -> PathConfig {
    PathConfig::new(Source::Demo)
}

/// A path that waits for a WHIP publisher; `override_publisher` lets a second one
/// replace the first (else it gets 409).
pub fn publisher(override_publisher: bool) -> PathConfig {
    PathConfig {
        override_publisher,
        ..PathConfig::new(Source::Publisher)
    }
}

/// A path fed by RTP pushed to `address`, whose payload formats `sdp` describes.
pub fn rtp_push(address: SocketAddr, sdp: &str) -> PathConfig {
    PathConfig::new(
        Source::parse(&format!("udp+rtp://{address}"), Some(sdp))
            .expect("an RTP push source the relay takes"),
    )
}

/// A path pulling `url` (rtsp://) over `transport`.
pub fn rtsp_pull(url: &str, transport: RtspTransport) -> PathConfig {
    PathConfig {
        rtsp_transport: transport,
        ..PathConfig::new(Source::parse(url, None).expect("an rtsp:// source the relay takes"))
    }
}

/// A config's `paths` from (name, path) pairs.
pub fn paths<'a>(
    entries: impl IntoIterator<Item = (&'a str, PathConfig)>,
) -> BTreeMap<String, PathConfig> {
    entries
        .into_iter()
        .map(|(name, path)| (name.to_string(), path))
        .collect()
}

/// The YAML text of `config`, as the relay's config file.
pub fn to_yaml(config: &Config) -> String {
    config.to_yaml()
}

/// What the relay's own loader makes of `config` written by [`to_yaml`], checks
/// included: for tests of the configs tools build.
pub fn reloaded(config: &Config) -> anyhow::Result<Config> {
    let dir = TempDir::new("config");
    let file = dir.path().join("relay.yml");
    std::fs::write(&file, to_yaml(config))?;
    Config::load(&file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(config: &Config) -> Config {
        reloaded(config).unwrap()
    }

    #[test]
    fn the_relay_loads_what_to_yaml_writes() {
        assert_eq!(loaded(&Config::default()), Config::default());
        let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
        let config = Config {
            log_level: relay::config::LogLevel::Warn,
            xdp_mode: relay::config::XdpMode::Generic,
            read_timeout: std::time::Duration::from_millis(500),
            paths: paths([
                ("demo", demo()),
                (
                    "cams/front",
                    rtp_push("127.0.0.1:5004".parse().unwrap(), sdp),
                ),
            ]),
            ..loopback(3)
        };
        assert_eq!(
            loaded(&config),
            config,
            "the SDP's CR LF and every key survive"
        );
    }

    /// The relay's own loader takes the loopback config, and it binds nothing but
    /// loopback.
    #[test]
    fn loopback_is_loopback_only() {
        let c = loaded(&loopback(3));
        assert_eq!(c.webrtc_address, "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.webrtc_local_udp_address, "127.0.0.1:0".parse().unwrap());
        assert!(!c.webrtc_ips_from_interfaces);
        assert!(c.metrics);
        assert_eq!(c.metrics_address, "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.workers, 3);
    }
}
