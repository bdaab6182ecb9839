//! The UDP backend (`relay::io::udp`) when the kernel cannot take more: a send that
//! would block is counted as dropped instead. Needs root (a network namespace of its
//! own, with a slow qdisc on its loopback), `ip` and `tc`; run as another user, it fails
//! saying so.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use relay::io::udp::{self, UdpOptions};
use relay::io::Sender;
use relay_testkit::netns::Netns;

/// Loopback frees a datagram's send-buffer charge as it transmits, so no reader,
/// however slow, ever fills a UDP sender's buffer there. A slow `tbf` qdisc holds the
/// packets like a saturated NIC queue would; it lives in a network namespace of this
/// test's own, so nothing else on the machine sees it.
#[test]
fn full_socket_buffer_drops_instead_of_blocking() {
    let netns = Netns::new("relay-udp", "tbf").unwrap();
    #[rustfmt::skip]
    netns.exec("tc", &[
        "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "8kbit", "burst", "1600",
        "limit", "10000000",
    ])
    .unwrap();
    const LEN: usize = 1200;
    let (stats, took) = netns.enter(|| {
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        // A reader that never reads.
        let (reader, _) = udp::bind(loopback, &UdpOptions::default()).unwrap();
        let opts = UdpOptions {
            send_buffer: 64 << 10,
            ..UdpOptions::default()
        };
        let (_, mut tx) = udp::bind(loopback, &opts).unwrap();
        let started = Instant::now();
        for batch in 0..20u8 {
            for i in 0..64 {
                let tag: u8 = batch ^ i;
                for (k, byte) in tx.buffer()[..LEN].iter_mut().enumerate() {
                    *byte = tag.wrapping_add(k as u8);
                }
                tx.commit(LEN, loopback, reader.local_addr());
            }
            tx.flush();
        }
        (tx.stats(), started.elapsed())
    });
    eprintln!("{stats:?} in {took:?}");
    assert_eq!(stats.sent + stats.dropped, 20 * 64);
    assert!(stats.sent > 0 && stats.sent < 300, "{stats:?}");
    assert!(stats.dropped > 900, "{stats:?}");
    assert!(
        took < Duration::from_millis(500),
        "flush blocked for {took:?}"
    );
}
