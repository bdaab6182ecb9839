//! Janus Gateway as the benchmarks run it: its streaming plugin fed the demo clip over
//! RTP on loopback, two viewers through `janus_viewer` on one sink driver, one of them
//! decrypting and checking what it gets. Skipped only where Debian's janus is absent.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay::ingest::demo::{Clip, DemoPlayer};
use relay_benches::janus::{self, JanusOptions, JanusProcess, JANUS};
use relay_benches::sink::{Driver, SinkCounters};
use relay_testkit::http::agent;

/// How long the clip is sent once both viewers are connected.
const SENDING: Duration = Duration::from_secs(3);

#[test]
fn janus_relays_rtp_to_two_viewers() {
    if !Path::new(JANUS).exists() {
        eprintln!("skipped: {JANUS} is absent (Debian's janus package: cargo xtask setup)");
        return;
    }
    // A UDP port free a moment ago for the mountpoint.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = JanusOptions {
        base_port: port,
        ..JanusOptions::default()
    };
    let janus = JanusProcess::start(&opts).unwrap();
    let pid = janus.pid();
    let agent = agent(Duration::from_secs(10));
    let driver = Driver::start(2, None).unwrap();
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    for verify in [false, true] {
        let (sink, _session) = janus::janus_viewer(&agent, &janus.http, 1, local, verify)
            .unwrap_or_else(|e| panic!("viewer: {e:#}\nJanus's log:\n{}", janus.log_tail()));
        driver.add(sink);
    }
    let sinks = &driver.counters.sinks;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sinks.iter().all(|s| s.connected.load(Ordering::Relaxed)) {
        assert!(
            Instant::now() < deadline,
            "viewers not connected in 10 s; Janus's log:\n{}",
            janus.log_tail()
        );
        assert!(!sinks.iter().any(|s| s.failed.load(Ordering::Relaxed)));
        std::thread::sleep(Duration::from_millis(20));
    }

    let sent = send_clip(opts.video_port(1), SENDING);
    assert!(sent > 100, "the clip is ~95 packets/s: {sent} sent");
    std::thread::sleep(Duration::from_millis(300));
    let rtp = |s: &SinkCounters| s.rtp.load(Ordering::Relaxed);
    for (i, s) in sinks.iter().enumerate() {
        // Janus forwards what it gets; a few packets may be lost on the way in.
        assert!(
            rtp(s) >= sent * 95 / 100 && rtp(s) <= sent,
            "viewer {i} got {} RTP packets of {sent}; Janus's log:\n{}",
            rtp(s),
            janus.log_tail()
        );
        assert!(!s.failed.load(Ordering::Relaxed), "viewer {i} failed");
    }
    let checked = &sinks[1];
    assert_eq!(checked.decrypted.load(Ordering::Relaxed), rtp(checked));
    assert_eq!(checked.gaps.load(Ordering::Relaxed), 0, "sequence gaps");
    assert_eq!(checked.malformed.load(Ordering::Relaxed), 0, "bad H264");
    assert_eq!(
        sinks[0].decrypted.load(Ordering::Relaxed),
        0,
        "a counting sink"
    );
    driver.stop();

    janus.stop();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "Janus (PID {pid}) is still there"
    );
}

/// Sends the demo clip as RTP (payload type 96) to 127.0.0.1:`port` at its frame rate
/// for `duration`; returns how many packets went out.
fn send_clip(port: u16, duration: Duration) -> u64 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let clip = Arc::new(Clip::demo(1200).unwrap());
    let start = Instant::now();
    let mut player = DemoPlayer::random(clip, start);
    let mut sent = 0;
    let mut datagram = Vec::with_capacity(1500);
    while start.elapsed() < duration {
        player.play(Instant::now(), &mut |p| {
            datagram.clear();
            datagram.extend_from_slice(&[0x80, if p.marker { 0x80 | 96 } else { 96 }]);
            datagram.extend_from_slice(&p.seq.to_be_bytes());
            datagram.extend_from_slice(&p.timestamp.to_be_bytes());
            datagram.extend_from_slice(&p.ssrc.to_be_bytes());
            datagram.extend_from_slice(p.payload);
            socket.send_to(&datagram, ("127.0.0.1", port)).unwrap();
            sent += 1;
        });
        std::thread::sleep(player.next_due().saturating_duration_since(Instant::now()));
    }
    sent
}
