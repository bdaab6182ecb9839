//! `relay-bench publish` end to end: two streams into two `udp+rtp://` paths of a real
//! relay process, counted by the relay; and the command itself, with the default clip,
//! into a UDP socket. Needs the relay binary next to relay-bench (`cargo build --release
//! -p relay`) and ffmpeg (`cargo xtask setup`) for the default clip.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use relay::ingest::rtp;
use relay_benches::publish::{sdp, ClipSource, PublishArgs, Publisher, Recording, DEFAULT_GOP};
use relay_benches::relay_config::rtp_push_on_loopback;
use relay_benches::stamp::Stamp;
use relay_testkit::metrics::samples;
use relay_testkit::process::Launch;

use common::{relay_binary, tool};

/// A free port P with P + 2 free too (bounded tries; the relay binds them right after).
fn two_free_ports() -> u16 {
    for _ in 0..50 {
        let first = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port < 65_000 && UdpSocket::bind(("127.0.0.1", port + 2)).is_ok() {
            return port;
        }
    }
    panic!("no two free ports two apart");
}

#[test]
fn two_streams_reach_two_relay_paths_whole() {
    let port = two_free_ports();
    let paths = [
        ("cam0", port, sdp(96, port)),
        ("cam1", port + 2, sdp(96, port + 2)),
    ];
    let relay = Launch::new(relay_binary(), &rtp_push_on_loopback(1, &paths))
        .echo_log()
        .start()
        .unwrap();
    let args = PublishArgs {
        target: SocketAddr::from(([127, 0, 0, 1], port)),
        port_step: 2,
        streams: 2,
        duration: Duration::from_secs(3),
        clip: Some(ClipSource::Demo),
        gop: DEFAULT_GOP,
        payload_type: 96,
        max_payload: 1200,
    };
    let publisher = Publisher::start(&args).unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    while !publisher.is_finished() {
        assert!(Instant::now() < deadline, "the publisher outlived its 3 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = publisher.stop().unwrap();
    // What is still in the relay's socket buffers gets read.
    std::thread::sleep(Duration::from_millis(300));
    let metrics = relay.metrics().unwrap();
    let counter = |metric: &str, path: &str| -> f64 {
        samples(&metrics, metric)
            .into_iter()
            .find(|(labels, _)| *labels == format!("path=\"{path}\""))
            .unwrap_or_else(|| panic!("no {metric} for {path} in\n{metrics}"))
            .1
    };

    // 3 s of the demo clip (~95 packets/s) and a stamp per frame, on each stream.
    let recording = Recording::load(Some(&ClipSource::Demo), DEFAULT_GOP, 1200).unwrap();
    let rate =
        (recording.packets() + recording.frames()) as f64 / recording.duration().as_secs_f64();
    let expected = rate * 3.0 * 2.0;
    let sent = report.packets as f64;
    assert!(
        (sent - expected).abs() < expected * 0.2,
        "sent {sent}, expected about {expected}: {report:?}"
    );
    assert!(report.frames.abs_diff(2 * 90) <= 4, "{report:?}");
    assert_eq!(report.refused, 0, "{report:?}");
    let mut received = 0.0;
    for (path, _, _) in &paths {
        let packets = counter("relay_ingest_packets_total", path);
        // Each path got its own stream: about half of all, nothing malformed.
        assert!(
            (packets - sent / 2.0).abs() <= sent * 0.05,
            "{path}: {packets} of {sent} sent; relay log:\n{}",
            relay.log_tail()
        );
        assert_eq!(counter("relay_ingest_dropped_malformed_total", path), 0.0);
        assert_eq!(
            counter("relay_ingest_dropped_unknown_payload_type_total", path),
            0.0
        );
        received += packets;
    }
    assert!(
        received >= sent * 0.98 && received <= sent,
        "the relay took {received} of {sent}"
    );
}

#[test]
fn the_command_sends_stamped_frames_of_the_default_clip() {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let target = sink.local_addr().unwrap().to_string();
    let child = Command::new(tool())
        .args(["publish", "--target", &target, "--duration", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Reads until the sender has been quiet for a while (bounded: making the default
    // clip takes a few seconds the first time).
    let (mut packets, mut stamps, mut quiet) = (0u64, Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0; 2048];
    while Instant::now() < deadline && (packets == 0 || quiet < 2) {
        let Ok(n) = sink.recv(&mut buf) else {
            quiet += 1;
            continue;
        };
        quiet = 0;
        let packet = rtp::parse(&buf[..n]).expect("RTP");
        assert_eq!(packet.payload_type, 96);
        assert!(n <= 12 + 1200, "{n} bytes");
        packets += 1;
        stamps.extend(Stamp::from_nal(packet.payload));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("1 streams: "), "progress: {stderr}");
    let json: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a JSON line")).unwrap();
    let report = &json["report"];
    assert_eq!(report["packets"].as_u64(), Some(packets), "{json}");
    // 2 s at 30 fps, every frame stamped in order.
    assert!(stamps.len().abs_diff(60) <= 2, "{} stamps", stamps.len());
    assert_eq!(report["frames"].as_u64(), Some(stamps.len() as u64));
    for (k, stamp) in stamps.iter().enumerate() {
        assert_eq!((stamp.stream, stamp.frame), (0, k as u64));
    }
    // The default clip is ~2 Mbit/s.
    let mbit = json["mbit_per_s"].as_f64().unwrap();
    assert!((1.0..3.5).contains(&mbit), "{mbit} Mbit/s");
}
