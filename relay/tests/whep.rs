//! End to end in portable mode: the relay binary, a WHEP viewer built on str0m over
//! loopback, the built-in demo stream.

mod common;

use std::time::Duration;

use common::{assert_demo_stream, eventually, run_all, Relay, Viewer};

const DEMO: &str = "  demo:\n    source: demo\n";

#[test]
fn demo_viewer_receives_every_packet_in_order() {
    let relay = Relay::start("demo", DEMO);
    let mut v = Viewer::connect(&relay.http, "demo");
    v.run_for(Duration::from_secs(4));
    assert!(v.connected, "ICE and DTLS completed");
    let n = assert_demo_stream(&v);
    assert!(n > 150, "only {n} packets in ~3 s of a 30 fps stream");
    assert_eq!(v.delete(&relay.http), 200);
}

#[test]
fn late_viewer_starts_on_a_keyframe_and_the_first_loses_nothing() {
    let relay = Relay::start("late", DEMO);
    let mut first = Viewer::connect(&relay.http, "demo");
    first.run_for(Duration::from_millis(1500));
    let second = Viewer::connect(&relay.http, "demo");
    let viewers = run_all(vec![first, second], Duration::from_secs(3));
    let (a, b) = (
        assert_demo_stream(&viewers[0]),
        assert_demo_stream(&viewers[1]),
    );
    assert!(
        a > b,
        "the first viewer got more ({a}) than the late one ({b})"
    );
    assert!(b > 60, "the late viewer got {b} packets");
    // Different SSRCs and numbering per viewer (RFC 3550 5.1).
    let ssrc = |v: &Viewer| *v.received.streams.keys().next().unwrap();
    assert_ne!(ssrc(&viewers[0]), ssrc(&viewers[1]));
}

#[test]
fn lost_packets_are_recovered_by_nack_from_the_shared_ring() {
    let relay = Relay::start("nack", DEMO);
    let mut v = Viewer::connect(&relay.http, "demo");
    v.drop_every = 9;
    v.run_for(Duration::from_secs(4));
    // Let the last NACKs be answered without dropping anything more.
    v.drop_every = 0;
    v.run_for(Duration::from_millis(500));
    let n = assert_demo_stream(&v);
    assert!(
        v.dropped_count * 12 > n,
        "dropped {} of {n}",
        v.dropped_count
    );
    let resent = relay.metric("relay_retransmitted_packets_total");
    assert!(
        resent >= v.dropped_count as f64,
        "relay resent {resent} packets for {} dropped",
        v.dropped_count
    );
}

#[test]
fn sessions_end_on_delete_and_when_a_viewer_vanishes() {
    let relay = Relay::start(
        "lifecycle",
        "  demo:\n    source: demo\n    maxReaders: 2\n",
    );
    let mut polite = Viewer::connect(&relay.http, "demo");
    let mut vanishing = Viewer::connect(&relay.http, "demo");
    polite.run_for(Duration::from_millis(800));
    vanishing.run_for(Duration::from_millis(800));
    assert!(polite.connected && vanishing.connected);
    assert_eq!(relay.metric("relay_sessions"), 2.0);

    // maxReaders: a third viewer is refused while two are there.
    let (_, _, offer, _, _) = common::whep_offer(true, false);
    let (status, _, body) = common::post_offer(&relay.http, "demo", &offer.to_sdp_string());
    assert_eq!(status, 503, "{body}");

    assert_eq!(polite.delete(&relay.http), 200);
    assert!(eventually(Duration::from_secs(2), || relay
        .metric("relay_sessions")
        == 1.0));
    assert_eq!(polite.delete(&relay.http), 404, "deleting twice");

    // A viewer that stops answering (tab closed, no DELETE) is dropped once ICE consent lapses.
    drop(vanishing);
    assert!(
        eventually(Duration::from_secs(40), || relay.metric("relay_sessions")
            == 0.0),
        "the vanished viewer's session was never closed"
    );
    assert_eq!(relay.metric("relay_path_readers"), 0.0);
}

#[test]
fn a_viewer_stays_past_the_consent_timeout() {
    let relay = Relay::start("consent", DEMO);
    let mut v = Viewer::connect(&relay.http, "demo");
    // Longer than relay::session::consent::CONSENT_TIMEOUT: consent checks keep it alive
    // after str0m is gone from the session.
    v.run_for(Duration::from_secs(25));
    let before = assert_demo_stream(&v);
    v.run_for(Duration::from_secs(2));
    let after = assert_demo_stream(&v);
    assert!(
        after > before + 100,
        "media still flows after 25 s ({before} -> {after})"
    );
    assert_eq!(relay.metric("relay_sessions"), 1.0);
}
