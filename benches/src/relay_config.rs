//! The relay's configs of the load tools, as typed values (the test kit writes them):
//! the demo clip at [`PATH`], or paths fed by `relay-bench publish`; everything on
//! loopback with kernel-chosen ports, or on the relay's address in the XDP tools'
//! namespace. The relay logs warnings only: its log is read when a run fails.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use relay::config::{Config, LogLevel, PathConfig};
use relay::ingest::rtsp::RtspTransport;
use relay_testkit::config::{demo, loopback, paths, rtp_push, rtsp_pull, LOOPBACK_ANY_PORT};

/// The path every viewer of the demo watches.
pub const PATH: &str = "demo";

/// The load tools' viewers come from one address (or a few): to the relay they look
/// like a large NAT, whose sessions may all be answered and not yet connected at once.
fn for_load(config: Config) -> Config {
    const PENDING: usize = 100_000;
    Config {
        webrtc_max_pending_sessions_per_ip: PENDING,
        webrtc_max_pending_sessions: PENDING,
        ..config
    }
}

/// The demo clip at `demo` on loopback, with `workers` workers.
pub fn demo_on_loopback(workers: usize) -> Config {
    Config {
        log_level: LogLevel::Warn,
        paths: paths([(PATH, demo())]),
        ..for_load(loopback(workers))
    }
}

/// One path per `(name, port, rtpSDP)` on loopback, fed by RTP pushed to
/// `udp+rtp://127.0.0.1:port` (what `relay-bench publish` sends).
pub fn rtp_push_on_loopback(workers: usize, streams: &[(&str, u16, String)]) -> Config {
    let pushed_to = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let streams = streams
        .iter()
        .map(|(name, port, sdp)| (*name, rtp_push(pushed_to(*port), sdp)));
    Config {
        log_level: LogLevel::Warn,
        paths: paths(streams),
        ..for_load(loopback(workers))
    }
}

/// One path per `(name, url)` on loopback, pulling the RTSP `url` over `transport`.
pub fn rtsp_pull_on_loopback(
    workers: usize,
    streams: &[(&str, String)],
    transport: RtspTransport,
) -> Config {
    let streams = streams
        .iter()
        .map(|(name, url)| (*name, rtsp_pull(url, transport)));
    Config {
        log_level: LogLevel::Warn,
        paths: paths(streams),
        ..for_load(loopback(workers))
    }
}

/// `source` at [`PATH`] in the XDP tools' relay namespace: HTTP on `ip` with a
/// kernel-chosen port, media on `ip:media_port`, metrics on the namespace's loopback;
/// with `xdp_interface`, XDP mode on it (one worker per RX queue), else portable mode
/// with `workers` UDP sockets.
pub fn on_veth(
    ip: IpAddr,
    media_port: u16,
    workers: usize,
    xdp_interface: Option<&str>,
    source: PathConfig,
) -> Config {
    Config {
        log_level: LogLevel::Warn,
        webrtc_address: SocketAddr::new(ip, 0),
        webrtc_local_udp_address: SocketAddr::new(ip, media_port),
        webrtc_ips_from_interfaces: false,
        metrics: true,
        metrics_address: LOOPBACK_ANY_PORT,
        workers,
        xdp_interface: xdp_interface.map(str::to_owned),
        paths: paths([(PATH, source)]),
        ..for_load(Config::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_testkit::config::reloaded;

    /// The relay's own loader takes the config, and it binds nothing but loopback.
    #[test]
    fn demo_on_loopback_is_loopback_only() {
        let c = reloaded(&demo_on_loopback(3)).unwrap();
        assert_eq!(c.webrtc_address, "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.webrtc_local_udp_address, "127.0.0.1:0".parse().unwrap());
        assert!(!c.webrtc_ips_from_interfaces);
        assert_eq!(c.workers, 3);
        assert!(c.paths.contains_key(PATH), "serves the demo path");
    }

    /// The relay's own loader takes the RTP push config: one path per port, its SDP intact.
    #[test]
    fn rtp_push_on_loopback_loads() {
        let sdp = crate::publish::sdp(96, 5004);
        let streams = [("cam0", 5004, sdp.clone()), ("cam1", 5006, sdp.clone())];
        let c = reloaded(&rtp_push_on_loopback(1, &streams)).unwrap();
        assert_eq!(c.webrtc_address, "127.0.0.1:0".parse().unwrap());
        for (name, port) in [("cam0", 5004), ("cam1", 5006)] {
            let source = &c.paths[name].source;
            assert_eq!(source.to_string(), format!("udp+rtp://127.0.0.1:{port}"));
            assert_eq!(source.rtp_sdp(), Some(sdp.as_str()));
        }
    }

    /// The relay's own loader takes the RTSP pull config: one path per URL, its
    /// transport kept.
    #[test]
    fn rtsp_pull_on_loopback_loads() {
        let streams = [
            ("cam0", "rtsp://127.0.0.1:8554/cam0".to_string()),
            ("cam1", "rtsp://127.0.0.1:8554/cam1".to_string()),
        ];
        for transport in [RtspTransport::Tcp, RtspTransport::Udp] {
            let c = reloaded(&rtsp_pull_on_loopback(1, &streams, transport)).unwrap();
            for (name, url) in &streams {
                assert_eq!(c.paths[*name].source.to_string(), *url);
                assert_eq!(c.paths[*name].rtsp_transport, transport);
            }
        }
    }

    /// The relay loads the namespace config, which puts HTTP and media on the given
    /// address and asks for XDP only when given an interface.
    #[test]
    fn on_veth_loads_in_both_modes() {
        let ip: IpAddr = "10.79.0.1".parse().unwrap();
        for xdp in [None, Some("rb-relay")] {
            let c = reloaded(&on_veth(ip, 8189, 2, xdp, demo())).unwrap();
            assert_eq!(c.webrtc_address, "10.79.0.1:0".parse().unwrap());
            assert_eq!(
                c.webrtc_local_udp_address,
                "10.79.0.1:8189".parse().unwrap()
            );
            assert_eq!(c.xdp_interface.as_deref(), xdp);
            assert!(c.metrics);
            assert_eq!(c.metrics_address, "127.0.0.1:0".parse().unwrap());
            assert_eq!(c.workers, 2);
            assert!(c.paths.contains_key(PATH), "serves the demo path");
        }
    }
}
