//! WHIP end to end in portable mode: the relay binary, a str0m publisher sending H264
//! (the demo clip) and Opus over loopback, str0m WHEP viewers watching it.

mod common;

use std::thread;
use std::time::Duration;

use relay::config::Config;
use relay_testkit::config::{demo, loopback, paths, publisher};
use relay_testkit::publisher::{self as whip, Publisher};
use relay_testkit::viewer::{Driven, Viewer};
use relay_testkit::{http, whep};
use str0m::media::MediaKind;

use common::{start, WORKERS};

fn publishing(override_publisher: bool) -> Config {
    Config {
        paths: paths([("live", publisher(override_publisher)), ("demo", demo())]),
        ..loopback(WORKERS)
    }
}

/// Publishes in a thread of its own for `d`; the publisher comes back at the end.
fn publish_for(http: &str, d: Duration) -> thread::JoinHandle<Publisher> {
    let mut p = Publisher::connect(http, "live").expect("the relay takes the publisher");
    thread::spawn(move || {
        p.run_for(d);
        p
    })
}

/// The sequence numbers of a stream are contiguous: nothing lost, nothing twice.
fn assert_contiguous(v: &mut Viewer, kind: MediaKind, at_least: usize) {
    let ssrc = v.ssrc_of(kind).expect("the relay sends this kind");
    let stream = &v.received.streams[&ssrc];
    assert!(
        stream.len() >= at_least,
        "{kind:?}: only {} packets",
        stream.len()
    );
    let (first, last) = (stream.keys().next().unwrap(), stream.keys().last().unwrap());
    assert_eq!(last - first + 1, stream.len() as u64, "{kind:?} has gaps");
}

#[test]
fn a_publishers_h264_and_opus_reach_a_viewer_and_delete_frees_the_path() {
    let relay = start(&publishing(false));
    let agent = http::agent(Duration::from_secs(10));
    let early = whep::post_offer(&agent, &whep::endpoint(&relay.http, "live"), "v=0\r\n");
    let early = early.unwrap();
    assert_eq!(early.status, 404);
    assert!(
        early.body.contains("waiting for a publisher"),
        "{}",
        early.body
    );

    let publishing = publish_for(&relay.http, Duration::from_secs(6));
    thread::sleep(Duration::from_millis(1500));
    let mut viewer = Viewer::connect(&relay.http, "live");
    viewer.run_for(Duration::from_millis(2500));
    assert!(viewer.connected);
    assert_contiguous(&mut viewer, MediaKind::Video, 40);
    assert_contiguous(&mut viewer, MediaKind::Audio, 50);
    let video = viewer.ssrc_of(MediaKind::Video).unwrap();
    let first = viewer.received.streams[&video].values().next().unwrap();
    assert!(
        matches!(first[0] & 0x1f, 5 | 7),
        "starts on a keyframe: NAL {}",
        first[0]
    );

    // The viewer's PLI reaches the publisher.
    viewer.request_keyframe();
    viewer.run_for(Duration::from_millis(500));

    let second = Publisher::connect(&relay.http, "live")
        .err()
        .expect("refused");
    assert_eq!(second.status, 409, "{}", second.body);
    assert!(
        second.body.contains("already publishing to path 'live'"),
        "{}",
        second.body
    );

    let p = publishing.join().unwrap();
    assert!(p.keyframe_requests >= 1, "the viewer's PLI was forwarded");
    assert_eq!(p.delete(), 200);
    common::eventually_404(&relay.http, "live", "waiting for a publisher");
    assert_eq!(viewer.delete(), 200);
}

#[test]
fn a_new_publisher_takes_over_and_the_viewer_goes_on() {
    let relay = start(&publishing(true));
    let first = publish_for(&relay.http, Duration::from_secs(3));
    thread::sleep(Duration::from_millis(1000));
    let viewer = Driven::start(Viewer::connect(&relay.http, "live"));
    thread::sleep(Duration::from_millis(1000));
    let before = viewer.with(|v| v.packets());
    assert!(before > 20, "{before} packets from the first publisher");

    let second = publish_for(&relay.http, Duration::from_secs(3));
    let first = first.join().unwrap();
    assert_eq!(
        first.delete(),
        404,
        "the first publisher's session was ended"
    );
    let second = second.join().unwrap();
    let mut viewer = viewer.stop();
    assert!(
        viewer.packets() > before + 40,
        "the viewer goes on with the new publisher ({before} then {})",
        viewer.packets()
    );
    assert!(viewer.ssrc_of(MediaKind::Video).is_some());
    assert_eq!(second.delete(), 200);
}

#[test]
fn bad_whip_requests_get_a_clear_4xx() {
    let relay = start(&publishing(false));
    let agent = http::agent(Duration::from_secs(10));
    let post = |path: &str, sdp: &str| {
        whep::post_offer(&agent, &whip::endpoint(&relay.http, path), sdp).unwrap()
    };
    let check = |reply: whep::Reply, status: u16, reason: &str| {
        assert_eq!(reply.status, status, "{}", reply.body);
        assert!(reply.body.contains(reason), "{}", reply.body);
    };
    check(post("live", "hello"), 400, "not valid SDP");
    let receive_only = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0\r\na=fingerprint:sha-256 \
        00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\n\
        a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\n\
        a=rtcp-mux\r\na=rtpmap:96 H264/90000\r\n";
    check(post("live", receive_only), 400, "no sendonly or sendrecv");
    check(post("demo", &offer()), 400, "takes no publisher");
    check(
        post("nope", &offer()),
        404,
        "no path named 'nope' is configured",
    );
    let typed = agent
        .post(whip::endpoint(&relay.http, "live"))
        .header("Content-Type", "text/plain")
        .send(offer().as_str())
        .unwrap();
    assert_eq!(typed.status(), 415);
    // None of it took the path.
    let p = Publisher::connect(&relay.http, "live").expect("the path is free");
    assert_eq!(p.delete(), 200);
}

/// A publisher's offer as str0m makes it (H264 and Opus, send-only).
fn offer() -> String {
    let rtc = str0m::Rtc::builder().clear_codecs().enable_h264(true);
    let local = "127.0.0.1:0".parse().unwrap();
    let (_, offer) = relay_testkit::client::Client::offer_with(
        rtc,
        local,
        &[MediaKind::Video],
        str0m::media::Direction::SendOnly,
    )
    .unwrap();
    offer.sdp
}
