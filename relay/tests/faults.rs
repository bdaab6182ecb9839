//! Faults around the relay, each with the outcome docs/operations.md (Faults) promises:
//! a source that vanishes and comes back (a WHIP publisher, an RTP camera), the relay
//! killed with -9 under viewers and restarted, its log on a full disk. (An RTSP camera
//! restarted: rtsp.rs; XDP detached by hand and kill -9 in XDP mode: xdp_relay.rs.)
//! The full disk needs root (a tmpfs in a mount namespace of the relay's own).

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use relay::config::Config;
use relay_testkit::config::{loopback, paths, publisher};
use relay_testkit::netns::require_root;
use relay_testkit::publisher::Publisher;
use relay_testkit::tempdir::TempDir;
use relay_testkit::viewer::{Driven, Viewer};
use relay_testkit::wait::eventually;
use str0m::media::MediaKind;

use common::rtp::{free_port, relay_with_cam1, rtp, video_frame};
use common::{assert_demo_stream, demo_config, launch, start, WORKERS};

/// Publishes to `live` in a thread of its own for `d`; the publisher comes back at the
/// end, still in session (dropping it then is a publisher that vanished: no DELETE).
fn publish_for(publisher: Publisher, d: Duration) -> thread::JoinHandle<Publisher> {
    let mut p = publisher;
    thread::spawn(move || {
        p.run_for(d);
        p
    })
}

/// The sequence numbers `v` got of `kind` are contiguous: nothing lost, nothing twice.
fn contiguous(v: &mut Viewer, kind: MediaKind) -> usize {
    let ssrc = v.ssrc_of(kind).expect("the relay sends this kind");
    let stream = &v.received.streams[&ssrc];
    let (first, last) = (stream.keys().next().unwrap(), stream.keys().last().unwrap());
    assert_eq!(last - first + 1, stream.len() as u64, "{kind:?} has gaps");
    stream.len()
}

/// A WHIP publisher vanishes (killed: no DELETE, its ICE consent not yet lapsed) and a
/// new one publishes on the path: with `overridePublisher` it takes the path at once.
/// Viewers watching go on when the new publisher sends the same tracks (same codecs),
/// their numbering continuous; when it sends others, their sessions are ended (they
/// must offer again) and a new offer gets the new tracks.
#[test]
fn a_vanished_publisher_is_replaced_and_viewers_go_on_or_offer_again() {
    let relay = start(&Config {
        paths: paths([("live", publisher(true))]),
        ..loopback(WORKERS)
    });
    let connect = |video_only: bool| match video_only {
        false => Publisher::connect(&relay.http, "live"),
        true => Publisher::connect_video_only(&relay.http, "live"),
    };
    let first = publish_for(connect(false).unwrap(), Duration::from_millis(2500));
    thread::sleep(Duration::from_millis(1000));
    let viewer = Driven::start(Viewer::connect(&relay.http, "live"));
    drop(first.join().unwrap());
    let before = viewer.with(|v| v.packets());
    assert!(before > 20, "{before} packets from the first publisher");

    let second = publish_for(connect(false).unwrap(), Duration::from_millis(2500));
    drop(second.join().unwrap());
    let mut watched = viewer.stop();
    assert!(
        watched.packets() > before + 40,
        "the viewer goes on with the new publisher ({before} then {})",
        watched.packets()
    );
    contiguous(&mut watched, MediaKind::Video);
    contiguous(&mut watched, MediaKind::Audio);

    // Video only: not the tracks the viewer negotiated.
    let third = publish_for(connect(true).unwrap(), Duration::from_millis(3000));
    let readers = r#"relay_path_readers{path="live"}"#;
    let ended = eventually(Duration::from_secs(3), || {
        relay.metric(readers).unwrap() == 0.0
    });
    assert!(ended, "the viewer of the replaced tracks was closed");
    assert_eq!(watched.delete(), 404, "its session is gone");
    let said = relay
        .log()
        .iter()
        .any(|l| l.contains("its viewers were closed, to offer again") && l.contains("viewers=1"));
    assert!(said, "the log says how many viewers were closed");
    let mut again = Viewer::connect(&relay.http, "live");
    again.run_for(Duration::from_millis(2000));
    assert!(again.connected);
    assert!(again.ssrc_of(MediaKind::Audio).is_none(), "video only now");
    assert!(contiguous(&mut again, MediaKind::Video) > 30);
    assert_eq!(third.join().unwrap().delete(), 200);
}

/// An RTP camera that stops and starts again, once with a new SSRC and once with the
/// same SSRC and its sequence numbers and timestamps jumped (an encoder restarted):
/// the viewer goes on, its numbering contiguous and every payload as sent.
#[test]
fn an_rtp_camera_restarted_with_a_new_ssrc_or_numbering_goes_on_for_its_viewer() {
    let port = free_port();
    let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
               a=fmtp:96 packetization-mode=1;profile-level-id=42e01f\r\n";
    let relay = relay_with_cam1(port, sdp);
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let camera = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = Vec::new();
    let mut viewer = None;
    // Three runs of 1.2 s at 25 fps (a keyframe every 15 frames), 0.4 s apart: (SSRC,
    // first sequence number, first timestamp). The first wraps its numbering.
    let runs = [
        (0xcafe, 65_500u16, 0u32),
        (0x5eed, 1_000, 3_000_000_000),
        (0x5eed, 40_000, 77),
    ];
    for (run, (ssrc, seq, ts)) in runs.into_iter().enumerate() {
        let start = Instant::now();
        let mut seq = seq;
        for frame in 0..30u32 {
            let nals = video_frame(frame);
            let last = nals.len() - 1;
            for (j, nal) in nals.iter().enumerate() {
                let packet = rtp(96, seq, ts.wrapping_add(frame * 3600), ssrc, j == last, nal);
                camera.send_to(&packet, address).unwrap();
                sent.push(nal.clone());
                seq = seq.wrapping_add(1);
            }
            if run == 0 && frame == 16 {
                let http = relay.http.clone();
                viewer = Some(Driven::start(Viewer::connect(&http, "cam1")));
            }
            let due = start + Duration::from_millis(40 * (frame as u64 + 1));
            thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        thread::sleep(Duration::from_millis(400));
    }
    let mut v = viewer.unwrap().stop();
    let n = contiguous(&mut v, MediaKind::Video);
    let ssrc = v.ssrc_of(MediaKind::Video).unwrap();
    let got: Vec<&Vec<u8>> = v.received.streams[&ssrc].values().collect();
    // The viewer started on the first run's second keyframe: its SPS, PPS and IDR.
    let at = (0..sent.len())
        .find(|&at| (0..3).all(|i| sent.get(at + i) == Some(got[i])))
        .expect("the first packets are a run of what was sent");
    assert_eq!(got.len(), sent.len() - at, "every packet from there on");
    for (i, payload) in got.iter().enumerate() {
        assert!(
            **payload == sent[at + i],
            "packet {i} differs from what was sent"
        );
    }
    assert!(n > 60, "{n} packets");
    let restarts = relay.metric("relay_track_source_restarts_total").unwrap();
    assert_eq!(restarts, 2.0, "two restarts smoothed over");
}

/// A free TCP and a free UDP port on 127.0.0.1, for a relay that must come back on the
/// same ones.
fn free_ports() -> (u16, u16) {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    (
        tcp.local_addr().unwrap().port(),
        udp.local_addr().unwrap().port(),
    )
}

/// The relay killed with -9 under viewers leaves nothing behind: a relay started at
/// once on the same ports serves, and knows none of the old sessions (DELETE is 404,
/// nothing is sent to the old viewers); a viewer that offers again watches.
#[test]
fn kill_9_under_viewers_leaves_nothing_and_viewers_that_offer_again_watch() {
    let (http, media) = free_ports();
    let config = Config {
        webrtc_address: SocketAddr::from((Ipv4Addr::LOCALHOST, http)),
        webrtc_local_udp_address: SocketAddr::from((Ipv4Addr::LOCALHOST, media)),
        ..demo_config()
    };
    let mut relay = launch(&config).start().expect("the relay starts");
    let viewers: Vec<Driven> = (0..2)
        .map(|_| Driven::start(Viewer::connect(&relay.http, "demo")))
        .collect();
    let watching = eventually(Duration::from_secs(5), || {
        viewers.iter().all(|v| v.with(|v| v.packets() > 30))
    });
    assert!(watching, "both viewers watch the first relay");
    let status = relay.kill().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );

    let relay = launch(&config)
        .start()
        .expect("the same ports are free at once");
    let got: Vec<usize> = viewers.iter().map(|v| v.with(|v| v.packets())).collect();
    thread::sleep(Duration::from_millis(1500));
    for (v, got) in viewers.into_iter().zip(got) {
        let v = v.stop();
        assert_eq!(
            v.packets(),
            got,
            "nothing for a session of the killed relay"
        );
        assert_eq!(v.delete(), 404, "the restarted relay knows no old session");
    }
    assert_eq!(relay.metric("relay_sessions").unwrap(), 0.0);
    let mut again = Viewer::connect(&relay.http, "demo");
    again.run_for(Duration::from_secs(2));
    assert!(again.connected, "a viewer that offered again");
    assert!(assert_demo_stream(&again) > 30);
}

/// The relay with its stderr on a full filesystem (a tmpfs of 16 KiB, filled, mounted
/// in a mount namespace of the relay's own and gone with it) starts, serves viewers and
/// counts the log lines it could not write.
#[test]
fn logs_to_a_full_disk_are_counted_and_dropped_and_viewers_are_served() {
    require_root("mounting a tmpfs").unwrap();
    let tmp = TempDir::new("full-disk");
    let dir = tmp.path().display();
    let script = format!(
        "set -e; mount -t tmpfs -o size=16k relay-full-disk {dir}; \
         cat /dev/zero > {dir}/filler 2>/dev/null || true; \
         exec \"$@\" 2>>{dir}/relay.log"
    );
    let unshare = ["unshare", "--mount", "--propagation", "private"];
    let wrapper: Vec<&str> = unshare
        .into_iter()
        .chain(["sh", "-c", script.as_str(), "sh"])
        .collect();
    let relay = launch(&demo_config())
        .through(&wrapper)
        .start()
        .expect("the relay starts with its log on a full disk");
    for _ in 0..2 {
        let mut v = Viewer::connect(&relay.http, "demo");
        v.run_for(Duration::from_millis(1500));
        assert!(v.connected);
        assert!(assert_demo_stream(&v) > 20);
        assert_eq!(v.delete(), 200);
    }
    // Start-up lines, and each viewer's answered, live and closed.
    let lost = relay.metric("relay_log_write_errors_total").unwrap();
    assert!(lost >= 6.0, "{lost} log lines counted as lost");
    assert!(relay.log().is_empty(), "the log went to the full disk");
}
